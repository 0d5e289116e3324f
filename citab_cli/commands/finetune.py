"""`citab finetune`: train a diagnosis head (and optionally the model) on one cohort."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich import box
from rich.table import Table

from citab_cli.commands.console import console, err_console
from citab_cli.commands.options import Device, ProjectOption, default, device_option


class Strategy(str, Enum):
    frozen = "frozen"
    trainable = "trainable"


def finetune(
    ckpt: str = typer.Option(
        ..., "--ckpt", help="Checkpoint path, or a file name in the newest run (best.safetensors)."
    ),
    cohort: str = typer.Option(..., "--cohort", help="The labelled cohort to fine-tune on."),
    strategy: Strategy = typer.Option(
        Strategy.frozen, "--strategy", help="frozen: train the head only; trainable: everything."
    ),
    label_fraction: float = typer.Option(
        1.0, "--label-fraction", help="Fraction of the labelled train subjects."
    ),
    seeds: int = typer.Option(1, "--seeds", help="Label subsets and initialisations."),
    epochs: int = typer.Option(20, "--epochs", help="Most epochs per model (early stopping)."),
    patience: int = typer.Option(
        5, "--patience", help="Epochs without improvement before stopping."
    ),
    learning_rate: float = typer.Option(
        1e-3, "--learning-rate", help="Head learning rate (the backbone uses a tenth)."
    ),
    batch_size: int = typer.Option(
        None, "--batch-size", min=1, help="Subjects per step. " + default("the checkpoint's")
    ),
    exclude_criteria: bool = typer.Option(
        False,
        "--exclude-criteria",
        help="Leave out the columns that define the diagnosis (schema criterion: true), for "
        "the model and the baselines alike. " + default("off"),
    ),
    device: Device = device_option("training"),
    project: Path = ProjectOption,
) -> None:
    """Fine-tune for diagnosis, next to the same network and a DAFT-style image-table fusion
    network trained from scratch with the same budget."""
    from citab_cli.core.data.project import Project
    from citab_cli.core.evaluation import finetune as core

    report = core.finetune(
        Project(project),
        ckpt,
        cohort,
        strategy.value,
        label_fraction,
        seeds,
        epochs,
        patience,
        learning_rate,
        batch_size,
        device.value,
        message=lambda text: err_console.print(f"[dim]{text}[/]"),
        exclude_criteria=exclude_criteria,
    )
    _show(report, cohort, seeds, strategy.value)


def _show(report, cohort: str, seeds: int, strategy: str) -> None:
    from citab_cli.core.data.project import ReportFiles
    from citab_cli.core.evaluation.finetune import TITLES

    table = Table(
        title=f"{cohort}: test metrics (mean ± sd over {seeds} seed(s)); the same network and "
        "DAFT-style fusion trained from scratch with the same budget",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("metric")
    table.add_column(f"fine-tuned ({strategy})", justify="right")
    table.add_column("from scratch", justify="right")
    table.add_column("DAFT-style fusion", justify="right")
    table.add_column("raw table", justify="right")
    labels = {
        "accuracy": "accuracy",
        "balanced_accuracy": "balanced accuracy",
        "macro_auc": "macro AUC",
        "macro_f1": "macro F1",
        "ece": "calibration error",
    }
    for metric, label in labels.items():
        table.add_row(
            label,
            *(
                f"{report.summary[kind][metric]['mean']:.3f} ± "
                f"{report.summary[kind][metric]['std']:.3f}"
                for kind in ("finetuned", "scratch", "daft", "raw_table")
            ),
        )
    console.print(table)
    for entry in report.comparisons:
        d, baseline = entry["balanced_accuracy"], TITLES.get(entry["baseline"], entry["baseline"])
        console.print(
            f"  fine-tuned vs {baseline}: balanced accuracy "
            f"{d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}], {d['verdict']}"
        )
    console.print(f"  report: {ReportFiles(report.folder).markdown}")
    console.print(f"  fine-tuned model: {report.model_file}")
