"""The pure core of citab: no printing, no exiting, no argv or environment reads."""
