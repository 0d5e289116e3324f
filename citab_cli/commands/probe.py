"""`citab probe`: how much do frozen embeddings know? Linear probes with baselines."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Table

from citab_cli.commands.console import console, err_console
from citab_cli.commands.options import Device, ProjectOption, device_option
from citab_cli.core.errors import CitabError


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise CitabError(f"--label-fractions '{text}' must be numbers, e.g. 0.01,0.1,1") from None
    if not values:
        raise CitabError("--label-fractions is empty; give e.g. 0.01,0.1,1")
    return values


def probe(
    ckpt: str = typer.Option(
        ..., "--ckpt", help="Checkpoint path, or a file name in the newest run (best.safetensors)."
    ),
    cohorts: str = typer.Option(
        None,
        "--cohorts",
        help="Cohorts to probe \\[default: the checkpoint's pretraining cohorts].",
    ),
    label_fractions: str = typer.Option(
        "0.01,0.1,1", "--label-fractions", help="Fractions of labelled train subjects."
    ),
    seeds: int = typer.Option(5, "--seeds", help="Label subsets drawn per fraction."),
    device: Device = device_option("the embedding"),
    project: Path = ProjectOption,
) -> None:
    """Linear probes of the frozen model's embeddings per cohort, next to baselines."""
    from citab_cli.core.data.project import Project
    from citab_cli.core.evaluation import probe as core
    from citab_cli.core.evaluation.metrics import NAMES

    names = [c.strip() for c in cohorts.split(",") if c.strip()] if cohorts else None
    fractions = _fractions(label_fractions)
    reports = core.probe(
        Project(project),
        ckpt,
        names,
        fractions,
        seeds,
        device.value,
        message=lambda text: err_console.print(f"[dim]{text}...[/]"),
    )
    for report in reports:
        table = Table(
            title=f"{report.cohort}: test balanced accuracy (mean ± sd over {seeds} seeds)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        table.add_column("features")
        for f in fractions:
            table.add_column(f"{f:.0%} of labels", justify="right")
        for feature, results in report.summary.items():
            table.add_row(
                core.FEATURE_TITLES[feature],
                *(
                    f"{results[f'{f:g}']['balanced_accuracy']['mean']:.3f} ± "
                    f"{results[f'{f:g}']['balanced_accuracy']['std']:.3f}"
                    for f in fractions
                ),
            )
        console.print(table)
        console.print(
            f"  report: {report.folder / 'report.md'} (all of {', '.join(NAMES)}, "
            "with 95% bootstrap intervals; confusion matrix, ROC and label-fraction "
            "figures)"
        )
