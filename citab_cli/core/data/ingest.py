"""`citab ingest`: validate a cohort's table and images, then store it in the project atomically."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from citab_cli.core.data import image_paths, splits
from citab_cli.core.data.ingest_plan import DEFAULT_PIPELINE, IngestPlan, OnBadScan, OnMissing
from citab_cli.core.data.project import (
    Project,
)
from citab_cli.core.data.project_setup import project_settings
from citab_cli.core.data.table import ValidatedTable, validate
from citab_cli.core.errors import CitabError
from citab_cli.core.hashing import file_sha256
from citab_cli.core.schema.cohort import COHORT_NAME, CohortSchema, find_schema, load_schema
from citab_cli.core.schema.raw_table import RawTable, read_csv
from citab_cli.core.settings import ProjectSettings, SplitSettings


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
    seconds: dict = field(default_factory=dict)  # mean seconds per scan of each step
    peak_mb: float = 0.0  # the largest peak memory of a process that ran a scan
    without_scan: Counter = field(default_factory=Counter)  # split -> table-only subjects


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
    if missing and on_missing_image == "keep":
        warnings.append(f"{len(missing)} row(s) kept without a scan, as table-only subjects "
                        "(--on-missing-image keep)")  # fmt: skip
    elif missing:
        if on_missing_image == "error":
            raise CitabError(image_paths.describe_missing(missing, images_root, raw.path))
        keep = [i for i, path in enumerate(found) if path is not None]
        if not keep:
            raise CitabError(image_paths.describe_missing(missing, images_root, raw.path))
        table = table.subset(keep)
        table.dropped["image not found"] += len(missing)
        warnings.append(f"{len(missing)} row(s) skipped: image not found (--on-missing-image skip)")
    images = found if on_missing_image == "keep" else [p for p in found if p is not None]
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


def summarize(
    plan: IngestPlan,
    split_of: list[str],
    written: Path | None,
    table: ValidatedTable | None = None,
    warnings: list[str] | None = None,
    images: list | None = None,
) -> IngestSummary:
    """The summary of a plan (or of what carrying it out kept: `table`, `warnings`): rows read,
    kept and dropped, subjects per split and label, warnings."""
    table = table if table is not None else plan.table
    counts: dict[str, Counter] = {s: Counter() for s in splits.SPLITS}
    classes = plan.schema.label.class_names if plan.schema.label else []
    unlabelled = any(label is None for label in table.labels)
    for split, label in zip(split_of, table.labels, strict=True):
        counts[split][label or "unlabelled"] += 1
    return IngestSummary(
        cohort=plan.cohort,
        rows_read=table.rows_read,
        kept=len(table.subjects),
        dropped=table.dropped,
        counts=counts,
        classes=[*classes, "unlabelled"] if unlabelled else classes,
        warnings=warnings if warnings is not None else plan.warnings,
        written=written,
        without_scan=Counter(
            split
            for split, path in zip(
                split_of, images if images is not None else plan.images, strict=True
            )
            if path is None
        ),  # fmt: skip
    )


def split_of(
    plan: IngestPlan, table: ValidatedTable, fixed: list[str] | None
) -> tuple[list[str], list[str]]:
    """Each subject of `table` its split (`fixed`: from --splits FILE), and the warnings of a
    split lacking a class."""
    chosen = fixed or splits.assign(table.subjects, table.labels, plan.settings.split)
    gaps = splits.describe_gaps(splits.gaps(chosen, table.labels), table.labels)
    return chosen, gaps


def dry_run(plan: IngestPlan) -> IngestSummary:
    """The summary of a plan whose scans are not touched."""
    chosen, gaps = split_of(plan, plan.table, plan.fixed_splits)
    return summarize(
        plan, chosen, None, warnings=plan.warnings + [g for g in gaps if g not in plan.warnings]
    )
