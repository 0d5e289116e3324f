"""The linear head of a probe: class-balanced logistic regression on standardised features, its
regularisation chosen by stratified cross-validation inside the labelled training subset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Inverse regularisation strengths tried by cross-validation.
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
#: Folds of the cross-validation; fewer when the smallest class is smaller than this.
CV_FOLDS = 5
#: C used when no cross-validation is possible (a class with a single training subject).
FALLBACK_C = 1.0
MAX_ITERATIONS = 2000


@dataclass(frozen=True)
class Fit:
    """Test probabilities over every class, and how C was chosen."""

    probabilities: np.ndarray  # (N_test, K), zero for classes the training subset lacked
    c: float
    folds: int  # 0 when C was fixed (no cross-validation possible)


def folds_for(y_train: np.ndarray) -> int:
    """Stratified folds the training subset allows: at most CV_FOLDS, at most its smallest
    class; 0 when a class has a single subject."""
    smallest = int(np.bincount(y_train)[np.unique(y_train)].min())
    return min(CV_FOLDS, smallest) if smallest >= 2 else 0


def _model(c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=c, class_weight="balanced", max_iter=MAX_ITERATIONS, warm_start=True
    )


def choose_c(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> float:
    """The C of C_GRID with the best mean balanced accuracy over stratified folds (ties: the
    stronger regularisation). Within a fold the Cs are fitted in increasing order, each
    starting from the previous solution."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    scores = np.zeros(len(C_GRID))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # a fold's predictions miss a class
        for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
            model = _model(C_GRID[0])
            for i, c in enumerate(C_GRID):
                model.set_params(C=c)
                model.fit(x[train], y[train])
                scores[i] += balanced_accuracy_score(y[held], model.predict(x[held]))
    return float(C_GRID[int(np.argmax(scores))])


def fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, classes: int, seed: int = 0
) -> Fit:
    """Fit on (x_train, y_train), predict x_test. Class-balanced weights, because the headline
    metric (balanced accuracy) weighs every class equally."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # tiny fits: a second BLAS thread made them 2x slower
        return _fit_predict(x_train, y_train, x_test, classes, seed)


def _fit_predict(x_train, y_train, x_test, classes: int, seed: int) -> Fit:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    x, test = scaler.transform(x_train), scaler.transform(x_test)
    folds = folds_for(y_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # a fold's predictions miss a class
        c = choose_c(x, y_train, folds, seed) if folds else FALLBACK_C
        model = _model(c).fit(x, y_train)
    out = np.zeros((len(test), classes))
    out[:, model.classes_] = model.predict_proba(test)
    return Fit(out, c, folds)


def describe_folds(folds: list[int]) -> str | None:
    """A note when cross-validation had to use fewer folds than CV_FOLDS, or none."""
    if not folds or min(folds) == CV_FOLDS:
        return None
    if min(folds) == 0:
        return (
            f"C fixed at {FALLBACK_C:g} for some label subsets: a class had a single labelled "
            "training subject, too few to cross-validate"
        )
    return (
        f"C chosen by {min(folds)}-fold cross-validation for some label subsets (a class had "
        f"fewer than {CV_FOLDS} labelled training subjects)"
    )
