"""`citab ingest`: validate a cohort and store it in the project."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

import typer
from rich.table import Table

from citab_cli.commands.console import console, progress_bar
from citab_cli.commands.options import ProjectOption, default, parse_triple


class OnMissingImage(str, Enum):
    error = "error"
    skip = "skip"
    keep = "keep"


class OnBadScan(str, Enum):
    error = "error"
    skip = "skip"


class Pipeline(str, Enum):
    t1_linear = "t1-linear"
    minimal = "minimal"


def _default_workers() -> int:
    """The number of CPUs, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


SpacingOption = typer.Option(
    None,
    "--spacing",
    help="Voxel size of a NEW project in mm: one or three numbers "
    "\\[default: minimal: 192 mm / largest axis of --shape; t1-linear: the MNI box, "
    "160x208x176 mm, over --shape].",
)
PreprocessOption = typer.Option(
    None,
    "--preprocess",
    help="t1-linear for scans as they come off the scanner (brain extraction, N4, affine "
    "to MNI152); minimal for skull-stripped, registered scans. "
    + default("the schema's image: preprocess, else minimal"),
)
MissingImageOption = typer.Option(
    OnMissingImage.error,
    "--on-missing-image",
    help="Rows without a scan: stop (error), leave them out (skip), or keep them as "
    "table-only subjects (keep; docs/ingest.md says where they are used).",
)
BadScanOption = typer.Option(
    OnBadScan.error,
    "--on-bad-scan",
    help="Stop at a scan the pipeline cannot use (no brain found, registration failed, "
    "unreadable), or skip its row and list it.",
)


SplitOption = typer.Option(
    None,
    "--split",
    help="TRAIN,VAL,TEST fractions of a NEW project's subject split, e.g. 0.7,0.1,0.2 "
    "(recorded in citab.yaml). " + default("0.7,0.1,0.2, or citab.yaml's"),
)
SplitSeedOption = typer.Option(
    None, "--split-seed", help="Seed of a NEW project's split. " + default("0")
)
SplitsFileOption = typer.Option(
    None,
    "--splits",
    help="A CSV of subject,split (train/val/test) for this cohort, e.g. a site's official "
    "split, instead of the drawn one. " + default("drawn, stratified by label"),
)


WorkersOption = typer.Option(
    None,
    "--workers",
    min=1,
    help="Processes preprocessing images in parallel. " + default("the number of CPUs, at most 8"),
)
SchedulerOption = typer.Option(
    None,
    "--scheduler",
    help="Address of a Dask scheduler (tcp://HOST:8786): one task per scan on its cluster, "
    "which must share the project's file system (needs citab-cli[cluster]). "
    + default("this machine, --workers processes"),
)
PreprocessOnlyOption = typer.Option(
    False,
    "--preprocess-only",
    help="Only fill the project's scan cache (many jobs may run at once); a later plain "
    "ingest assembles the cohort from it. " + default("off"),
)
ShardOption = typer.Option(
    None,
    "--shard",
    help="With --preprocess-only: do share I/N of the scans (0 <= I < N), e.g. "
    "$SLURM_ARRAY_TASK_ID/8. " + default("all"),
)


def _split(text: str | None, seed: int | None):
    """--split and --split-seed as split settings (None when neither is given)."""
    from citab_cli.core.errors import CitabError
    from citab_cli.core.settings import SplitSettings

    if text is None and seed is None:
        return None
    fractions = SplitSettings().model_dump(exclude={"seed"})
    if text is not None:
        try:
            values = [float(x) for x in text.split(",")]
        except ValueError:
            values = []
        if len(values) != 3:
            raise CitabError(
                f"--split '{text}' must be three fractions TRAIN,VAL,TEST, e.g. 0.7,0.1,0.2"
            )
        fractions = dict(zip(("train", "val", "test"), values, strict=True))
    try:
        return SplitSettings(**fractions, seed=seed or 0)
    except ValueError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")  # type: ignore[attr-defined]
        raise CitabError(f"--split '{text}': {reason}") from None


SessionOption = typer.Option(
    None,
    "--session",
    help="BIDS: the session of each subject: first or last (with a T1w; by acq_time, else "
    "age, else label), or a label such as ses-M000. " + default("the schema's, else first"),
)
AcqOption = typer.Option(
    None, "--acq", help="BIDS: keep only T1w files with this acq- label. " + default("any")
)
RunOption = typer.Option(
    None,
    "--run",
    help="BIDS: the first or last run where a session has several T1w files. "
    + default("several files are an error"),
)


class RunRule(str, Enum):
    first = "first"
    last = "last"


