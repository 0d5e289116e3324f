"""Learning-rate schedule: linear warm-up, then cosine decay, per optimisation step."""

from __future__ import annotations

import math


def learning_rate(
    step: int, base: float, warmup_steps: int, total_steps: int, final_fraction: float = 0.0
) -> float:
    """The rate for 0-based `step`: rises linearly to `base` over `warmup_steps`, then follows a
    half cosine down to `final_fraction * base` at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return base * (step + 1) / warmup_steps
    decay = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay, 1.0)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return base * (final_fraction + (1 - final_fraction) * cosine)
