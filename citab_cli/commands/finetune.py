"""`citab finetune`: train a diagnosis head (and optionally the model) on one cohort."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich import box
from rich.table import Table

from citab_cli.commands.console import console, err_console
from citab_cli.commands.options import Device, ProjectOption, device_option


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
        None, "--batch-size", min=1, help="\\[default: the checkpoint's batch size]"
    ),
    device: Device = device_option("training"),
    project: Path = ProjectOption,
) -> None:
    """Fine-tune for diagnosis, next to a from-scratch model with the same budget."""
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
    )
    table = Table(
        title=f"{cohort}: test metrics (mean ± sd over {seeds} seed(s))",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("metric")
    table.add_column(f"fine-tuned ({strategy.value})", justify="right")
    table.add_column("from scratch, same budget", justify="right")
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
                for kind in ("finetuned", "scratch")
            ),
        )
    console.print(table)
    console.print(f"  report: {report.folder / 'report.md'}")
    console.print(f"  fine-tuned model: {report.model_file}")
