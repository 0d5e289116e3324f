"""Network layers, one concept per module."""
