"""`citab ingest`: validate a cohort's table and images, then store it in the project atomically."""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from citab_cli.core import atomic, locks
from citab_cli.core.data import image_paths, manifest, splits
from citab_cli.core.data.preprocess import Preprocessed, preprocess_all
from citab_cli.core.data.project import (
    IMAGES_FILE,
    MANIFEST_FILE,
    SUBJECTS_FILE,
    TABULAR_FILE,
    Project,
)
from citab_cli.core.data.schema import (
    COHORT_NAME,
    CohortSchema,
    find_schema,
    load_schema,
)
from citab_cli.core.data.table import ValidatedTable, read_csv, validate
from citab_cli.core.errors import CitabError
from citab_cli.core.settings import ImageSettings, ProjectSettings, default_spacing

OnMissing = Literal["error", "skip"]


@dataclass
class IngestPlan:
    """Everything ingest will write, decided and validated before anything is written."""

    project: Project
    settings: ProjectSettings
    new_project: bool
    cohort: str
    schema: CohortSchema
    schema_path: Path
    csv_path: Path
    csv_sha256: str
    images_root: Path
    table: ValidatedTable
    images: list[Path]
    warnings: list[str] = field(default_factory=list)


@dataclass
class IngestSummary:
    cohort: str
    rows_read: int
    kept: int
    dropped: Counter
    counts: dict[str, Counter]  # split -> label -> subjects
    classes: list[str]  # label columns in display order (schema order, then "unlabelled")
    warnings: list[str]
    written: Path | None  # None for a dry run


def _project_settings(
    project: Project, shape: tuple[int, int, int] | None, spacing: tuple[float, float, float] | None
) -> tuple[ProjectSettings, bool]:
    if project.exists():
        settings = project.load_settings()
        if shape is not None and tuple(shape) != settings.image.shape:
            raise CitabError(
                f"{project.settings_path}: this project stores images as "
                f"{settings.image.shape}; omit --shape, or use a new --project"
            )
        if spacing is not None and tuple(spacing) != settings.image.spacing:
            raise CitabError(
                f"{project.settings_path}: this project stores images at "
                f"{settings.image.spacing} mm; omit --spacing, or use a new --project"
            )
        return settings, False
    grid = shape or ImageSettings().shape
    try:
        image = ImageSettings(shape=grid, spacing=spacing or default_spacing(grid))
    except ValueError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")  # type: ignore[attr-defined]
        raise CitabError(f"invalid --shape/--spacing: {reason}") from None
    return ProjectSettings(image=image), True


