"""CatBoost on the raw table: a second strong tabular reference, used by probes and fine-tuning
reports when the optional extra is installed (`pip install 'citab-cli[baselines]'`).

CatBoost's ordered boosting with oblivious trees is known to do well on small tables at its
default settings, so none are searched: depth 4 (shallower than its default 6, for the few
dozen labelled subjects of a label subset), a fixed number of rounds with the learning rate
CatBoost derives from the data, class-balanced weights (the headline metric is balanced
accuracy), missing cells read natively (NaN), one thread, and nothing written to disk."""

from __future__ import annotations

import importlib.util

import numpy as np

from citab_cli.core.evaluation.linear import Fit

#: Boosting rounds and tree depth (fixed, see above).
ITERATIONS = 200
DEPTH = 4


def available() -> bool:
    """Whether CatBoost is installed (the `baselines` extra)."""
    return importlib.util.find_spec("catboost") is not None


def fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, classes: int, seed: int = 0
) -> Fit:
    """Fit on (x_train, y_train) with NaN for missing cells, predict x_test (N, classes). A
    training subset with one class predicts that class (CatBoost needs two)."""
    out = np.zeros((len(x_test), classes))
    present = np.unique(y_train)
    if len(present) < 2:
        out[:, present[0]] = 1.0
        return Fit(out, 0.0, 0)
    from catboost import CatBoostClassifier

    model = CatBoostClassifier(
        iterations=ITERATIONS,
        depth=DEPTH,
        auto_class_weights="Balanced",
        loss_function="MultiClass" if len(present) > 2 else "Logloss",
        random_seed=seed,
        thread_count=1,
        verbose=False,
        allow_writing_files=False,
    )
    model.fit(x_train.astype(np.float32), y_train)
    out[:, model.classes_.astype(int)] = model.predict_proba(x_test.astype(np.float32))
    return Fit(out, 0.0, 0)
