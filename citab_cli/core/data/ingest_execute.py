"""Carrying out an ingest plan: every scan through its pipeline into a staged cohort folder, QC,
splits, the cohort's files, then the project-level files, atomically. The plan is read, never
changed: what the scans decide (rows dropped for a bad scan, QC, timings, warnings) is the
`IngestResult`, which the manifest records."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from citab_cli.core import atomic, locks
from citab_cli.core.data import manifest
from citab_cli.core.data.ingest import IngestSummary, split_of, summarize
from citab_cli.core.data.ingest_plan import IngestPlan, IngestResult
from citab_cli.core.data.project import (
    IMAGES_FILE,
    MANIFEST_FILE,
    QC_FILE,
    SUBJECTS_FILE,
    TABULAR_FILE,
    TRUTH_FILE,
)
from citab_cli.core.errors import CitabError
from citab_cli.core.scans import pipelines, qc
from citab_cli.core.scans.engines import preprocess_all
from citab_cli.core.scans.pipelines import Job, Preprocessed
from citab_cli.core.settings import ImageSettings


def _from_here(path: Path) -> str:
    """`path` as the user can open it from where they stand: relative to the working directory
    when it lies below it, else absolute."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def _resolution_warning(spacings: list, settings: ImageSettings) -> str | None:
    """A warning when the scans are much coarser than the grid they are stored on."""
    if not spacings:  # every subject table-only
        return None
    source = float(np.median([max(s) for s in spacings]))
    target = max(settings.spacing)
    if source <= 2 * target:
        return None
    suggested = max(8, round(min(settings.shape) * target / source))
    return (
        f"the scans' voxels ({source:g} mm) are much coarser than the project's "
        f"({target:g} mm): storage grows with no detail gained; a project with --shape "
        f"{suggested} would hold the same information"
    )


def scan_job(plan: IngestPlan, store: bool = False) -> Job:
    """What each of the plan's scans goes through. Finished scans are read from the project's
    cache when it holds them; they are written to it by t1-linear (costly to redo) and when
    `store` is set (a cluster or shard run: the cache is where the workers meet)."""
    return Job(
        plan.pipeline,
        plan.settings.image,
        cache=plan.project.scan_cache_dir.resolve(),  # the same path on every worker
        series=plan.schema.image_series,
        store=store or plan.pipeline == "t1-linear",
    )


def execute(
    plan: IngestPlan,
    workers: int = 1,
    advance: Callable[[], None] | None = None,
    scheduler: str | None = None,
) -> IngestSummary:
    """Preprocess the images (on the Dask cluster at `scheduler`, else in `workers` local
    processes) and write the cohort; on any failure the project is unchanged (but for finished
    scans, which stay in its cache for the next try)."""
    project = plan.project
    target = project.cohort_dir(plan.cohort)
    result = IngestResult(plan.table, list(plan.images), plan.fixed_splits, list(plan.warnings),
                          list(plan.notes))  # fmt: skip
    with atomic.removed_if_created(project.root, project.cohorts_dir, project.schemas_dir):
        project.root.mkdir(parents=True, exist_ok=True)
        with locks.hold(project.root, "writing to this project"):
            # Holding the project's lock: no other ingest is writing, so staged cohorts left in
            # cohorts/ belong to ingests that were killed.
            removed, freed = atomic.remove_leftovers(project.cohorts_dir)
            with atomic.staged_directory(target) as stage:
                _write_cohort(plan, result, stage, workers, scheduler, advance)
                # Everything that can fail has run; the project-level files go last, atomic.
                if plan.new_project:
                    project.write_settings(plan.settings)
                schema = plan.schema_text.encode() if plan.schema_text else None
                atomic.write_bytes(
                    project.schema_path(plan.cohort), schema or plan.schema_path.read_bytes()
                )
    summary = summarize(plan, result.split_of, target, result.table, result.warnings,
                        result.images)  # fmt: skip
    summary.notes += result.notes
    summary.seconds, summary.peak_mb = result.seconds, result.peak_mb
    if removed:
        summary.notes.append(
            f"removed {removed} folder(s) that an interrupted ingest left in "
            f"{project.cohorts_dir} ({freed / 1e9:.2f} GB)"
        )
    return summary


