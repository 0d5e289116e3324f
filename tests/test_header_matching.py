"""The header-matching benchmark, run on a small table with the shipped sentence encoder."""

from __future__ import annotations

from tests.benchmark_scripts import load


def _benchmark():
    return load("header_matching")


def test_header_matching_on_a_small_table():
    bench = _benchmark()
    concepts = {k: bench.CONCEPTS[k] for k in ("mmse", "sex", "trails_b", "gds")}
    unpartnered = {"nacc": bench.UNPARTNERED["nacc"]}
    results = bench.evaluate(concepts, unpartnered, bench.sentence_encoder(), bench.MODES[:2])
    assert set(results) == {f"{w} / {m}" for w in bench.WORDINGS for m in bench.MODES[:2]}
    shared = results["ours / description"]
    assert shared["top1_accuracy"] == 1.0 and shared["true_pair_cosine"] == [1.0, 1.0]
    assert shared["margin_when_right"] > 0.2
    independent = results["independent / description"]
    assert independent["pairs"] == shared["pairs"] == 16  # mmse, sex: 3 cohorts (6 each); 2 + 2
    assert 0 < independent["true_pair_cosine"][0] < 1.0  # wording differs: the pairs are harder
    assert independent["unpartnered_best_cosine"] < 1.0
