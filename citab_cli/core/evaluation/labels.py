"""Which subjects a head may learn from: a cohort's labelled rows per split, class order, and
stratified label subsets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from citab_cli.core.errors import CitabError
from citab_cli.core.runtime.dataset import CohortData

#: A label subset's generator is seeded with (seed, fraction * FRACTION_SEED_SCALE), so each
#: fraction draws its own subset, the same on every run.
FRACTION_SEED_SCALE = 1_000_000


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a `fraction` of `labels`, stratified, with at least one per class."""
    rng = np.random.default_rng([seed, int(round(fraction * FRACTION_SEED_SCALE))])
    picks = []
    for c in np.unique(labels):
        members = np.nonzero(labels == c)[0]
        take = max(1, int(round(fraction * len(members))))
        picks.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(picks))


def check_fractions(fractions: tuple[float, ...]) -> None:
    """Refuse label fractions outside (0, 1]."""
    for f in fractions:
        if not 0 < f <= 1:
            raise CitabError(f"label fraction {f:g} is outside (0, 1]; use e.g. 0.01,0.1,1")


@dataclass(frozen=True)
class LabelLayout:
    """A cohort's labelled subjects: class order, class index per row (-1 unlabelled), and the
    labelled rows of each split."""

    classes: list[str]
    y: np.ndarray  # (N,) int
    rows: dict[str, np.ndarray]
    gaps: dict[str, list[str]] = field(default_factory=dict)  # split -> classes it lacks

    def labels(self, split: str) -> np.ndarray:
        """The class indices of the labelled rows of `split`."""
        return self.y[self.rows[split]]

    def describe_gaps(self, cohort: str) -> list[str]:
        """One line per split that lacks classes, saying what that costs."""
        cost = {
            "train": "no head can learn them from this split",
            "val": "model choices on the validation split ignore them",
        }
        return [
            f"cohort '{cohort}': the {split} split has no labelled subject of class "
            f"{', '.join(missing)}; {cost[split]}"
            for split, missing in self.gaps.items()
        ]


def label_layout(cohort: CohortData, task: str, test_split: bool = True) -> LabelLayout:
    """A cohort's labelled rows per split and its class order; a cohort with one class is
    refused, and (`test_split`: it is scored on its test split) one whose test split lacks a
    class."""
    present = {lab for lab in cohort.labels if lab}
    classes = [c for c in cohort.classes if c in present] or sorted(present)
    index = {c: i for i, c in enumerate(classes)}
    labelled = np.array([lab is not None for lab in cohort.labels])
    y = np.array([index.get(lab, -1) if lab else -1 for lab in cohort.labels])
    rows = {s: np.nonzero(labelled & (cohort.splits == s))[0] for s in ("train", "val", "test")}
    covered = len(np.unique(y[rows["test"]]))
    if test_split and covered < len(classes):
        raise CitabError(
            f"cohort '{cohort.name}' has {len(rows['test'])} labelled test "
            f"subject(s) covering {covered} of {len(classes)} classes; a {task} "
            "needs every class in the test split (ingest more subjects or change "
            "the split fractions)"
        )
    if len(np.unique(y[rows["train"]])) < 2:
        raise CitabError(
            f"cohort '{cohort.name}' has fewer than two classes among its labelled "
            "train subjects; nothing to learn"
        )
    gaps = {
        split: [c for i, c in enumerate(classes) if i not in set(y[rows[split]].tolist())]
        for split in ("train", "val")
    }
    return LabelLayout(classes, y, rows, {s: g for s, g in gaps.items() if g})
