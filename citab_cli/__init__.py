"""citab: cross-cohort image-tabular self-supervised learning for brain MRI and clinical tables."""

__version__ = "0.1.0"
