"""Self-supervised pretraining: which run and configuration, the loop, its batches and sampling,
the learning-rate schedule, validation, and what a run writes."""