def _preprocess(
    plan: IngestPlan,
    result: IngestResult,
    stage: Path,
    workers: int,
    scheduler: str | None,
    advance: Callable[[], None] | None,
) -> list[Preprocessed]:
    """Every scan through the pipeline into stage/images.npy (one volume per row with a scan,
    in row order; table-only rows have none), written scan by scan as each finishes (never held
    in memory). A bad scan stops the ingest, or with --on-bad-scan skip drops its row (the
    result's table and images shrink to match). Returns the scanned rows' results."""
    job = scan_job(plan, store=scheduler is not None)
    scanned = result.scanned
    count = len(scanned)
    store = np.lib.format.open_memmap(
        stage / IMAGES_FILE, mode="w+", dtype=np.float16, shape=(count, *plan.settings.image.shape)
    )
    results: list[Preprocessed | None] = [None] * count

    def keep(index: int, done: Preprocessed) -> None:
        store[index] = done.volume
        done.volume = np.empty(0, np.float16)  # stored; not kept twice in memory
        results[index] = done

    paths = [result.images[i] for i in scanned]
    failures = preprocess_all(paths, job, workers, keep, advance, scheduler) if count else {}
    store.flush()
    rows = zip(result.table.lines, result.table.subjects, strict=True)
    origins = [f"{plan.csv_path}: line {line} (subject {subject})" for line, subject in rows]
    origins = [origins[i] for i in scanned]
    if failures and (plan.on_bad_scan == "error" or len(failures) == count):
        raise CitabError(pipelines.describe_failures(failures, origins))
    kept = [i for i in range(count) if i not in failures]
    if failures:
        compact = np.lib.format.open_memmap(
            stage / ".kept.npy", mode="w+", dtype=np.float16,
            shape=(len(kept), *plan.settings.image.shape),
        )  # fmt: skip
        for row, index in enumerate(kept):
            compact[row] = store[index]
        compact.flush()
        del compact, store
        os.replace(stage / ".kept.npy", stage / IMAGES_FILE)
        for index in sorted(failures):
            result.warnings.append(f"scan skipped (--on-bad-scan skip): {origins[index]}: "
                                   f"{failures[index].split(': ', 1)[-1]}")  # fmt: skip
        bad = {scanned[i] for i in failures}
        result.keep([i for i in range(len(result.images)) if i not in bad])
        result.table.dropped["bad scan"] += len(failures)
    return [results[i] for i in kept]  # type: ignore[misc]


def _quality(plan: IngestPlan, result: IngestResult, stage: Path, done: list[Preprocessed]):
    """Per-subject QC figures into the result, outliers as warnings, and qc.png: of the
    subjects with a scan (a cohort without any has no montage)."""
    subjects = [result.table.subjects[i] for i in result.scanned]
    figures = [d.qc for d in done]
    if not done:
        return
    result.qc = dict(zip(subjects, figures, strict=True))
    flagged = qc.outliers(subjects, figures)
    shown = _from_here(plan.project.cohort_file(plan.cohort, QC_FILE))
    for subject, keys in flagged.items():
        result.warnings.append(qc.describe(subject, keys, result.qc[subject], figures, shown))
    result.qc_outliers = flagged
    volumes = np.load(stage / IMAGES_FILE, mmap_mode="r")
    qc.montage(stage / QC_FILE, volumes, subjects, flagged,
               f"{plan.cohort}, {plan.pipeline}")  # fmt: skip
    seconds: dict[str, list[float]] = {}
    for d in done:
        for step, value in d.seconds.items():
            seconds.setdefault(step, []).append(value)
    result.seconds = {k: round(float(np.mean(v)), 3) for k, v in seconds.items()}
    result.peak_mb = max((d.peak_mb for d in done if not d.cached), default=0.0)


def _write_cohort(
    plan: IngestPlan,
    result: IngestResult,
    stage: Path,
    workers: int,
    scheduler: str | None,
    advance: Callable[[], None] | None,
) -> None:
    """Preprocess the scans and write the cohort's files into `stage`; the result holds the
    splits."""
    from safetensors.numpy import save_file

    done = _preprocess(plan, result, stage, workers, scheduler, advance)
    cached = sum(d.cached for d in done)
    if cached:
        result.notes.append(f"{cached} of {len(done)} scans came from the cache "
                            f"{plan.project.scan_cache_dir}")  # fmt: skip
    coarse = _resolution_warning([d.source_spacing for d in done], plan.settings.image)
    if coarse:
        result.warnings.append(coarse)
    _quality(plan, result, stage, done)
    result.split_of, gaps = split_of(plan, result.table, result.fixed_splits)
    result.warnings += [g for g in gaps if g not in result.warnings]
    save_file(
        {"values": np.ascontiguousarray(result.table.values)},
        str(stage / TABULAR_FILE),
        metadata={"cohort": plan.cohort, "columns": json.dumps(result.table.columns)},
    )
    digests = iter(d.sha256 for d in done)
    result.digests = [next(digests) if path is not None else "" for path in result.images]
    (stage / SUBJECTS_FILE).write_text(manifest.subjects_csv(plan, result))
    (stage / MANIFEST_FILE).write_text(json.dumps(manifest.manifest(plan, result), indent=2))
    truth = manifest.synthetic_truth(plan.csv_path, result.table.subjects)
    if truth is not None:
        (stage / TRUTH_FILE).write_text(truth)
    for name in os.listdir(stage):
        os.chmod(stage / name, 0o666 & ~atomic.umask())
        with open(stage / name, "rb") as handle:
            os.fsync(handle.fileno())
