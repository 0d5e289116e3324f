"""`citab ingest --preprocess-only`: fill the project's scan cache and touch nothing else, so many
jobs (a SLURM job array, each with its `--shard i/N`, or one Dask cluster) can preprocess a
cohort together; a final plain ingest then only assembles the cohort from the cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from citab_cli.core.data.ingest_execute import scan_job
from citab_cli.core.data.ingest_plan import IngestPlan
from citab_cli.core.errors import CitabError
from citab_cli.core.scans import pipelines
from citab_cli.core.scans.engines import preprocess_all


@dataclass
class FillSummary:
    """What a fill run did with its share of the cohort's scans."""

    cohort: str
    shard: tuple[int, int] | None
    total: int  # the cohort's scans
    scans: int  # this run's share
    made: int = 0
    cached: int = 0
    failed: list[str] = field(default_factory=list)
    cache: Path | None = None
    peak_mb: float = 0.0


def parse_shard(text: str) -> tuple[int, int]:
    """`--shard i/N` as (i, N), 0 <= i < N (a SLURM array's task id, --array=0-(N-1))."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index, count = -1, 0
    if count < 1 or not 0 <= index < count:
        raise CitabError(
            f"--shard '{text}' must be I/N with 0 <= I < N, e.g. --shard "
            "$SLURM_ARRAY_TASK_ID/8 with --array=0-7"
        )
    return index, count


def shard_indices(count: int, shard: tuple[int, int] | None) -> list[int]:
    """The scans (by position in the validated table) that shard i of N preprocesses: every
    N-th from the i-th, so shards take similar shares whatever order the table has."""
    if shard is None:
        return list(range(count))
    index, shards = shard
    return list(range(index, count, shards))


def fill(
    plan: IngestPlan,
    selected: list[int],
    workers: int = 1,
    scheduler: str | None = None,
    advance: Callable[[], None] | None = None,
    shard: tuple[int, int] | None = None,
) -> FillSummary:
    """Preprocess the `selected` scans of the plan into the project's cache (finished ones are
    skipped); write nothing else. Bad scans are listed; with --on-bad-scan error the run fails
    after every other scan is done."""
    job = scan_job(plan, store=True)
    paths = [plan.images[i] for i in selected]
    summary = FillSummary(plan.cohort, shard, len(plan.scanned), len(paths),
                          cache=job.result_folder())  # fmt: skip

    def count(_: int, done: pipelines.Preprocessed) -> None:
        if done.cached:
            summary.cached += 1
        else:
            summary.made += 1
            summary.peak_mb = max(summary.peak_mb, done.peak_mb)

    failures = preprocess_all(paths, job, workers, count, advance, scheduler)
    rows = [(plan.table.lines[i], plan.table.subjects[i]) for i in selected]
    origins = [f"{plan.csv_path}: line {line} (subject {subject})" for line, subject in rows]
    summary.failed = [f"{origins[i]}: {failures[i]}" for i in sorted(failures)]
    if failures and plan.on_bad_scan == "error":
        raise CitabError(
            pipelines.describe_failures(failures, origins) + "; the other scans are in the "
            "cache (or --on-bad-scan skip)"
        )
    return summary
