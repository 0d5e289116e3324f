"""Gradient-boosted trees on the raw table: the non-linear reader a linear probe of an embedding
must also beat. scikit-learn's histogram gradient boosting reads missing cells natively (NaN),
class-balanced sample weights match the headline metric, and its few settings are chosen by
stratified cross-validation inside the labelled training subset, as the probe's C is."""

from __future__ import annotations

import numpy as np

from citab_cli.core.evaluation.linear import Fit, folds_for

#: Settings tried by cross-validation: the depth of each tree (1: an additive model of single
#: splits); leaves of two subjects let trees split at all when only a few are labelled.
GRID = (
    {"max_depth": 1, "min_samples_leaf": 2},
    {"max_depth": 2, "min_samples_leaf": 2},
    {"max_depth": 3, "min_samples_leaf": 2},
)
#: Used when no cross-validation is possible (a class with a single training subject): the
#: smallest leaves, so a handful of subjects can still be split.
FALLBACK = {"max_depth": 2, "min_samples_leaf": 1}
#: Folds of the cross-validation (fewer when the smallest class is smaller).
FOLDS = 3
#: Boosting rounds and their step size (fixed: a round count chosen on tiny subsets is noise).
ROUNDS = 50
LEARNING_RATE = 0.2


class _Trees:
    """Boosted trees over the columns with at least one observed cell in the training rows (a
    column missing everywhere carries nothing, and scikit-learn's binning cannot take it)."""

    def __init__(self, setting: dict, seed: int):
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.model = HistGradientBoostingClassifier(
            max_iter=ROUNDS,
            learning_rate=LEARNING_RATE,
            early_stopping=False,
            random_state=seed,
            **setting,
        )
        self.keep: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> _Trees:
        self.keep = ~np.isnan(x).all(axis=0)
        if not self.keep.any():  # nothing observed: every column a constant
            self.keep[:] = True
            x = np.zeros_like(x)
        self.model.fit(x[:, self.keep], y, sample_weight=sample_weight)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x[:, self.keep])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x[:, self.keep])

    @property
    def classes_(self) -> np.ndarray:
        return self.model.classes_


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-subject weights that give every class the same total weight (mean weight 1)."""
    counts = np.bincount(y)
    present = counts > 0
    weight_of = np.zeros(len(counts))
    weight_of[present] = len(y) / (present.sum() * counts[present])
    return weight_of[y]


def choose_setting(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> int:
    """Index into GRID of the setting with the best mean balanced accuracy over stratified
    folds (ties: the first, the simplest)."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    scores = np.zeros(len(GRID))
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        weights = balanced_weights(y[train])
        for i, setting in enumerate(GRID):
            model = _Trees(setting, seed).fit(x[train], y[train], sample_weight=weights)
            scores[i] += balanced_accuracy_score(y[held], model.predict(x[held]))
    return int(np.argmax(scores))


def fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, classes: int, seed: int = 0
) -> Fit:
    """Fit on (x_train, y_train) with NaN for missing cells, predict x_test; `Fit.c` holds the
    index of the GRID setting chosen (see `setting_of`)."""
    import warnings

    from threadpoolctl import threadpool_limits

    folds = min(FOLDS, folds_for(y_train))
    with warnings.catch_warnings(), threadpool_limits(limits=1):  # tiny fits: threads cost more
        warnings.simplefilter("ignore", UserWarning)  # a fold's predictions miss a class
        chosen = choose_setting(x_train, y_train, folds, seed) if folds else 0
        setting = GRID[chosen] if folds else FALLBACK
        model = _Trees(setting, seed).fit(x_train, y_train, balanced_weights(y_train))
    out = np.zeros((len(x_test), classes))
    out[:, model.classes_] = model.predict_proba(x_test)
    return Fit(out, float(chosen), folds)


def setting_of(fit: Fit) -> dict:
    """The setting a fit of `fit_predict` used."""
    return FALLBACK if fit.folds == 0 else GRID[int(fit.c)]
