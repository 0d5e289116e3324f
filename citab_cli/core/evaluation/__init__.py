"""What a pretrained model is worth: linear probes, fine-tuning, explanations, their metrics
and reports."""
