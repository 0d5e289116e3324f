"""Subject-level, label-stratified train/val/test splits, fixed at ingest."""

from __future__ import annotations

import numpy as np

from citab_cli.core.settings import SplitSettings

SPLITS = ("train", "val", "test")


def _counts(n: int, fractions: SplitSettings) -> tuple[int, int, int]:
    """(train, val, test) sizes for a stratum of `n`; test and val get one each once n allows."""
    if n <= 1:
        return n, 0, 0
    n_test = max(1, round(n * fractions.test))
    n_val = max(1, round(n * fractions.val)) if fractions.val > 0 and n >= 3 else 0
    while n - n_test - n_val < 1:
        if n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_test - n_val, n_val, n_test


def assign(subjects: list[str], labels: list[str | None], fractions: SplitSettings) -> list[str]:
    """The split of each subject.

    Stratified by label (unlabelled subjects form their own stratum) and independent of row
    order: subjects are sorted by ID before the seeded shuffle.
    """
    rng = np.random.default_rng(fractions.seed)
    strata: dict[str, list[int]] = {}
    for index in sorted(range(len(subjects)), key=lambda i: subjects[i]):
        key = labels[index] if labels[index] is not None else "\x00unlabelled"
        strata.setdefault(key, []).append(index)
    out = [""] * len(subjects)
    for key in sorted(strata):
        members = strata[key]
        order = rng.permutation(len(members))
        n_train, n_val, _ = _counts(len(members), fractions)
        for rank, pos in enumerate(order):
            split = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
            out[members[pos]] = split
    return out
