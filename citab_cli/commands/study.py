"""`citab study`: arms x pretraining seeds x regimes, each an ordinary run, then one report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Table

from citab_cli.commands.console import console, err_console
from citab_cli.commands.options import Device, ProjectOption, default, device_option


def study(
    study_file: Path = typer.Argument(..., help="The study file (YAML; see docs/studies.md)."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="List the runs the study would make, with their optimiser steps, and stop. "
        + default("off"),
    ),
    device: Device = device_option("pretraining and the probes"),
    project: Path = ProjectOption,
) -> None:
    """Run a study: every arm, pretraining seed and regime as an ordinary run, its probes as
    ordinary reports, then one report with intervals over seeds and subjects."""
    from citab_cli.core.data.project import Project
    from citab_cli.core.workflows import study as core
    from citab_cli.core.workflows.study_plan import plan_study
    from citab_cli.core.workflows.study_spec import load_study

    store = Project(project)
    store.load_settings()
    spec = load_study(study_file)
    runs = plan_study(spec, store)
    _show_plan(spec.study, runs, store)
    if dry_run:
        console.print("[bold]Dry run:[/] nothing was trained.")
        return
    result = core.run_study(
        store, spec, device.value, message=lambda text: err_console.print(f"[dim]{text}[/]")
    )
    if result.report is None:
        console.print("[yellow]No run has been scored yet; nothing to report.[/]")
    else:
        console.print(f"Study report: {result.report / 'report.md'}")
    console.print(f"Study folder: {result.folder} (plan, test scores of every scored run)")


def _show_plan(name: str, runs, store) -> None:
    table = Table(
        title=f"Study {name}: {len(runs)} pretraining runs",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    table.add_column("run", no_wrap=True)
    table.add_column("regime", no_wrap=True)
    table.add_column("epochs", justify="right")
    table.add_column("steps", justify="right")
    table.add_column("state")
    for run in runs:
        files = store.run_files(run.name)
        done = files.best.is_file() and files.state.is_file()
        state = "done" if done else ("started" if files.config.is_file() else "new")
        table.add_row(run.name, run.regime, str(run.config.train.epochs), str(run.steps), state)
    console.print(table)
    console.print(f"Optimiser steps in all: {sum(r.steps for r in runs)} (one process)")
