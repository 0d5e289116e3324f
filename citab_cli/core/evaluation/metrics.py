"""Classification metrics and their bootstrap intervals.

Point estimates come from scikit-learn (ECE, which it lacks, is written out here). Intervals come
from `scipy.stats.bootstrap` (percentile method), resampling the test subjects. Inside the
bootstrap, scikit-learn's functions are called once per resample and are far too slow for a
report's hundreds of comparisons (`benchmarks/bootstrap_metrics.py`), so the bootstrap uses
vectorised kernels that score every resample at once; the tests pin them to scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Metric names in report order.
NAMES = ("accuracy", "balanced_accuracy", "macro_auc", "macro_f1", "ece")
#: Metrics compared between methods in paired comparisons.
PAIRED = ("balanced_accuracy", "macro_auc")
#: Bins of the expected calibration error.
ECE_BINS = 10


def accuracy(y: np.ndarray, probabilities: np.ndarray) -> float:
    """Share of subjects whose most probable class is right."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y, probabilities.argmax(1)))


def balanced_accuracy(y: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean recall over the classes present in `y`."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():  # predicted classes absent from y: recall is still defined
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y, probabilities.argmax(1)))


def macro_auc(y: np.ndarray, probabilities: np.ndarray) -> float:
    """One-vs-rest AUC averaged over the classes present in `y` (binary: the usual AUC)."""
    from sklearn.metrics import roc_auc_score

    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    if probabilities.shape[1] == 2:
        return float(roc_auc_score(y == 1, probabilities[:, 1]))
    values = [roc_auc_score(y == c, probabilities[:, c]) for c in present]
    return float(np.mean(values))


def macro_f1(y: np.ndarray, probabilities: np.ndarray) -> float:
    """F1 averaged over the classes that occur in `y` or in the predictions."""
    from sklearn.metrics import f1_score

    return float(f1_score(y, probabilities.argmax(1), average="macro", zero_division=0))


def ece(y: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-class confidence, `bins` equal-width bins."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "balanced_accuracy": balanced_accuracy,
    "macro_auc": macro_auc,
    "macro_f1": macro_f1,
    "ece": ece,
}


