"""The baselines every probe report holds: like-for-like random weights, gradient-boosted trees
on the raw table, and the raw table with the scan's block means."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from citab_cli.core.data.project import Project
from citab_cli.core.evaluation import features, linear, trees
from citab_cli.core.evaluation import probe as core


def test_block_means_against_a_hand_computation():
    volume = np.arange(5 * 4 * 6, dtype=np.float32).reshape(1, 5, 4, 6)
    cohort = _Images(np.concatenate([volume, 2 * volume]).astype(np.float16))
    means = features.image_block_means(cohort, blocks=2)  # blocks: [0:2,2:5] x [0:2,2:4] x ...
    expected = [
        volume[0, a:b, c:d, e:f].mean()
        for a, b in ((0, 2), (2, 5))
        for c, d in ((0, 2), (2, 4))
        for e, f in ((0, 3), (3, 6))
    ]
    assert means.shape == (2, 8)
    assert np.allclose(means[0], expected, rtol=1e-3)
    assert np.allclose(means[1], 2 * np.array(expected), rtol=1e-3)


class _Images:
    """The part of a cohort block means read: its stored volumes."""

    def __init__(self, images: np.ndarray):
        self.images = images


def test_balanced_weights_give_each_class_the_same_total():
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    w = trees.balanced_weights(y)
    totals = [w[y == k].sum() for k in range(3)]
    assert np.allclose(totals, totals[0]) and np.isclose(w.mean(), 1.0)


def test_trees_read_an_interaction_a_linear_probe_cannot():
    """XOR of two signs: no linear boundary, two splits for a tree. Missing cells stay NaN."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 3))
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)
    x[rng.random(x.shape) < 0.05] = np.nan  # read natively by the trees
    train, test = slice(0, 160), slice(160, None)
    fit = trees.fit_predict(x[train], y[train], x[test], classes=2, seed=0)
    tree_accuracy = (fit.probabilities.argmax(1) == y[test]).mean()
    filled = np.nan_to_num(x)
    lin = linear.fit_predict(filled[train], y[train], filled[test], classes=2, seed=0)
    assert tree_accuracy > 0.85
    assert (lin.probabilities.argmax(1) == y[test]).mean() < 0.7
    assert fit.folds == trees.FOLDS and 0 <= int(fit.c) < len(trees.GRID)


def test_trees_fall_back_when_a_class_has_one_subject():
    x = np.arange(12, dtype=float)[:, None]
    y = np.array([0] * 6 + [1] * 5 + [2])
    fit = trees.fit_predict(x, y, x[:3], classes=3)
    assert fit.folds == 0 and fit.probabilities.shape == (3, 3)
    assert trees.setting_of(fit) == trees.FALLBACK
    assert np.allclose(fit.probabilities.sum(1), 1)


def test_native_missing_layout_puts_nan_where_the_indicators_were(pretrained: Path):
    from citab_cli.core import headers
    from citab_cli.core.runtime.dataset import load_cohort

    project = Project(pretrained)
    cohort = load_cohort(project, "nacc", headers.ensure_embedded(project, ["nacc"]))
    plan = features.layout([cohort], "text")
    filled = features.table_features(cohort, plan)
    native = features.table_features(cohort, plan, native_missing=True)
    assert filled.shape[1] == native.shape[1] + len(plan.columns)  # one indicator a column
    assert np.isnan(native).sum() > 0 and not np.isnan(filled).any()
    first_numeric = next(j for j, (_, levels) in enumerate(plan.columns) if levels is None)
    position = sum(1 if lv is None else len(lv) for _, lv in plan.columns[:first_numeric])
    assert np.array_equal(np.isnan(native[:, position]), cohort.missing[:, first_numeric])


def test_random_twins_read_what_their_methods_read(pretrained: Path):
    """The random image embedding ignores the table; the random multimodal one reads it. So the
    pretrained image embedding is compared with an image embedding, not with one that also
    sees the table."""
    import torch

    from citab_cli.core import headers
    from citab_cli.core.model.citab import build_model
    from citab_cli.core.runtime.dataset import load_cohort
    from citab_cli.core.runtime.pretrained import load_checkpoint

    project = Project(pretrained)
    loaded = load_checkpoint(project, "best.safetensors")
    cohort = load_cohort(project, "adni", headers.ensure_embedded(project, ["adni"]))
    shuffled = replace(cohort, z=cohort.z[::-1].copy(), level=cohort.level[::-1].copy())
    cpu = torch.device("cpu")
    torch.manual_seed(loaded.config.train.seed)
    networks = {"citab": loaded.model(), "random": build_model(loaded.config.model).eval()}
    before = core._embeddings(loaded, cohort, networks, cpu, "stored")
    after = core._embeddings(loaded, shuffled, networks, cpu, "stored")
    assert set(features.RANDOM_TWIN.values()) - {"random_raw"} <= set(before)
    assert np.array_equal(before["random_image"], after["random_image"])
    assert np.array_equal(before["citab_image"], after["citab_image"])
    assert not np.allclose(before["random_multimodal"], after["random_multimodal"])
    assert not np.allclose(before["random_tabular"], after["random_tabular"])


@pytest.mark.parametrize("method", features.METHODS)
def test_every_method_meets_its_twin_and_every_shared_baseline(method: str):
    pairs = features.comparison_pairs(features.FEATURES)
    baselines = [b for m, b in pairs if m == method]
    assert baselines == [features.RANDOM_TWIN[method], *features.SHARED_BASELINES]
    assert ("oracle", "raw_table") in pairs  # the available gain, when there is an oracle
    without_floor = features.comparison_pairs([f for f in features.FEATURES if f != "floor"])
    assert all(b != "floor" for _, b in without_floor)


def test_trees_pass_over_a_column_with_no_observed_cell():
    """A column missing for every labelled training subject (a small label subset of a cohort
    that rarely measures it) carries nothing; it must not stop the fit."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3))
    y = (x[:, 0] > 0).astype(int)
    x[:, 2] = np.nan
    fit = trees.fit_predict(x[:20], y[:20], x[20:], classes=2)
    assert (fit.probabilities.argmax(1) == y[20:]).mean() > 0.7
    blank = trees.fit_predict(np.full((20, 2), np.nan), y[:20], x[20:, :2], classes=2)
    assert np.allclose(blank.probabilities.sum(1), 1)
