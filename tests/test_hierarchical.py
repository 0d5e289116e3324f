"""The study's statistics on toys with known answers: the hierarchical paired bootstrap over
pretraining seeds and test subjects, and Holm's adjustment."""

from __future__ import annotations

import numpy as np
import pytest

from citab_cli.core.evaluation import metrics
from citab_cli.core.evaluation.hierarchical import adjusted_verdicts, hierarchical_difference, holm

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 3, 60)


def _probe(skill: float, seed: int) -> np.ndarray:
    """Probabilities over 3 classes whose true class gets `skill` extra mass."""
    rng = np.random.default_rng(seed)
    p = rng.random((len(Y), 3))
    p[np.arange(len(Y)), Y] += skill
    return p / p.sum(1, keepdims=True)


def _runs(skill: float, seed: int, probe_seeds: int = 2) -> list[np.ndarray]:
    return [_probe(skill, 100 * seed + k) for k in range(probe_seeds)]


def test_one_pretraining_seed_reproduces_the_subject_only_interval():
    method, baseline = _runs(0.6, 1), _runs(0.2, 2)
    single = metrics.paired_difference(Y, method, baseline, "balanced_accuracy", 400, seed=3)
    nested = hierarchical_difference(Y, [method], [baseline], "balanced_accuracy", 400, seed=3)
    assert nested["difference"] == pytest.approx(single["difference"])
    assert nested["ci95"] == pytest.approx(single["ci95"])


def test_an_arm_identical_to_the_reference_gives_an_interval_around_zero():
    seeds = [_runs(0.4, s) for s in range(3)]
    same = hierarchical_difference(Y, seeds, seeds, "balanced_accuracy", 300)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0] and same["p"] == 1.0
    assert same["verdict"] == "not detected"


def test_seed_to_seed_variance_widens_the_interval():
    """Three seeds as good as each other against three that differ a lot from seed to seed,
    with the same mean skill: the second interval must be wider."""
    baseline = [_runs(0.3, 50)]
    steady = [_runs(0.6, s) for s in (1, 2, 3)]
    shaky = [_runs(skill, s) for skill, s in ((0.1, 1), (0.6, 2), (1.1, 3))]
    a = hierarchical_difference(Y, steady, baseline, "balanced_accuracy", 600)
    b = hierarchical_difference(Y, shaky, baseline, "balanced_accuracy", 600)
    assert (b["ci95"][1] - b["ci95"][0]) > 1.3 * (a["ci95"][1] - a["ci95"][0])
    assert a["ci95"][0] < a["difference"] < a["ci95"][1]


def test_a_baseline_without_pretraining_is_used_with_every_seed():
    baseline = [_runs(0.2, 9)]
    method = [_runs(0.8, s) for s in range(2)]
    result = hierarchical_difference(Y, method, baseline, "macro_auc", 200)
    assert result["verdict"] == "better" and result["p"] < 0.05
    with pytest.raises(ValueError, match="baseline has 2 seeds; the method has 3"):
        hierarchical_difference(Y, [*method, method[0]], method, "macro_auc", 10)


def test_holm_against_a_hand_computation():
    # sorted: 0.001 <= 0.05/5, 0.01 <= 0.05/4, 0.02 > 0.05/3: stop there
    p = [0.02, 0.001, 0.5, 0.01, 0.04]
    assert holm(p) == [False, True, False, True, False]
    assert holm([0.04]) == [True] and holm([float("nan"), 0.001]) == [False, True]
    entries = [{"p": 0.001, "difference": -0.2}, {"p": 0.04, "difference": 0.1},
               {"p": float("nan"), "difference": 0.0}]  # fmt: skip
    assert adjusted_verdicts(entries) == ["worse", "not detected", "not estimable"]


@pytest.mark.parametrize("name", ["balanced_accuracy", "macro_auc"])
def test_a_shared_memo_gives_the_same_numbers_and_computes_each_run_set_once(name, monkeypatch):
    """A table's rows share methods and baselines: with one memo each probe run set's metric
    is computed once per kind of index, and every row's numbers are those computed afresh."""
    from citab_cli.core.evaluation import hierarchical

    reference = [_runs(0.6, s) for s in range(3)]
    raw, other = [_runs(0.3, 40)], [_runs(0.5, s + 10) for s in range(3)]
    rows = [(reference, raw), (reference, other), (other, raw), (reference, raw)]
    fresh = [hierarchical_difference(Y, m, b, name, 300, seed=2) for m, b in rows]
    computed = []
    real = hierarchical._per_seed
    monkeypatch.setattr(hierarchical, "_per_seed",
                        lambda *a: computed.append(1) or real(*a))  # fmt: skip
    memo: dict = {}
    shared = [hierarchical_difference(Y, m, b, name, 300, seed=2, memo=memo) for m, b in rows]
    assert shared == fresh
    distinct = 3 + 1 + 3  # reference's seeds, the raw table, the other arm's seeds
    assert len(computed) == 2 * distinct  # on the resamples and on every subject, once each
    with_one = hierarchical_difference(Y, reference, raw, name, 1, seed=2, memo={})
    assert with_one["difference"] == fresh[0]["difference"]  # one resample: no mix-up of keys
