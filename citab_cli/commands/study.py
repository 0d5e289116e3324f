"""`citab study`: arms x pretraining seeds x regimes, each an ordinary run, then one report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Table

from citab_cli.commands.console import console, err_console, new_progress
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
    from citab_cli.core.data.project import Project, ReportFiles
    from citab_cli.core.workflows import study as core
    from citab_cli.core.workflows.study_plan import plan_study
    from citab_cli.core.workflows.study_power import power_rows
    from citab_cli.core.workflows.study_spec import load_study

    store = Project(project)
    store.load_settings()
    spec = load_study(study_file)
    runs = plan_study(spec, store)
    _show_plan(spec.study, runs, store)
    _show_power(power_rows(spec, store))
    if dry_run:
        console.print("[bold]Dry run:[/] nothing was trained.")
        return
    with new_progress("stage") as bar:
        task = bar.add_task(f"study {spec.study}", total=len(runs), stage="")

        def stage(number: int, run, what: str) -> None:
            bar.update(task, stage=f"run {number}/{len(runs)} {run.name}: {what}")

        hooks = core.StudyHooks(
            message=lambda text: err_console.print(f"[dim]{text}[/]"),
            stage=stage,
            finished=lambda number: bar.update(task, completed=number),
        )
        result = core.run_study(store, spec, device.value, hooks)
    if result.report is None:
        console.print("[yellow]No run has been scored yet; nothing to report.[/]")
    else:
        console.print(f"Study report: {ReportFiles(result.report).markdown}")
    console.print(f"Study folder: {result.folder} (plan, test scores of every scored run)")
    minutes, seconds = divmod(round(result.seconds), 60)
    console.print(f"Wall time: {minutes} min {seconds} s for {len(runs)} runs")
    if result.stopwatch is not None:
        _show_time(result.stopwatch)


def _show_time(watch) -> None:
    """Where the time went, largest part first."""
    from citab_cli.core.runtime.stopwatch import minutes

    table = Table(
        title="Where the time went (the runs' parts over every invocation of this study)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    table.add_column("part")
    table.add_column("time", justify="right")
    table.add_column("share", justify="right")
    for row in watch.rows():
        table.add_row(row["part"], minutes(row["seconds"]), f"{row['share']:.0%}")
    console.print(table)


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


def _show_power(rows: list[dict]) -> None:
    """What the study can detect, from the rule of thumb (docs/studies.md)."""
    from citab_cli.core.workflows.study_power import DISAGREEMENT, subjects_needed

    table = Table(
        title="What it can detect (rule of thumb, before anything runs)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for column in ("cohort", "table", "subjects", "per class", "smallest detectable"):
        table.add_column(column, justify="right" if column == "subjects" else "left")
    for row in rows:
        table.add_row(
            row["cohort"],
            row["scope"],
            str(row["subjects"]),
            "/".join(str(c) for c in row["classes"]),
            f"±{row['mde']:.2f} (±{row['mde_holm']:.2f} after Holm over {row['family']})",
        )
    console.print(table)
    console.print(
        "  Smallest difference in balanced accuracy detected 80% of the time (two-sided 5%), "
        f"if paired probes disagree on {DISAGREEMENT:.0%} of subjects and pretraining seeds "
        f"agree; ±0.05 needs about {subjects_needed(0.05)} scored subjects with balanced "
        "classes. The report measures it for every comparison."
    )
