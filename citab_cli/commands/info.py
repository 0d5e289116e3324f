"""`citab info`: what the project holds."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.table import Table

from citab_cli.commands.console import console
from citab_cli.commands.options import ProjectOption


def info(project: Path = ProjectOption) -> None:
    """Show the project's cohorts, subjects per split, columns, header caches and runs."""
    from citab_cli.core.data.project import Project
    from citab_cli.core.workflows.info import describe

    found = describe(Project(project))
    image = found.settings.image
    split = found.settings.split
    console.print(f"[bold]Project[/] {found.root.resolve()}")
    console.print(
        f"  images: {'x'.join(map(str, image.shape))} voxels at "
        f"{'x'.join(f'{s:g}' for s in image.spacing)} mm; splits train/val/test "
        f"{split.train:g}/{split.val:g}/{split.test:g} (seed {split.seed}); "
        f"header encoder {found.settings.header_encoder}; grid in "
        f"{'MNI152 space' if image.space == 'mni152' else 'native space'}"
    )
    if not found.cohorts:
        console.print("  no cohorts yet: run `citab ingest CSV --images DIR`")
    else:
        table = Table(title="Cohorts", title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("cohort")
        for name in ("subjects", "train", "val", "test", "labelled"):
            table.add_column(name, justify="right")
        table.add_column("classes")
        table.add_column("columns", justify="right")
        table.add_column("pipeline")
        for c in found.cohorts:
            table.add_row(
                c.name,
                str(c.subjects),
                str(c.splits["train"]),
                str(c.splits["val"]),
                str(c.splits["test"]),
                str(c.labelled),
                "/".join(c.classes),
                str(c.columns),
                c.pipeline,
            )
        console.print(table)
        for c in found.cohorts:
            if c.qc_outliers:
                listed = ", ".join(
                    f"{s} ({', '.join(k.replace('_', ' ') for k in keys)})"
                    for s, keys in list(c.qc_outliers.items())[:5]
                )
                console.print(
                    f"  [yellow]{c.name}: {len(c.qc_outliers)} QC outlier(s)[/]: {listed}; "
                    f"see {c.montage}",
                    soft_wrap=True,
                )
            if c.without_scan:
                console.print(
                    f"  {c.name}: {c.without_scan} of {c.subjects} subjects have no scan "
                    "(table-only; pretraining and evaluation read the others)"
                )
            if c.warnings:
                console.print(
                    f"  {c.name}: ingested {c.created[:10]} with {c.warnings} "
                    "warning(s), listed in its manifest.json"
                )
    caches = ", ".join(p.name for p in found.header_caches) or "none"
    console.print(f"  header caches: {caches}")
    if not found.runs:
        console.print("  runs: none")
    for run in found.runs:
        best = run.best
        scores = ", ".join(
            f"{label} {best[key]:.3f}"
            for key, label in (
                ("val_loss", "val loss"),
                ("val_recall_at_5", "retrieval R@5"),
                ("val_probe_bacc", "label-based probe bal. acc."),
            )
            if key in best
        )
        step = f"step {run.step}" if run.step is not None else "no checkpoint yet"
        console.print(
            f"  run {run.name}: {', '.join(run.cohorts) or '?'}; {step}"
            + (f"; best at epoch {best.get('epoch')}: {scores}" if scores else "")
        )