def bids_rules(session: str | None, acq: str | None, run: RunRule | None, schema: Path | None):
    """--session, --acq and --run as the rules that pick a BIDS dataset's scans (the session
    from the schema's image: entry when --session is not given)."""
    from citab_cli.core.data import bids
    from citab_cli.core.schema.cohort import ImageByBids, load_schema

    if session is None and schema is not None:
        image = load_schema(schema).image
        session = image.session if isinstance(image, ImageByBids) else None
    return bids.Rules(session=session or "first", acq=acq, run=run.value if run else None)


def ingest(
    csv_path: Path = typer.Argument(
        ...,
        metavar="CSV|BIDS_ROOT",
        help="The cohort's table (one row per visit), or the root of a BIDS dataset.",
    ),
    images: Path = typer.Option(
        None,
        "--images",
        help="Folder holding the cohort's scans (NIfTI, or DICOM folders). "
        + default("the BIDS root; needed with a CSV"),
    ),
    cohort: str = typer.Option(
        None,
        "--cohort",
        help="Cohort name \\[default: the CSV file name, or the BIDS dataset's Name].",
    ),
    schema: Path = typer.Option(
        None,
        "--schema",
        help="Schema YAML \\[default: <project>/schemas/<cohort>.yaml, then <cohort>.yaml next "
        "to the CSV, then the shipped schemas/<cohort>.yaml].",
    ),
    workers: int = WorkersOption,
    on_missing_image: OnMissingImage = MissingImageOption,
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Validate the table and find the images; write nothing. " + default("off"),
    ),
    shape: str = typer.Option(
        None, "--shape", help="Image grid of a NEW project: S or D,H,W voxels \\[default: 128]."
    ),
    spacing: str = SpacingOption,
    preprocess: Pipeline = PreprocessOption,
    on_bad_scan: OnBadScan = BadScanOption,
    split: str = SplitOption,
    split_seed: int = SplitSeedOption,
    splits_file: Path = SplitsFileOption,
    scheduler: str = SchedulerOption,
    preprocess_only: bool = PreprocessOnlyOption,
    shard: str = ShardOption,
    session: str = SessionOption,
    acq: str = AcqOption,
    run: RunRule = RunOption,
    project: Path = ProjectOption,
) -> None:
    """Validate a cohort's CSV and images against its schema and store it in the project; or a
    BIDS dataset, its schema drafted from its JSON sidecars when none is given."""
    from citab_cli.core.data import ingest as core

    _check_engine(workers, scheduler, preprocess_only, shard, dry_run)
    common = dict(
        cohort=cohort,
        schema_file=schema,
        on_missing_image=on_missing_image.value,
        shape=parse_triple(shape, "shape", int),
        spacing=parse_triple(spacing, "spacing", float),
        preprocess=preprocess.value if preprocess is not None else None,
        on_bad_scan=on_bad_scan.value,
        split=_split(split, split_seed),
        splits_file=splits_file,
    )
    plan = _plan(csv_path, images, project, common, (session, acq, run))
    console.print(
        f"Cohort [bold]{plan.cohort}[/]: schema {plan.schema_path}, "
        f"{len(plan.scanned)} image(s) under {plan.images_root}, preprocessing {plan.pipeline}"
    )
    if plan.bids is not None:
        console.print(f"BIDS: {plan.bids['rules']}", soft_wrap=True)
    workers = workers or _default_workers()
    if preprocess_only:
        return _fill(plan, shard, workers, scheduler)
    if dry_run:
        return _render(core.dry_run(plan), plan.settings)
    _render(_execute(plan, workers, scheduler), plan.settings)


def _execute(plan, workers: int, scheduler: str | None):
    """The plan carried out under a progress bar, with the time each step took per scan."""
    from citab_cli.core.data.ingest_execute import execute

    with progress_bar(f"Preprocessing {plan.cohort}", len(plan.scanned)) as advance:
        summary = execute(plan, workers, advance, scheduler)
    if summary.seconds:
        steps = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in summary.seconds.items())
        peak = summary.peak_mb / 1024
        memory = f"; peak memory of a worker {peak:.2f} GiB" if summary.peak_mb else ""
        console.print(f"Per scan: {steps}{memory}")
    return summary