def score(y: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Every metric of METRICS for one set of predictions."""
    return {name: fn(y, probabilities) for name, fn in METRICS.items()}


# -- vectorised kernels: every bootstrap resample at once ---------------------------------------


def accuracy_many(y: np.ndarray, p: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Accuracy of each resample: index (R, n) rows of y (N,) and p (N, K) -> (R,)."""
    return (p.argmax(1)[index] == y[index]).mean(-1)


def balanced_accuracy_many(y: np.ndarray, p: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present in each resample -> (R,)."""
    truth, predicted = y[index], p.argmax(1)[index]
    recalls = []
    for c in range(p.shape[1]):
        members = (truth == c).sum(-1)
        hits = ((truth == c) & (predicted == c)).sum(-1)
        recalls.append(np.where(members > 0, hits / np.maximum(members, 1), np.nan))
    return np.nanmean(np.stack(recalls), axis=0)


def _auc_many(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC per row (ties counted half): positive (R, n) bool, scores (R, n) -> (R,)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=-1)  # average ranks over ties
    n_pos = positive.sum(-1)
    n_neg = positive.shape[-1] - n_pos
    rank_sum = (ranks * positive).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def macro_auc_many(y: np.ndarray, p: np.ndarray, index: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC averaged over the classes present in each resample -> (R,)."""
    truth = y[index]
    if p.shape[1] == 2:
        return _auc_many(truth == 1, p[:, 1][index])
    values = np.stack([_auc_many(truth == c, p[:, c][index]) for c in range(p.shape[1])])
    with np.errstate(invalid="ignore"):
        return np.nanmean(values, axis=0) if values.size else np.full(len(index), np.nan)


def macro_f1_many(y: np.ndarray, p: np.ndarray, index: np.ndarray) -> np.ndarray:
    """F1 averaged over the classes in each resample's truth or predictions -> (R,)."""
    truth, predicted = y[index], p.argmax(1)[index]
    scores = []
    for c in range(p.shape[1]):
        tp = ((predicted == c) & (truth == c)).sum(-1)
        fp = ((predicted == c) & (truth != c)).sum(-1)
        fn = ((predicted != c) & (truth == c)).sum(-1)
        occurs = (tp + fp + fn) > 0
        f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        scores.append(np.where(occurs, f1, np.nan))
    return np.nanmean(np.stack(scores), axis=0)


def ece_many(y: np.ndarray, p: np.ndarray, index: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Expected calibration error of each resample -> (R,)."""
    confidence = p.max(1)[index]
    correct = (p.argmax(1) == y)[index].astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    n = index.shape[-1]
    total = np.zeros(index.shape[:-1])
    for b in range(bins):
        members = which == b
        count = members.sum(-1)
        gap = np.abs((correct * members).sum(-1) - (confidence * members).sum(-1))
        total += np.where(count > 0, gap / n, 0.0)
    return total


KERNELS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": accuracy_many,
    "balanced_accuracy": balanced_accuracy_many,
    "macro_auc": macro_auc_many,
    "macro_f1": macro_f1_many,
    "ece": ece_many,
}


def _interval(statistic: Callable[[np.ndarray], np.ndarray], n: int, resamples: int, seed: int):
    """95% percentile interval and standard error of `statistic` (index (R, n) -> (R,)) over
    resamples of n: (low, high, se)."""
    import warnings

    from scipy.stats import bootstrap

    with warnings.catch_warnings():  # a degenerate distribution is reported as nan, not warned
        warnings.simplefilter("ignore")
        result = bootstrap(
            (np.arange(n),),
            statistic,
            vectorized=True,
            n_resamples=resamples,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
        # the percentile interval, leaving out resamples where the metric is undefined (e.g. a
        # resample of a small test split that holds one class only has no AUC)
        values = np.asarray(result.bootstrap_distribution, dtype=float)
        if np.isnan(values).all():
            return float("nan"), float("nan"), float("nan")
        low, high = np.nanpercentile(values, [2.5, 97.5])
    return float(low), float(high), float(np.nanstd(values))


def _mean_over_runs(name: str, y: np.ndarray, runs: list[np.ndarray]):
    kernel = KERNELS[name]

    def statistic(index: np.ndarray, axis: int = -1) -> np.ndarray:
        index = np.atleast_2d(index)
        with np.errstate(invalid="ignore"):
            return np.nanmean(np.stack([kernel(y, p, index) for p in runs]), axis=0)

    return statistic


def bootstrap(
    y: np.ndarray, runs: list[np.ndarray], resamples: int = 500, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of each metric's mean over `runs` (probabilities (N, K) of
    the same N test subjects, one per seed), resampling the test subjects."""
    return {
        name: _interval(_mean_over_runs(name, y, runs), len(y), resamples, seed)[:2]
        for name in NAMES
    }


def paired_difference(
    y: np.ndarray,
    method: list[np.ndarray],
    baseline: list[np.ndarray],
    name: str,
    resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Mean over runs of metric(method) - metric(baseline) on the same N test subjects (run i of
    each is the same label subset and seed), with a paired-bootstrap 95% interval: each
    resample draws one set of test subjects and scores both methods on it."""
    first = _mean_over_runs(name, y, method)
    second = _mean_over_runs(name, y, baseline)

    def difference(index: np.ndarray, axis: int = -1) -> np.ndarray:
        return first(index) - second(index)

    everyone = np.arange(len(y))[None]
    estimate = float(difference(everyone)[0])
    low, high, se = _interval(difference, len(y), resamples, seed)
    return {
        "difference": estimate,
        "ci95": [low, high],
        "verdict": verdict(low, high),
        "se": se,
        "mde": detectable(se),
        "n": int(len(y)),
    }


#: The power and two-sided level at which a comparison's smallest detectable effect is stated.
POWER = 0.8
ALPHA = 0.05
#: What an interval that crosses 0 lets one say (with the smallest detectable effect beside it).
NOT_DETECTED = "not detected"


def detectable(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference that a two-sided test at level `alpha` detects with
    probability `power`, for an estimate with standard error `se`: (z(1-alpha/2) + z(power))
    se; 2.80 se at the defaults."""
    from scipy.stats import norm

    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


def verdict(low: float, high: float) -> str:
    """What a paired 95% interval lets one say."""
    if np.isnan(low) or np.isnan(high):
        return "not estimable"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return NOT_DETECTED


def verdict_words(entry: dict, key: str = "mde") -> str:
    """A verdict as a reader should take it: "better", "worse", or "not detected (smallest
    detectable ±x)" with the smallest effect the comparison could have detected (`key`)."""
    if entry["verdict"] != NOT_DETECTED or key not in entry or entry[key] != entry[key]:
        return entry["verdict"]
    if entry[key] == 0:  # no resample moved the difference: the two predict alike
        return f"{NOT_DETECTED} (the same predictions on every resample)"
    return f"{NOT_DETECTED} (smallest detectable ±{entry[key]:.2f})"
