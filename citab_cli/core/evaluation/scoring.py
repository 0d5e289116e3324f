"""Which subjects a probe scores, and which subjects each of its fits may learn from.

Two designs:

- **test split** (the default): heads are fitted on a label subset of the training cohort's
  labelled train subjects and score the test cohort's labelled test subjects, once;
- **cross-fitted** (a cohort the checkpoint never saw): every labelled subject of the cohort is
  scored exactly once, by a head fitted on the other folds of a stratified k-fold split; the
  label fraction is drawn inside each training fold. With no pretraining on the cohort, no
  subject is special, so k folds give k times the test predictions of one test split from the
  same subjects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation.labels import LabelLayout, stratified_subset

#: Folds of a cross-fitted probe unless asked otherwise.
CROSS_FIT_FOLDS = 5


@dataclass(frozen=True)
class Scoring:
    """The scored rows of the test cohort and the rows the heads may learn from."""

    rows: np.ndarray  # (M,) scored rows of the test cohort, in score order
    pool: np.ndarray  # rows of the training cohort that label subsets are drawn from
    folds: int = 0  # 0: one fit scores every row; k: cross-fitted over k folds

    @classmethod
    def test_split(cls, train: LabelLayout, test: LabelLayout) -> Scoring:
        """Fit on the training cohort's labelled train subjects, score the test split."""
        return cls(rows=test.rows["test"], pool=train.rows["train"])

    @classmethod
    def cross_fitted(cls, labels: LabelLayout, folds: int = CROSS_FIT_FOLDS) -> Scoring:
        """Score every labelled subject of one cohort once, k-fold (fewer folds when the
        smallest class has fewer than k labelled subjects: each fold holds every class)."""
        rows = np.sort(np.concatenate([labels.rows[s] for s in ("train", "val", "test")]))
        smallest = int(np.bincount(labels.y[rows])[np.unique(labels.y[rows])].min())
        if folds < 2 or smallest < 2:
            raise CitabError(
                f"cross-fitting needs at least 2 folds and 2 labelled subjects of every class "
                f"(asked for {folds} folds; the smallest class has {smallest})"
            )
        return cls(rows=rows, pool=rows, folds=min(folds, smallest))

    @property
    def design(self) -> str:
        """In words, for reports."""
        if not self.folds:
            return "test split"
        return f"cross-fitted over all {len(self.rows)} labelled subjects ({self.folds} folds)"

    def fits(
        self, y: np.ndarray, fraction: float, seed: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows a head is fitted on, positions in `rows` it scores) of every fit of one probe
        seed; `y` (N,) class index per row of the training cohort. The positions of all fits
        cover `rows` exactly once; no fit learns from a row it scores."""
        if not self.folds:
            yield (
                self.pool[stratified_subset(y[self.pool], fraction, seed)],
                np.arange(len(self.rows)),
            )
            return
        from sklearn.model_selection import StratifiedKFold

        split = StratifiedKFold(self.folds, shuffle=True, random_state=seed)
        for train, held in split.split(self.rows, y[self.rows]):
            pool = self.rows[train]
            yield pool[stratified_subset(y[pool], fraction, seed)], held

    def training_size(self, y: np.ndarray, fraction: float) -> int:
        """Labelled subjects one fit learns from at `fraction` (the first fold's, for a
        cross-fitted probe)."""
        return int(len(next(self.fits(y, fraction, 0))[0]))
