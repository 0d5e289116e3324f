"""What each step sees, derived from the seed alone: the epoch's order of subjects, stable subject
ids for augmentation, and one random generator per step. A resumed run therefore continues
exactly where it stopped."""

from __future__ import annotations

import numpy as np
import torch

#: Subject ids for seeding: cohort index * SUBJECT_STRIDE + row.
SUBJECT_STRIDE = 1_000_000
#: Stream id that separates the epoch order's generator from other uses of (seed, epoch).
EPOCH_ORDER_STREAM = 7
#: A step's generator is seeded with seed * STEP_SEED_STRIDE + step (a prime, so distinct
#: (seed, step) pairs of any realistic run never collide).
STEP_SEED_STRIDE = 1_000_003


def epoch_order(
    items: np.ndarray, sizes: list[int], seed: int, epoch: int, balance: bool
) -> np.ndarray:
    """This epoch's order of (cohort, row) items, deterministic in (seed, epoch).

    Proportional: a shuffle of every subject. Balanced: as many draws, each cohort equally
    likely, subjects within a cohort cycling through a shuffle.
    """
    rng = np.random.default_rng([seed, epoch, EPOCH_ORDER_STREAM])
    if not balance:
        return items[rng.permutation(len(items))]
    by_cohort = [items[items[:, 0] == c] for c in range(len(sizes))]
    by_cohort = [rows[rng.permutation(len(rows))] for rows in by_cohort if len(rows)]
    picks = rng.integers(0, len(by_cohort), len(items))
    cursor = [0] * len(by_cohort)
    out = []
    for c in picks:
        rows = by_cohort[c]
        out.append(rows[cursor[c] % len(rows)])
        cursor[c] += 1
    return np.array(out)


def subject_ids(items: np.ndarray) -> np.ndarray:
    """(B, 2) [cohort, row] -> (B,) ids that stay the same whatever else was ingested."""
    return items[:, 0] * SUBJECT_STRIDE + items[:, 1]


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The generator of one step's random draws (ITM negatives, MTR masks) on `device`."""
    return torch.Generator(device=device).manual_seed(int(seed) * STEP_SEED_STRIDE + step)
