"""The ITM ceiling benchmark: an ideal reader of what the synthetic scans show, on few pairs."""

from __future__ import annotations

import numpy as np

from tests.benchmark_scripts import load


def _benchmark():
    return load("itm_ceiling")


def test_negatives_are_never_the_own_table_and_harder_ones_are_closer():
    bench = _benchmark()
    rng = np.random.default_rng(0)
    image = rng.normal(size=(400, 8))
    table = image + rng.normal(0, 0.3, size=image.shape)
    gaps = {}
    for t in (None, 0.1):
        picked = bench._negatives(rng, image, table, t)
        assert picked.shape == image.shape
        assert not (picked == np.arange(8)).any()  # never the subject's own table
        chosen = np.take_along_axis(table, picked, 1)
        gaps[t] = float(np.abs(chosen - image).mean())
    assert gaps[0.1] < 0.5 * gaps[None]  # hard negatives sit near the image


def test_a_scan_that_shows_more_is_easier_to_match():
    bench = _benchmark()
    weak = bench.ceiling(0.3, pairs=8_000, batch=16, seed=0)
    strong = bench.ceiling(1.0, pairs=8_000, batch=16, seed=0)
    assert set(weak) == {"uniform", "hard, t=1", "hard, t=0.3", "hard, t=0.1"}
    accuracy = {k: {n: v["balanced_accuracy"] for n, v in d.items()} for k, d in
                (("weak", weak), ("strong", strong))}  # fmt: skip
    assert 0.55 < accuracy["weak"]["uniform"] < accuracy["strong"]["uniform"] < 0.75
    assert accuracy["strong"]["hard, t=1"] < accuracy["strong"]["uniform"] - 0.05  # harder
    for scores in (*weak.values(), *strong.values()):
        assert scores["auc"] >= scores["balanced_accuracy"] - 0.02  # a threshold costs, never helps
