"""The statistics behind every report: vectorised metric kernels, paired bootstrap intervals,
verdicts, and the class-balanced, cross-validated linear head."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from citab_cli.core.evaluation import linear, metrics


def _predictions(n: int = 30, k: int = 3, seed: int = 5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)
    return y, rng.dirichlet(np.ones(k), n), rng


@pytest.mark.parametrize("k", [2, 3])
def test_kernels_equal_scikit_learn_on_every_resample(k: int):
    y, p, rng = _predictions(k=k)
    index = rng.integers(0, len(y), (40, len(y)))
    for row, i in zip(range(len(index)), index, strict=True):
        yy, pp = y[i], p[i]
        predicted = pp.argmax(1)
        assert metrics.accuracy_many(y, p, index)[row] == pytest.approx(
            sk.accuracy_score(yy, predicted)
        )
        assert metrics.balanced_accuracy_many(y, p, index)[row] == pytest.approx(
            metrics.balanced_accuracy(yy, pp)
        )
        assert metrics.macro_f1_many(y, p, index)[row] == pytest.approx(metrics.macro_f1(yy, pp))
        assert metrics.ece_many(y, p, index)[row] == pytest.approx(metrics.ece(yy, pp))
        if len(np.unique(yy)) == k:
            expected = (
                sk.roc_auc_score(yy, pp[:, 1])
                if k == 2
                else sk.roc_auc_score(yy, pp, multi_class="ovr", average="macro")
            )
            assert metrics.macro_auc_many(y, p, index)[row] == pytest.approx(expected)


def test_paired_interval_equals_a_hand_computed_bootstrap():
    y, _, rng = _predictions()
    method = [rng.dirichlet(np.ones(3), len(y)) for _ in range(2)]
    baseline = [rng.dirichlet(np.ones(3), len(y)) for _ in range(2)]
    result = metrics.paired_difference(y, method, baseline, "balanced_accuracy", 200, seed=7)

    def bacc(truth, p):
        predicted = p.argmax(1)
        return np.mean([(predicted[truth == c] == c).mean() for c in np.unique(truth)])

    # the same resamples for both methods: one draw of test subjects scores both
    draws = np.random.default_rng(7).integers(0, len(y), (200, len(y)))
    differences = [
        np.mean([bacc(y[i], p[i]) for p in method]) - np.mean([bacc(y[i], p[i]) for p in baseline])
        for i in draws
    ]
    assert result["ci95"] == pytest.approx(list(np.percentile(differences, [2.5, 97.5])))
    whole = np.mean([bacc(y, p) for p in method]) - np.mean([bacc(y, p) for p in baseline])
    assert result["difference"] == pytest.approx(whole)


def test_pairing_narrows_the_interval():
    """Two methods whose errors move together: the unpaired intervals overlap, the paired
    difference is clearly positive."""
    rng = np.random.default_rng(0)
    n = 40
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    shared = rng.normal(0, 1.0, n)  # what makes a subject hard, for both methods
    base_score = (2 * y - 1) * 0.3 + shared
    better_score = base_score + (2 * y - 1) * 0.5

    def as_proba(score: np.ndarray) -> np.ndarray:
        positive = 1 / (1 + np.exp(-score))
        return np.stack([1 - positive, positive], 1)

    method, baseline = [as_proba(better_score)], [as_proba(base_score)]
    paired = metrics.paired_difference(y, method, baseline, "macro_auc", 1000)
    single = metrics.bootstrap(y, method, 1000)["macro_auc"]
    other = metrics.bootstrap(y, baseline, 1000)["macro_auc"]
    assert paired["verdict"] == "better" and paired["ci95"][0] > 0
    assert single[0] < other[1]  # the two unpaired intervals overlap


def test_verdicts():
    assert metrics.verdict(0.01, 0.2) == "better"
    assert metrics.verdict(-0.2, -0.01) == "worse"
    assert metrics.verdict(-0.1, 0.1) == "not detected"
    assert metrics.verdict(float("nan"), 0.1) == "not estimable"


def test_a_balanced_fit_rescues_a_minority_class():
    """60/27/13% prevalence, a weak signal: an unweighted fit predicts the majority class and
    scores near or below chance in balanced accuracy; the class-balanced one does not."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)

    def cohort(n):
        y = rng.choice(3, n, p=[0.6, 0.27, 0.13])
        x = rng.normal(0, 1, (n, 8))
        x[:, 0] += 0.9 * y
        x[:, 1] += 0.9 * (y == 2)
        return x, y

    x_train, y_train = cohort(160)
    x_test, y_test = cohort(2000)
    scaler = StandardScaler().fit(x_train)
    plain = LogisticRegression(C=0.01, max_iter=2000).fit(scaler.transform(x_train), y_train)
    unbalanced = sk.balanced_accuracy_score(y_test, plain.predict(scaler.transform(x_test)))
    fit = linear.fit_predict(x_train, y_train, x_test, 3)
    balanced = metrics.balanced_accuracy(y_test, fit.probabilities)
    assert unbalanced < 0.40
    assert balanced > 0.50 and fit.folds == 5


def test_fewer_folds_for_a_tiny_class_and_none_for_a_single_subject():
    assert linear.folds_for(np.array([0] * 10 + [1] * 10 + [2] * 3)) == 3
    assert linear.folds_for(np.array([0] * 10 + [1] * 1)) == 0
    assert "3-fold" in linear.describe_folds([5, 3])
    assert "fixed" in linear.describe_folds([5, 0])
    assert linear.describe_folds([5, 5]) is None
    rng = np.random.default_rng(0)
    fit = linear.fit_predict(rng.normal(size=(11, 3)), np.array([0] * 10 + [1]), np.ones((2, 3)), 2)
    assert fit.folds == 0 and fit.c == linear.FALLBACK_C


def test_a_verdict_in_words_gives_the_smallest_detectable_effect():
    entry = {"verdict": "not detected", "mde": 0.2049}
    assert metrics.verdict_words(entry) == "not detected (smallest detectable ±0.20)"
    assert metrics.verdict_words({"verdict": "better", "mde": 0.2}) == "better"
    same = metrics.verdict_words({"verdict": "not detected", "mde": 0.0})
    assert same == "not detected (the same predictions on every resample)"
    assert metrics.verdict_words({"verdict": "not detected"}) == "not detected"
