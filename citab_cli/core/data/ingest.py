"""`citab ingest`: validate a cohort's table and images, then store it in the project atomically."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from citab_cli.core import atomic, locks
from citab_cli.core.data import image_paths, manifest, splits
from citab_cli.core.data.ingest_plan import DEFAULT_PIPELINE, IngestPlan, OnBadScan, OnMissing
from citab_cli.core.data.project import (
    IMAGES_FILE,
    MANIFEST_FILE,
    QC_FILE,
    SUBJECTS_FILE,
    TABULAR_FILE,
    TRUTH_FILE,
    Project,
)
from citab_cli.core.data.project_setup import project_settings
from citab_cli.core.data.table import ValidatedTable, validate
from citab_cli.core.errors import CitabError
from citab_cli.core.hashing import file_sha256
from citab_cli.core.scans import pipelines, qc
from citab_cli.core.scans.engines import preprocess_all
from citab_cli.core.scans.pipelines import Job, Preprocessed
from citab_cli.core.schema.cohort import COHORT_NAME, CohortSchema, find_schema, load_schema
from citab_cli.core.schema.raw_table import RawTable, read_csv
from citab_cli.core.settings import ImageSettings, ProjectSettings, SplitSettings


@dataclass
class IngestSummary:
    """What an ingest stored (or would store, in a dry run), for the command to show."""

    cohort: str
    rows_read: int
    kept: int
    dropped: Counter
    counts: dict[str, Counter]  # split -> label -> subjects
    classes: list[str]  # label columns in display order (schema order, then "unlabelled")
    warnings: list[str]
    written: Path | None  # None for a dry run
    notes: list[str] = field(default_factory=list)  # about the project, not the cohort


def plan(
    csv_path: Path,
    images_root: Path,
    project_root: Path,
    cohort: str | None = None,
    schema_file: Path | None = None,
    on_missing_image: OnMissing = "error",
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    preprocess: str | None = None,
    on_bad_scan: OnBadScan = "error",
    split: SplitSettings | None = None,
    splits_file: Path | None = None,
) -> IngestPlan:
    """Read and check the table, the schema and the image files; write nothing.
    `preprocess` (t1-linear or minimal) overrides the schema's pipeline. `split` fixes the
    project's split fractions and seed at its first ingest; `splits_file` gives this cohort's
    subjects their splits instead (a site's official split)."""
    if split is not None and splits_file is not None:
        raise CitabError("--split and --splits FILE exclude each other; give one")
    if csv_path.is_dir():
        raise CitabError(
            f"{csv_path}: a folder, not a CSV, and not a BIDS dataset (no "
            "dataset_description.json); give the cohort's CSV, or the root of its BIDS dataset"
        )
    if not csv_path.is_file():
        raise CitabError(f"{csv_path}: CSV file not found; check the path")
    project = Project(project_root)
    explicit_schema = load_schema(schema_file) if schema_file is not None else None
    name = cohort or (explicit_schema.cohort if explicit_schema else csv_path.stem.lower())
    if not COHORT_NAME.match(name):
        raise CitabError(
            f"'{name}' (from the CSV file name) is not a valid cohort name; "
            "pass --cohort NAME (lower-case letters, digits, '-', '_')"
        )
    schema_path = find_schema(name, schema_file, project.schema_path(name), csv_path)
    schema = explicit_schema or load_schema(schema_path)
    pipeline = preprocess or schema.image_preprocess or DEFAULT_PIPELINE
    settings, new_project = project_settings(project, shape, spacing, pipeline, split)
    warnings: list[str] = []
    if schema.cohort != name:
        warnings.append(
            f"schema {schema_path} is for cohort '{schema.cohort}'; ingesting it as '{name}'"
        )

    raw = read_csv(csv_path)

    def images(table: ValidatedTable):
        return image_paths.resolve(
            schema, images_root, csv_path, table.subjects, table.lines, table.image_keys
        )

    return assemble(
        Planned(project, settings, new_project, name, schema, schema_path, pipeline, warnings),
        raw, images_root, images, on_missing_image, on_bad_scan, splits_file,
    )  # fmt: skip


@dataclass
class Planned:
    """What a plan has settled before it reads the table: project, cohort, schema, pipeline."""

    project: Project
    settings: ProjectSettings
    new_project: bool
    cohort: str
    schema: CohortSchema
    schema_path: Path
    pipeline: str
    warnings: list[str]


def assemble(
    planned: Planned,
    raw: RawTable,
    images_root: Path,
    find_images: Callable[[ValidatedTable], tuple[list[Path | None], list]],
    on_missing_image: OnMissing,
    on_bad_scan: OnBadScan,
    splits_file: Path | None,
) -> IngestPlan:
    """The plan of a cohort whose table `raw` is read: validated, its rows' scans found by
    `find_images`, rows without one refused or skipped, the split file read."""
    warnings = planned.warnings
    table = validate(raw, planned.schema, planned.schema_path)
    if not table.subjects:
        raise CitabError(f"{raw.path}: no rows left to ingest after validation; check the file")
    found, missing = find_images(table)
    if missing:
        if on_missing_image == "error":
            raise CitabError(image_paths.describe_missing(missing, images_root, raw.path))
        keep = [i for i, path in enumerate(found) if path is not None]
        if not keep:
            raise CitabError(image_paths.describe_missing(missing, images_root, raw.path))
        table = _subset(table, keep)
        table.dropped["image not found"] += len(missing)
        warnings.append(f"{len(missing)} row(s) skipped: image not found (--on-missing-image skip)")
    images = [path for path in found if path is not None]
    fixed, source = None, {"fractions": planned.settings.split.model_dump(mode="json")}
    if splits_file is not None:
        fixed, notes = splits.read_split_file(splits_file, table.subjects)
        warnings += notes
        source = {"file": str(splits_file.resolve()), "sha256": file_sha256(splits_file)}
    return IngestPlan(
        project=planned.project,
        settings=planned.settings,
        new_project=planned.new_project,
        cohort=planned.cohort,
        schema=planned.schema,
        schema_path=planned.schema_path,
        csv_path=raw.path,
        csv_sha256=raw.sha256,
        images_root=images_root.resolve(),
        table=table,
        images=images,
        pipeline=planned.pipeline,
        on_bad_scan=on_bad_scan,
        warnings=warnings + table.warnings,
        fixed_splits=fixed,
        split_source=source,
    )


def _subset(table: ValidatedTable, keep: list[int]) -> ValidatedTable:
    return ValidatedTable(
        subjects=[table.subjects[i] for i in keep],
        lines=[table.lines[i] for i in keep],
        columns=table.columns,
        values=table.values[keep],
        labels=[table.labels[i] for i in keep],
        image_keys=[table.image_keys[i] for i in keep],
        rows_read=table.rows_read,
        dropped=table.dropped,
        warnings=table.warnings,
    )


def summarize(plan: IngestPlan, split_of: list[str], written: Path | None) -> IngestSummary:
    """The summary of a plan: rows read, kept and dropped, subjects per split and label,
    warnings."""
    counts: dict[str, Counter] = {s: Counter() for s in splits.SPLITS}
    classes = plan.schema.label.class_names if plan.schema.label else []
    unlabelled = any(label is None for label in plan.table.labels)
    for split, label in zip(split_of, plan.table.labels, strict=True):
        counts[split][label or "unlabelled"] += 1
    return IngestSummary(
        cohort=plan.cohort,
        rows_read=plan.table.rows_read,
        kept=len(plan.table.subjects),
        dropped=plan.table.dropped,
        counts=counts,
        classes=[*classes, "unlabelled"] if unlabelled else classes,
        warnings=plan.warnings,
        written=written,
    )


def split_plan(plan: IngestPlan) -> list[str]:
    """Each subject's split; a split lacking a class adds a warning to the plan."""
    split_of = plan.fixed_splits or splits.assign(
        plan.table.subjects, plan.table.labels, plan.settings.split
    )
    for warning in splits.describe_gaps(
        splits.gaps(split_of, plan.table.labels), plan.table.labels
    ):
        if warning not in plan.warnings:
            plan.warnings.append(warning)
    return split_of


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
    with atomic.removed_if_created(project.root, project.cohorts_dir, project.schemas_dir):
        project.root.mkdir(parents=True, exist_ok=True)
        with locks.hold(project.root, "writing to this project"):
            # Holding the project's lock: no other ingest is writing, so staged cohorts left in
            # cohorts/ belong to ingests that were killed.
            removed, freed = atomic.remove_leftovers(project.cohorts_dir)
            with atomic.staged_directory(target) as stage:
                split_of = _write_cohort(plan, stage, workers, scheduler, advance)
                # Everything that can fail has run; the project-level files go last, atomic.
                if plan.new_project:
                    project.write_settings(plan.settings)
                schema = plan.schema_text.encode() if plan.schema_text else None
                atomic.write_bytes(
                    project.schema_path(plan.cohort), schema or plan.schema_path.read_bytes()
                )
    summary = summarize(plan, split_of, target)
    summary.notes += plan.notes
    if removed:
        summary.notes.append(
            f"removed {removed} folder(s) that an interrupted ingest left in "
            f"{project.cohorts_dir} ({freed / 1e9:.2f} GB)"
        )
    return summary


def _preprocess(
    plan: IngestPlan,
    stage: Path,
    workers: int,
    scheduler: str | None,
    advance: Callable[[], None] | None,
) -> list[Preprocessed]:
    """Every scan through the pipeline into stage/images.npy, written scan by scan as each
    finishes (never held in memory). A bad scan stops the ingest, or with --on-bad-scan skip
    drops its row (the plan's table and images shrink to match)."""
    job = scan_job(plan, store=scheduler is not None)
    count = len(plan.images)
    store = np.lib.format.open_memmap(
        stage / IMAGES_FILE, mode="w+", dtype=np.float16, shape=(count, *plan.settings.image.shape)
    )
    results: list[Preprocessed | None] = [None] * count

    def keep(index: int, done: Preprocessed) -> None:
        store[index] = done.volume
        done.volume = np.empty(0, np.float16)  # stored; not kept twice in memory
        results[index] = done

    failures = preprocess_all(plan.images, job, workers, keep, advance, scheduler)
    store.flush()
    rows = zip(plan.table.lines, plan.table.subjects, strict=True)
    origins = [f"{plan.csv_path}: line {line} (subject {subject})" for line, subject in rows]
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
            plan.warnings.append(f"scan skipped (--on-bad-scan skip): {origins[index]}: "
                                 f"{failures[index].split(': ', 1)[-1]}")  # fmt: skip
        plan.table = _subset(plan.table, kept)
        plan.table.dropped["bad scan"] += len(failures)
        plan.images = [plan.images[i] for i in kept]
    return [results[i] for i in kept]  # type: ignore[misc]


def _quality(plan: IngestPlan, stage: Path, done: list[Preprocessed]) -> None:
    """Per-subject QC figures into the plan, outliers as warnings, and qc.png."""
    subjects = plan.table.subjects
    figures = [d.qc for d in done]
    plan.qc = dict(zip(subjects, figures, strict=True))
    flagged = qc.outliers(subjects, figures)
    shown = _from_here(plan.project.cohort_file(plan.cohort, QC_FILE))
    for subject, keys in flagged.items():
        plan.warnings.append(qc.describe(subject, keys, plan.qc[subject], figures, str(shown)))
    plan.qc_outliers = flagged
    volumes = np.load(stage / IMAGES_FILE, mmap_mode="r")
    qc.montage(stage / QC_FILE, volumes, subjects, flagged,
               f"{plan.cohort}, {plan.pipeline}")  # fmt: skip
    seconds: dict[str, list[float]] = {}
    for d in done:
        for step, value in d.seconds.items():
            seconds.setdefault(step, []).append(value)
    plan.seconds = {k: round(float(np.mean(v)), 3) for k, v in seconds.items()}
    plan.peak_mb = max((d.peak_mb for d in done if not d.cached), default=0.0)


def _write_cohort(
    plan: IngestPlan,
    stage: Path,
    workers: int,
    scheduler: str | None,
    advance: Callable[[], None] | None,
) -> list[str]:
    """Preprocess the scans and write the cohort's files into `stage`; returns the splits."""
    from safetensors.numpy import save_file

    done = _preprocess(plan, stage, workers, scheduler, advance)
    cached = sum(d.cached for d in done)
    if cached:
        plan.notes.append(f"{cached} of {len(done)} scans came from the cache "
                          f"{plan.project.scan_cache_dir}")  # fmt: skip
    coarse = _resolution_warning([d.source_spacing for d in done], plan.settings.image)
    if coarse:
        plan.warnings.append(coarse)
    _quality(plan, stage, done)
    split_of = split_plan(plan)
    save_file(
        {"values": np.ascontiguousarray(plan.table.values)},
        str(stage / TABULAR_FILE),
        metadata={"cohort": plan.cohort, "columns": json.dumps(plan.table.columns)},
    )
    digests = [d.sha256 for d in done]
    (stage / SUBJECTS_FILE).write_text(manifest.subjects_csv(plan, split_of, digests))
    (stage / MANIFEST_FILE).write_text(json.dumps(manifest.manifest(plan, split_of), indent=2))
    truth = manifest.synthetic_truth(plan.csv_path, plan.table.subjects)
    if truth is not None:
        (stage / TRUTH_FILE).write_text(truth)
    for name in os.listdir(stage):
        os.chmod(stage / name, 0o666 & ~atomic.umask())
        with open(stage / name, "rb") as handle:
            os.fsync(handle.fileno())
    return split_of
