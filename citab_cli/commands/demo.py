"""`citab demo`: synthetic cohorts through the whole pipeline, with a results table."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich import box
from rich.table import Table

from citab_cli.commands.console import console, err_console
from citab_cli.commands.probe import chance_of, score_cell

#: Pretraining epochs of the demo: 45 epochs of 7 steps, past the ~250-350 steps where matching
#: and the image pathway start to learn (docs/results.md, section 1); fewer end on the plateau.
DEMO_EPOCHS = 45


def demo(
    folder: Path = typer.Option(
        Path("citab-demo"), "--dir", help="New folder for everything the demo writes."
    ),
    subjects: int = typer.Option(60, "--subjects", help="Subjects per synthetic cohort."),
    epochs: int = typer.Option(DEMO_EPOCHS, "--epochs", help="Pretraining epochs (small preset)."),
) -> None:
    """Run synth -> ingest -> embed-headers -> pretrain -> probe -> explain on synthetic data,
    then write the project's page (project/page/index.html), everything on one page."""
    from citab_cli.core.data.project import ReportFiles
    from citab_cli.core.workflows import demo as core

    start = time.perf_counter()
    result = core.run(
        folder,
        subjects=subjects,
        epochs=epochs,
        message=lambda text: err_console.print(f"[dim]{text}...[/]"),
    )
    table = Table(
        title=f"Test balanced accuracy, mean ± sd over {result.seeds} seeds: linear probes of the "
        "cross-cohort CITab embedding and of the same network with random weights, against "
        "the raw table read by a linear probe and by gradient-boosted trees",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("cohort", no_wrap=True)
    table.add_column("labels", justify="right", no_wrap=True)
    shown = {
        "citab": "CITab",
        "random_multimodal": "random weights",
        "raw_table": "raw table",
        "raw_table_gbdt": "table, trees",
    }
    for title in shown.values():
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("chance", justify="right", no_wrap=True)
    for report in result.probes:
        chance = chance_of(report)
        for f in result.fractions:
            cells = [report.summary[k][f"{f:g}"]["balanced_accuracy"] for k in shown]
            table.add_row(report.cohort, f"{f:.0%}", *(score_cell(c, chance) for c in cells),
                          f"{chance:.3f}")  # fmt: skip
    console.print(table)
    console.print("  chance: one answer for everyone; ▼ below it")
    for line in _learned(result):
        console.print(line)
    console.print(f"Project: {result.project}")
    console.print(f"Pretraining run: {result.run_dir}")
    for report in result.probes:
        console.print(f"Probe report ({report.cohort}): {ReportFiles(report.folder).markdown}")
    console.print(f"Explanation: {ReportFiles(result.explanation.folder).markdown}")
    console.print(f"[bold]Everything on one page: {result.page}[/] (open it in a browser)")
    console.print(
        f"Finished in {time.perf_counter() - start:.0f} s. Small synthetic cohorts "
        "give noisy numbers; see docs/results.md for a larger study."
    )


def _learned(result) -> list[str]:
    """Whether pretraining taught the image pathway and matching anything: the pooled image
    embedding against the same network with random weights, per cohort at the smallest label
    fraction, and the validation matching AUC at the last epoch."""
    fraction = f"{min(result.fractions):g}"
    cells, above = [], 0
    for report in result.probes:
        own = report.summary["citab_image"][fraction]["balanced_accuracy"]["mean"]
        random = report.summary["random_image"][fraction]["balanced_accuracy"]["mean"]
        above += own > random
        cells.append(f"{report.cohort} {own:.3f} vs {random:.3f}")
    lines = [
        f"Image pathway (pooled image embedding, {float(fraction):.0%} of labels) against the "
        f"same network with random weights: {'; '.join(cells)}: above it on {above} of "
        f"{len(cells)} cohorts."
    ]
    if result.matching_auc:
        lines.append(
            f"Image-table matching on validation: AUC {result.matching_auc[-1]:.3f} at the last "
            f"epoch (first {result.matching_auc[0]:.3f}; chance 0.5)."
        )
    return lines