def _plan(csv_path: Path, images: Path | None, project: Path, common: dict, flags: tuple):
    """The ingest plan of a CSV with its --images folder, or of a BIDS dataset by the rules
    `flags` (--session, --acq, --run) give."""
    from citab_cli.core.data import bids
    from citab_cli.core.data import ingest as core
    from citab_cli.core.errors import CitabError

    if bids.is_bids(csv_path):
        from citab_cli.core.data import ingest_bids

        if images is not None and images.resolve() != csv_path.resolve():
            raise CitabError("--images is the BIDS root itself; leave it out with a BIDS dataset")
        rules = bids_rules(*flags, common["schema_file"])
        return ingest_bids.plan(csv_path, project, rules, **common)
    if any(flag is not None for flag in flags):
        raise CitabError("--session, --acq and --run choose scans in a BIDS dataset; "
                         f"{csv_path} is not one (no dataset_description.json)")  # fmt: skip
    if images is None and not csv_path.is_dir():  # a folder is refused by the plan
        raise CitabError(f"--images DIR is needed with a CSV: the folder holding "
                         f"{csv_path.name}'s scans")  # fmt: skip
    return core.plan(csv_path, images or csv_path, project, **common)


def _check_engine(workers, scheduler, preprocess_only: bool, shard, dry_run: bool) -> None:
    from citab_cli.core.errors import CitabError

    if workers is not None and scheduler is not None:
        raise CitabError("--workers counts processes on this machine; with --scheduler the "
                         "cluster's workers run the scans: give one of them")  # fmt: skip
    if shard is not None and not preprocess_only:
        raise CitabError("--shard needs --preprocess-only: each shard fills the cache, then one "
                         "plain ingest assembles the cohort")  # fmt: skip
    if preprocess_only and dry_run:
        raise CitabError("--dry-run and --preprocess-only exclude each other; give one")


def _fill(plan, shard_text: str | None, workers: int, scheduler: str | None) -> None:
    """--preprocess-only: this run's share of the scans into the cache, and what it did."""
    from citab_cli.core.data import ingest_fill

    shard = ingest_fill.parse_shard(shard_text) if shard_text is not None else None
    scanned = plan.scanned
    selected = [scanned[k] for k in ingest_fill.shard_indices(len(scanned), shard)]
    with progress_bar(f"Preprocessing {plan.cohort}", len(selected)) as advance:
        done = ingest_fill.fill(plan, selected, workers, scheduler, advance, shard)
    share = f"shard {shard[0]}/{shard[1]}: " if shard else ""
    console.print(
        f"{plan.cohort}: {share}{done.scans} of {done.total} scans: {done.made} preprocessed, "
        f"{done.cached} already in the cache, {len(done.failed)} failed; cache {done.cache}",
        soft_wrap=True,
    )
    for line in done.failed:
        console.print(f"[yellow]warning:[/] scan not usable: {line}", soft_wrap=True)
    if done.peak_mb:
        console.print(f"Peak memory of a worker: {done.peak_mb / 1024:.2f} GiB")
    console.print(
        "Nothing but the cache was written. When every share is done, the same command "
        "without --preprocess-only and --shard assembles the cohort."
    )


def _render(summary, settings) -> None:
    from citab_cli.core.data.project import QC_FILE

    rows = Table(title=f"{summary.cohort}: rows", title_justify="left")
    rows.add_column("rows")
    rows.add_column("count", justify="right")
    rows.add_row("read from the table", str(summary.rows_read))
    for reason, count in summary.dropped.items():
        rows.add_row(f"dropped: {reason}", str(count))
    rows.add_row("[bold]kept (one per subject)[/]", f"[bold]{summary.kept}[/]")
    console.print(rows)

    labels = summary.classes
    table = Table(title=f"{summary.cohort}: subjects per split and label", title_justify="left")
    table.add_column("split")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("total", justify="right")
    if summary.without_scan:
        table.add_column("without a scan", justify="right")
    for split, counts in summary.counts.items():
        cells = [*(str(counts.get(label, 0)) for label in labels), str(sum(counts.values()))]
        if summary.without_scan:
            cells.append(str(summary.without_scan.get(split, 0)))
        table.add_row(split, *cells)
    console.print(table)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    for note in summary.notes:
        console.print(f"note: {note}", soft_wrap=True)
    if summary.written is None:
        console.print("[bold]Dry run:[/] nothing was written.")
    else:
        grid = "x".join(str(s) for s in settings.image.shape)
        tables_only = sum(summary.without_scan.values())
        scans = f"{summary.kept - tables_only} scans ({grid} float16)"
        if tables_only:
            scans += f" and {tables_only} without a scan"
        montage = f"; QC montage {summary.written / QC_FILE}" if tables_only < summary.kept else ""
        console.print(f"[green]Stored[/] {summary.kept} subjects, {scans}, in {summary.written}"
                      f"{montage}")  # fmt: skip
