"""`citab embed`: every subject's embeddings in a Parquet or CSV file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from citab_cli.commands.console import console, err_console, progress_bar
from citab_cli.commands.options import Device, ProjectOption, default, device_option, names


class Split(str, Enum):
    all = "all"
    train = "train"
    val = "val"
    test = "test"


def embed(
    ckpt: str = typer.Option(
        ..., "--ckpt", help="Checkpoint path, or a file name in the newest run (best.safetensors)."
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="The file to write; its suffix (parquet or csv) decides the format.",
    ),
    cohorts: str = typer.Option(
        None, "--cohorts", help="Cohorts to embed. " + default("every ingested cohort")
    ),
    split: Split = typer.Option(Split.all, "--split", help="Which subjects of each cohort."),
    exclude_criteria: bool = typer.Option(
        False,
        "--exclude-criteria",
        help="Leave out the columns that define the diagnosis (schema criterion: true) from "
        "what the model reads; the file's metadata names them. " + default("off"),
    ),
    device: Device = device_option("the embedding"),
    project: Path = ProjectOption,
) -> None:
    """Write each subject's multimodal, tabular and image embeddings to a Parquet or CSV file."""
    from citab_cli.core.data.project import Project
    from citab_cli.core.evaluation import embedding_export as core

    plan = core.plan_export(
        Project(project),
        ckpt,
        output,
        names(cohorts),
        split.value,
        device.value,
        exclude_criteria,
        message=lambda text: err_console.print(f"[dim]{text}...[/]"),
    )
    with progress_bar("Embedding", plan.total) as advance:
        metadata = core.write_embeddings(plan, advance)
    counts = ", ".join(f"{name} {entry['subjects']}" for name, entry in metadata["cohorts"].items())
    widths = ", ".join(
        f"{entry['columns']} ({entry['dimensions']})" for entry in metadata["embeddings"].values()
    )
    console.print(f"Wrote {plan.total} subjects ({counts}) to [bold]{plan.output}[/]")
    console.print(f"  columns: cohort, subject, split, label, has_scan, {widths}")
    without = sum(entry["without_scan"] for entry in metadata["cohorts"].values())
    if without:
        console.print(f"  {without} subject(s) without a scan: tabular CLS only (the multimodal "
                      "and image columns are empty)")  # fmt: skip
    if exclude_criteria:
        entries = metadata["cohorts"].values()
        left = sorted({c for e in entries for c in e["criterion_columns_left_out"]})
        console.print(f"  criterion columns left out: {', '.join(left) or 'none marked'}")
