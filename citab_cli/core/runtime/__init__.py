"""What pretraining and evaluation both run on: cohorts as arrays and their batches, the run
configuration and presets, checkpoint files and a checkpoint opened against a project,
embeddings from a frozen model, the device and precision, augmentation, distributed helpers."""
