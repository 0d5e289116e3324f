"""Where a long job's time goes: seconds per named part, summed over every time the part ran."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """Seconds per part of a job ("pretraining", "embedding", ...), in the order parts first
    ran. Parts may repeat (each run, each cohort): their seconds add up."""

    def __init__(self, seconds: dict[str, float] | None = None):
        self.seconds: dict[str, float] = dict(seconds or {})

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Time the body as `name` (counted even when the body raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        """Count `seconds` more for the part `name`."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @property
    def total(self) -> float:
        """Seconds of every part together."""
        return sum(self.seconds.values())

    def rows(self) -> list[dict]:
        """Every part, largest first: name, seconds (rounded to 0.1 s) and share of the total."""
        total = self.total or 1.0
        ordered = sorted(self.seconds.items(), key=lambda item: -item[1])
        return [
            {"part": name, "seconds": round(seconds, 1), "share": round(seconds / total, 3)}
            for name, seconds in ordered
        ]


def minutes(seconds: float) -> str:
    """'12 min 05 s' or '41.2 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole, rest = divmod(round(seconds), 60)
    return f"{whole} min {rest:02d} s"
