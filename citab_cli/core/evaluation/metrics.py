"""Classification metrics, written out in numpy (checked against scikit-learn in the tests),
and a percentile bootstrap for their confidence intervals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Metric names in report order.
NAMES = ("accuracy", "balanced_accuracy", "macro_auc", "macro_f1", "ece")


def accuracy(y: np.ndarray, probabilities: np.ndarray) -> float:
    return float((probabilities.argmax(1) == y).mean())


def balanced_accuracy(y: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean recall over the classes present in `y`."""
    predicted = probabilities.argmax(1)
    recalls = [(predicted[y == c] == c).mean() for c in np.unique(y)]
    return float(np.mean(recalls))


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability a positive outranks a negative (ties half)."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    unique, start = np.unique(sorted_scores, return_index=True)
    counts = np.diff(np.append(start, len(scores)))
    average = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auc(y: np.ndarray, probabilities: np.ndarray) -> float:
    """One-vs-rest AUC averaged over the classes present in `y` (binary: the usual AUC)."""
    classes = np.unique(y)
    if probabilities.shape[1] == 2:
        return binary_auc(y == 1, probabilities[:, 1])
    values = [binary_auc(y == c, probabilities[:, c]) for c in classes]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def macro_f1(y: np.ndarray, probabilities: np.ndarray) -> float:
    """F1 averaged over the classes that occur in `y` or in the predictions."""
    predicted = probabilities.argmax(1)
    scores = []
    for c in np.union1d(np.unique(y), np.unique(predicted)):
        tp = int(((predicted == c) & (y == c)).sum())
        fp = int(((predicted == c) & (y != c)).sum())
        fn = int(((predicted != c) & (y == c)).sum())
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def ece(y: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
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
    return {name: fn(y, probabilities) for name, fn in METRICS.items()}


def bootstrap(
    y: np.ndarray, runs: list[np.ndarray], resamples: int = 500, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of each metric's mean over `runs` (probabilities (N, K) of
    the same N test subjects, one per seed), resampling the test subjects."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in METRICS}
    for _ in range(resamples):
        pick = rng.integers(0, len(y), len(y))
        if len(np.unique(y[pick])) < 2:
            continue
        for name, fn in METRICS.items():
            draws[name].append(float(np.nanmean([fn(y[pick], p[pick]) for p in runs])))
    return {
        name: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
        if v
        else (float("nan"), float("nan"))
        for name, v in draws.items()
    }
