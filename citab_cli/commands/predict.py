"""`citab predict`: a fine-tuned classifier's predictions for every subject of a cohort."""

from __future__ import annotations

from pathlib import Path

import typer

from citab_cli.commands.console import console, err_console, progress_bar
from citab_cli.commands.embed import Split
from citab_cli.commands.options import Device, ProjectOption, device_option


def predict(
    ckpt: str = typer.Option(
        ...,
        "--ckpt",
        help="A classifier saved by `citab finetune` (reports/finetune/.../finetuned.safetensors).",
    ),
    cohort: str = typer.Option(
        ..., "--cohort", help="The ingested cohort to classify, labelled or not."
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="The file to write; its suffix (parquet or csv) decides the format.",
    ),
    split: Split = typer.Option(Split.all, "--split", help="Which subjects of the cohort."),
    device: Device = device_option("the classifier"),
    project: Path = ProjectOption,
) -> None:
    """Write a fine-tuned classifier's class probabilities for every subject of a cohort."""
    from citab_cli.core.data.project import Project
    from citab_cli.core.evaluation import predict as core

    plan = core.plan_predict(
        Project(project),
        ckpt,
        cohort,
        output,
        split.value,
        device.value,
        message=lambda text: err_console.print(f"[dim]{text}...[/]"),
    )
    with progress_bar(f"Classifying {cohort}", plan.total) as advance:
        metadata = core.write_predictions(plan, advance)
    console.print(
        f"Wrote predictions for {plan.total} subjects of {cohort} "
        f"({', '.join(plan.classes)}) to [bold]{plan.output}[/]"
    )
    if metadata["without_scan"]:
        console.print(f"  {metadata['without_scan']} subject(s) without a scan: no prediction "
                      "(the classifier reads the multimodal embedding); empty cells")  # fmt: skip
    _summary(metadata)


def _summary(metadata: dict) -> None:
    summary = metadata["summary"]
    if summary is None:
        console.print("  no labelled subject the classifier did not learn from: no metrics")
        return
    per_class = ", ".join(f"{c} {n}" for c, n in summary["per_class"].items())
    auc = summary["macro_auc"]
    console.print(
        f"  {summary['subjects']} labelled subjects ({per_class}): balanced accuracy "
        f"{summary['balanced_accuracy']:.3f}, accuracy {summary['accuracy']:.3f}, macro AUC "
        + ("n/a (one class)" if auc != auc else f"{auc:.3f}")
    )
    if summary["left_out_as_fitted"]:
        console.print(
            f"  not scored: {summary['left_out_as_fitted']} labelled subjects of "
            f"{metadata['finetuned_on']}'s train and validation splits, which fitted the classifier"
        )
