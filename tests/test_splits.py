"""Subject-level, label-stratified splits."""

from __future__ import annotations

from collections import Counter

from citab_cli.core.data.splits import assign
from citab_cli.core.settings import SplitSettings


def test_stratified_deterministic_and_order_free():
    subjects = [f"S{i:03d}" for i in range(100)]
    labels = ["CN"] * 50 + ["MCI"] * 30 + ["AD"] * 15 + [None] * 5
    split = assign(subjects, labels, SplitSettings())
    assert split == assign(subjects, labels, SplitSettings())
    by = Counter(zip(split, labels, strict=True))
    assert by[("test", "CN")] == 10 and by[("test", "MCI")] == 6 and by[("test", "AD")] == 3
    assert by[("val", "CN")] == 5 and by[("train", "CN")] == 35
    reverse = assign(subjects[::-1], labels[::-1], SplitSettings())
    assert dict(zip(subjects, split, strict=True)) == dict(
        zip(subjects[::-1], reverse, strict=True)
    )
    assert split != assign(subjects, labels, SplitSettings(seed=1))


def test_small_classes_still_reach_test_and_train():
    subjects = [f"S{i}" for i in range(7)]
    labels = ["CN"] * 4 + ["AD"] * 3
    split = assign(subjects, labels, SplitSettings())
    for label in ("CN", "AD"):
        got = {s for s, lab in zip(split, labels, strict=True) if lab == label}
        assert {"train", "test"} <= got
