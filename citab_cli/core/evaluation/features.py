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
    "random_multimodal": "random weights: multimodal embedding",
    "random_tabular": "random weights: tabular CLS",
    "random_image": "random weights: image pooled",
    "random_raw": "random weights: multimodal + raw table",
    "raw_table": "raw table (standardised + missing indicators)",
    "raw_table_gbdt": "raw table, gradient-boosted trees",
    "raw_table_catboost": "raw table, CatBoost",
    "raw_image": "raw table + image block means",
    "floor": "age + sex (+ education) floor",
    "oracle": "oracle: raw table + the scan's true severity (synthetic truth)",
}
FEATURES = tuple(FEATURE_TITLES)
#: What the pretrained model is read as.
METHODS = ("citab", "citab_tabular", "citab_image", "citab_raw")
#: Each method's like-for-like baseline: the same architecture with random weights, read the
#: same way (image against image, tabular CLS against tabular CLS, ...).
RANDOM_TWIN = {
    "citab": "random_multimodal",
    "citab_tabular": "random_tabular",
    "citab_image": "random_image",
    "citab_raw": "random_raw",
}
#: Baselines every method is compared with: no pretrained model at all.
SHARED_BASELINES = ("raw_table", "raw_table_gbdt", "raw_table_catboost", "raw_image", "floor")
BASELINES = (*RANDOM_TWIN.values(), *SHARED_BASELINES)
#: The oracle of a synthetic cohort (evaluation/oracle.py): not a baseline, a reference for
#: the gain a scan can add.
ORACLE = "oracle"
#: Feature sets read by boosted trees (the rest by the linear probe): scikit-learn's, and
#: CatBoost's when the `baselines` extra is installed (evaluation/catboost_trees.py).
TREE_FEATURES = ("raw_table_gbdt", "raw_table_catboost")
#: Covariate roles of the floor, in feature order.
FLOOR_ROLES = ("age", "sex", "education")
#: Image block means: the stored volume cut into this many blocks along each axis.
IMAGE_BLOCKS = 4
#: Subjects read at a time for block means (bounds memory on large cohorts).
IMAGE_CHUNK = 32


def reader_of(feature: str):
    """The module whose `fit_predict` reads a feature set: the linear probe, scikit-learn's
    boosted trees or CatBoost."""
    from citab_cli.core.evaluation import catboost_trees, linear, trees

    readers = {"raw_table_gbdt": trees, "raw_table_catboost": catboost_trees}
    return readers.get(feature, linear)


def comparison_pairs(available) -> list[tuple[str, str]]:
    """(method, baseline) pairs of a report among the `available` feature sets: each method
    against its random-weights twin, then against each shared baseline."""
    pairs = []
    for method in METHODS:
        if method not in available:
            continue
        for baseline in (RANDOM_TWIN[method], *SHARED_BASELINES):
            if baseline in available:
                pairs.append((method, baseline))
    if ORACLE in available and "raw_table" in available:
        pairs.append((ORACLE, "raw_table"))  # the gain available over the raw table
    return pairs


def with_shares(comparisons: list[dict]) -> list[dict]:
    """Each comparison against the raw table gains, per metric, `share`: the share of the gain
    available over the raw table (oracle - raw table) that it recovered, when the report has an
    oracle and the oracle's gain is detected."""
    from citab_cli.core.evaluation.metrics import PAIRED
    from citab_cli.core.evaluation.oracle import share_recovered

    available = next((e for e in comparisons if e["method"] == ORACLE), None)
    if available is None:
        return comparisons
    for entry in comparisons:
        if entry["baseline"] == "raw_table" and entry["method"] != ORACLE:
            for name in PAIRED:
                share = share_recovered(entry[name]["difference"], available[name])
                if share is not None:
                    entry[name]["share"] = share
    return comparisons


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


def table_features(cohort: CohortData, plan: Layout, native_missing: bool = False) -> np.ndarray:
    """(N, F) features of `cohort` in `plan`'s layout: the normalised value of a numeric column
    or the one-hot level of a categorical one, then a missing indicator per column. With
    `native_missing` (for trees) a missing cell is NaN instead, and there are no indicators."""
    index = {key: j for j, key in enumerate(_keys(cohort, plan.by)) if key is not None}
    parts = []
    for key, levels in plan.columns:
        j = index[key]
        missing = cohort.missing[:, j]
        blank = np.nan if native_missing else 0.0
        if levels is None:
            parts.append(np.where(missing, blank, cohort.z[:, j])[:, None])
        else:
            own = cohort.level_names[j]
            onehot = np.zeros((cohort.size, len(levels)))
            for k, name in enumerate(own):
                if name in levels:
                    onehot[:, levels.index(name)] = cohort.level[:, j] == k
            parts.append(np.where(missing[:, None], blank, onehot))
        if not native_missing:
            parts.append(missing[:, None].astype(float))
    if not parts:
        return np.zeros((cohort.size, 0), np.float32)
    return np.concatenate(parts, axis=1).astype(np.float32)


def raw_table_features(cohort: CohortData) -> np.ndarray:
    """The raw-table baseline of one cohort on its own: every column it has."""
    return table_features(cohort, layout([cohort], "text"))


def _edges(size: int, blocks: int) -> np.ndarray:
    """Start index of each of `blocks` near-equal blocks along an axis of `size` voxels."""
    return np.array([round(i * size / blocks) for i in range(blocks)])


def image_block_means(cohort: CohortData, blocks: int = IMAGE_BLOCKS) -> np.ndarray:
    """(N, blocks^3) mean intensity of each block of every stored volume: the simplest image
    features, so "the scan adds signal" can be told apart from "pretraining adds signal"."""
    n, *shape = cohort.images.shape
    edges = [_edges(size, blocks) for size in shape]
    counts = [np.diff(np.append(e, size)) for e, size in zip(edges, shape, strict=True)]
    volume = counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]
    out = np.zeros((n, blocks**3), np.float32)
    for start in range(0, n, IMAGE_CHUNK):
        x = np.asarray(cohort.images[start : start + IMAGE_CHUNK], np.float32)  # (b, D, H, W)
        for axis, e in enumerate(edges):
            x = np.add.reduceat(x, e, axis=axis + 1)  # (b, blocks, ..., ...) after all three
        out[start : start + len(x)] = (x / volume).reshape(len(x), -1)
    return out
