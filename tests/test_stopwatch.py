"""The stopwatch that says where a study's time goes."""

from __future__ import annotations

import pytest

from citab_cli.core.runtime.stopwatch import Stopwatch, minutes


def test_parts_add_up_and_a_raising_body_still_counts(monkeypatch):
    clock = iter([0.0, 2.0, 10.0, 11.5, 20.0, 24.0])
    monkeypatch.setattr("citab_cli.core.runtime.stopwatch.time.perf_counter", lambda: next(clock))
    watch = Stopwatch()
    with watch.part("embedding"):
        pass
    with watch.part("pretraining"):
        pass
    with pytest.raises(ValueError), watch.part("embedding"):
        raise ValueError("a failed probe")
    assert watch.seconds == {"embedding": 6.0, "pretraining": 1.5}
    assert watch.total == 7.5
    assert watch.rows() == [
        {"part": "embedding", "seconds": 6.0, "share": 0.8},
        {"part": "pretraining", "seconds": 1.5, "share": 0.2},
    ]


def test_a_stopwatch_made_from_anothers_seconds_counts_apart():
    """A study copies its runs' stopwatch before timing the report, which is not kept."""
    runs = Stopwatch({"x": 1.0})
    everything = Stopwatch(runs.seconds)
    everything.add("x", 2.0)
    everything.add("y", 3.0)
    assert everything.seconds == {"x": 3.0, "y": 3.0}
    assert runs.seconds == {"x": 1.0}


def test_an_empty_stopwatch_has_no_rows_and_minutes_read_well():
    assert Stopwatch().rows() == [] and Stopwatch().total == 0
    assert minutes(41.24) == "41.2 s"
    assert minutes(725) == "12 min 05 s"