def plan(
    csv_path: Path,
    images_root: Path,
    project_root: Path,
    cohort: str | None = None,
    schema_file: Path | None = None,
    on_missing_image: OnMissing = "error",
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
) -> IngestPlan:
    """Read and check the table, the schema and the image files; write nothing."""
    if not csv_path.is_file():
        raise CitabError(f"{csv_path}: CSV file not found; check the path")
    project = Project(project_root)
    settings, new_project = _project_settings(project, shape, spacing)
    explicit_schema = load_schema(schema_file) if schema_file is not None else None
    name = cohort or (explicit_schema.cohort if explicit_schema else csv_path.stem.lower())
    if not COHORT_NAME.match(name):
        raise CitabError(
            f"'{name}' (from the CSV file name) is not a valid cohort name; "
            "pass --cohort NAME (lower-case letters, digits, '-', '_')"
        )
    schema_path = find_schema(name, schema_file, project.schema_path(name))
    schema = explicit_schema or load_schema(schema_path)
    warnings: list[str] = []
    if schema.cohort != name:
        warnings.append(
            f"schema {schema_path} is for cohort '{schema.cohort}'; ingesting it as '{name}'"
        )

    raw = read_csv(csv_path)
    table = validate(raw, schema, schema_path)
    if not table.subjects:
        raise CitabError(f"{csv_path}: no rows left to ingest after validation; check the file")
    found, missing = image_paths.resolve(
        schema, images_root, csv_path, table.subjects, table.lines, table.image_keys
    )
    if missing:
        if on_missing_image == "error":
            raise CitabError(image_paths.describe_missing(missing, images_root, csv_path))
        keep = [i for i, path in enumerate(found) if path is not None]
        if not keep:
            raise CitabError(image_paths.describe_missing(missing, images_root, csv_path))
        table = _subset(table, keep)
        table.dropped["image not found"] += len(missing)
        warnings.append(f"{len(missing)} row(s) skipped: image not found (--on-missing-image skip)")
    images = [path for path in found if path is not None]
    return IngestPlan(
        project=project,
        settings=settings,
        new_project=new_project,
        cohort=name,
        schema=schema,
        schema_path=schema_path,
        csv_path=csv_path,
        csv_sha256=raw.sha256,
        images_root=images_root.resolve(),
        table=table,
        images=images,
        warnings=warnings + table.warnings,
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
    split_of = splits.assign(plan.table.subjects, plan.table.labels, plan.settings.split)
    for warning in splits.describe_gaps(
        splits.gaps(split_of, plan.table.labels), plan.table.labels
    ):
        if warning not in plan.warnings:
            plan.warnings.append(warning)
    return split_of


def _keep(
    store: np.ndarray, digests: list[str], spacings: list, index: int, done: Preprocessed
) -> None:
    store[index] = done.volume
    digests[index] = done.sha256
    spacings[index] = done.source_spacing


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


def execute(
    plan: IngestPlan, workers: int = 1, progress: Callable[[], None] | None = None
) -> IngestSummary:
    """Preprocess the images and write the cohort; on any failure the project is unchanged."""
    project = plan.project
    split_of = split_plan(plan)
    target = project.cohort_dir(plan.cohort)
    digests = [""] * len(plan.images)
    spacings: list = [None] * len(plan.images)
    with atomic.removed_if_created(project.root, project.cohorts_dir, project.schemas_dir):
        project.root.mkdir(parents=True, exist_ok=True)
        with (
            locks.hold(project.root, "writing to this project"),
            atomic.staged_directory(target) as stage,
        ):
            _write_cohort(plan, stage, workers, progress, split_of, digests, spacings)
            # Everything that can fail has run; the project-level files go last, each atomic.
            if plan.new_project:
                project.write_settings(plan.settings)
            atomic.write_bytes(project.schema_path(plan.cohort), plan.schema_path.read_bytes())
    return summarize(plan, split_of, target)


def _write_cohort(
    plan: IngestPlan,
    stage: Path,
    workers: int,
    progress: Callable[[], None] | None,
    split_of: list[str],
    digests: list[str],
    spacings: list,
) -> None:
    """Preprocess the scans and write the cohort's four files into `stage`."""
    from safetensors.numpy import save_file

    shape = (len(plan.images), *plan.settings.image.shape)
    store = np.lib.format.open_memmap(stage / IMAGES_FILE, mode="w+", dtype=np.float16, shape=shape)
    preprocess_all(
        plan.images,
        plan.settings.image,
        workers,
        functools.partial(_keep, store, digests, spacings),
        progress,
        origins=[
            f"{plan.csv_path}: line {line} (subject {subject})"
            for line, subject in zip(plan.table.lines, plan.table.subjects, strict=True)
        ],
    )
    store.flush()
    del store
    coarse = _resolution_warning(spacings, plan.settings.image)
    if coarse:
        plan.warnings.append(coarse)
    save_file(
        {"values": np.ascontiguousarray(plan.table.values)},
        str(stage / TABULAR_FILE),
        metadata={"cohort": plan.cohort, "columns": json.dumps(plan.table.columns)},
    )
    (stage / SUBJECTS_FILE).write_text(manifest.subjects_csv(plan, split_of, digests))
    (stage / MANIFEST_FILE).write_text(json.dumps(manifest.manifest(plan, split_of), indent=2))
    for name in os.listdir(stage):
        os.chmod(stage / name, 0o666 & ~atomic.umask())
        with open(stage / name, "rb") as handle:
            os.fsync(handle.fileno())
