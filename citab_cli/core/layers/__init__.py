"""Network layers, one concept per module, and the tabular batch they read."""
