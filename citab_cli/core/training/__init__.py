"""Self-supervised pretraining: configuration, cohort batches, augmentation, the loop, its
distributed helpers, validation, checkpoints and frozen embeddings."""
