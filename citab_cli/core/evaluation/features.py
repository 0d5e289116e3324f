"""What each probed method sees: frozen embeddings, the raw table, the demographic floor.

The raw table and the floor are laid out by meaning, not by position: a `Layout` lists columns by
header text (the raw table) or by covariate role (the floor), so a head fitted on one cohort can
score another whose columns are named and ordered differently (`--train-on`/`--test-on`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from citab_cli.core.runtime.dataset import CohortData

#: Feature sets of a probe, in report order, and what each is.
FEATURE_TITLES = {
    "citab": "CITab multimodal embedding",
    "citab_tabular": "CITab tabular CLS",
    "citab_image": "CITab image pooled",
    "citab_raw": "CITab multimodal + raw table",
    "raw_table": "raw table (standardised + missing indicators)",
    "random_init": "same architecture, random weights",
    "floor": "age + sex (+ education) floor",
}
FEATURES = tuple(FEATURE_TITLES)
#: Paired comparisons: each method against each baseline.
METHODS = ("citab", "citab_tabular", "citab_image", "citab_raw")
BASELINES = ("raw_table", "random_init", "floor")
#: Covariate roles of the floor, in feature order.
FLOOR_ROLES = ("age", "sex", "education")


@dataclass(frozen=True)
class Layout:
    """Columns of a feature matrix: (key, levels) with key a header text or a covariate role,
    levels the one-hot level names of a categorical column (None for a numeric one)."""

    by: str  # "text" or "role"
    columns: tuple[tuple[str, tuple[str, ...] | None], ...]

    def names(self) -> list[str]:
        """The column keys, in matrix order."""
        return [key for key, _ in self.columns]


def _keys(cohort: CohortData, by: str) -> list[str | None]:
    return list(cohort.texts) if by == "text" else list(cohort.covariates)


def layout(cohorts: list[CohortData], by: str, roles: tuple[str, ...] = ()) -> Layout:
    """The columns every one of `cohorts` has (by header text, or by covariate role among
    `roles`), in the first cohort's order; categorical levels from the first cohort."""
    first = cohorts[0]
    shared = set.intersection(*(set(_keys(c, by)) for c in cohorts)) - {None}
    columns = []
    for j, key in enumerate(_keys(first, by)):
        if key in shared and (by == "text" or key in roles):
            levels = tuple(first.level_names[j]) if first.categorical[j] else None
            columns.append((key, levels))
    if by == "role":
        columns.sort(key=lambda c: roles.index(c[0]))
    return Layout(by, tuple(columns))


def table_features(cohort: CohortData, plan: Layout) -> np.ndarray:
    """(N, F) features of `cohort` in `plan`'s layout: the normalised value of a numeric column
    or the one-hot level of a categorical one, then a missing indicator per column."""
    index = {key: j for j, key in enumerate(_keys(cohort, plan.by)) if key is not None}
    parts = []
    for key, levels in plan.columns:
        j = index[key]
        missing = cohort.missing[:, j]
        if levels is None:
            parts.append(np.where(missing, 0.0, cohort.z[:, j])[:, None])
        else:
            own = cohort.level_names[j]
            onehot = np.zeros((cohort.size, len(levels)))
            for k, name in enumerate(own):
                if name in levels:
                    onehot[:, levels.index(name)] = cohort.level[:, j] == k
            parts.append(onehot)
        parts.append(missing[:, None].astype(float))
    if not parts:
        return np.zeros((cohort.size, 0), np.float32)
    return np.concatenate(parts, axis=1).astype(np.float32)


def raw_table_features(cohort: CohortData) -> np.ndarray:
    """The raw-table baseline of one cohort on its own: every column it has."""
    return table_features(cohort, layout([cohort], "text"))
