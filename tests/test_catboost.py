"""CatBoost on the raw table, the optional second tabular reference: probabilities over every
class, missing cells read natively, one class handled, the same fit for the same seed, and
probes that use it only when it is installed."""

from __future__ import annotations

import numpy as np
import pytest

from citab_cli.core.evaluation import catboost_trees, features, linear, trees

pytest.importorskip("catboost")


def _table(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 4)) + y[:, None] * np.array([4.0, 0.0, 0.0, 0.0])
    x[rng.random(x.shape) < 0.1] = np.nan  # missing cells stay NaN
    return x, y


def test_catboost_reads_a_separable_table_with_missing_cells():
    x, y = _table()
    fit = catboost_trees.fit_predict(x[:40], y[:40], x[40:], 3, seed=0)
    assert fit.probabilities.shape == (20, 3)
    np.testing.assert_allclose(fit.probabilities.sum(1), 1.0, rtol=1e-6)
    assert (fit.probabilities.argmax(1) == y[40:]).mean() > 0.7
    again = catboost_trees.fit_predict(x[:40], y[:40], x[40:], 3, seed=0)
    np.testing.assert_array_equal(fit.probabilities, again.probabilities)


def test_a_class_the_subset_lacks_gets_zero_and_one_class_is_predicted_as_itself():
    x, y = _table()
    two = y[:40] != 1
    fit = catboost_trees.fit_predict(x[:40][two], y[:40][two], x[40:], 3, seed=0)
    assert (fit.probabilities[:, 1] == 0).all()
    np.testing.assert_allclose(fit.probabilities.sum(1), 1.0, rtol=1e-6)
    only = catboost_trees.fit_predict(x[:5], np.full(5, 2), x[40:], 3, seed=0)
    assert (only.probabilities[:, 2] == 1).all()


def test_each_feature_set_has_its_reader():
    assert features.reader_of("raw_table_catboost") is catboost_trees
    assert features.reader_of("raw_table_gbdt") is trees
    assert features.reader_of("citab") is linear and features.reader_of("raw_table") is linear
    assert "raw_table_catboost" in features.SHARED_BASELINES


def test_a_probe_uses_catboost_only_when_it_is_installed(pretrained, monkeypatch):
    from citab_cli.core.data.project import Project
    from citab_cli.core.evaluation import probe

    light = {"fractions": (1.0,), "seeds": 1, "resamples": 20}
    light["features"] = ("raw_table", "raw_table_catboost")  # no network beyond the model
    with_it = probe.probe(Project(pretrained), "best.safetensors", ["adni"], **light)[0]
    assert set(with_it.summary) == {"raw_table", "raw_table_catboost"}
    monkeypatch.setattr(catboost_trees, "available", lambda: False)
    light["features"] = ("raw_table",)
    without = probe.probe(Project(pretrained), "best.safetensors", ["adni"], **light)[0]
    assert "raw_table_catboost" not in without.summary
