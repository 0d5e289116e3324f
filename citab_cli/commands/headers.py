"""`citab embed-headers`: give every column its meaning as a vector."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Table

from citab_cli.commands.console import console, err_console
from citab_cli.commands.options import ProjectOption


def embed_headers(
    model: Path = typer.Option(
        None,
        "--model",
        help="A local sentence-transformers folder \\[default: the project's encoder, at first "
        "the shipped all-MiniLM-L6-v2].",
    ),
    project: Path = ProjectOption,
) -> None:
    """Embed every ingested column header and categorical level; show cross-cohort matches."""
    from citab_cli.core import headers
    from citab_cli.core.data.project import Project

    result = headers.encode_headers(
        Project(project), model, message=lambda msg: err_console.print(f"[dim]{msg}...[/]")
    )
    state = "model loaded" if result.model_loaded else "all cached, no model loaded"
    console.print(
        f"Header texts: {result.texts} ({result.new} new; {state}); encoder "
        f"[bold]{result.encoder_id}[/], cache {result.cache}"
    )
    if result.matches:
        _show_matches(result.matches)


def _show_matches(matches) -> None:
    """One row per column: its nearest column in each other cohort, cosine and margin over the
    runner-up; ↔ marks a mutual nearest pair."""
    cohorts = sorted({m.cohort for m in matches})
    best = {(m.cohort, m.column, m.other_cohort): m for m in matches}
    table = Table(
        title="Each column's nearest header in the other cohorts (cosine, margin over the "
        "runner-up; ↔ mutual)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("cohort: column")
    for cohort in cohorts:
        table.add_column(f"in {cohort}")
    rows = list(dict.fromkeys((m.cohort, m.column) for m in matches))
    for cohort, column in rows:
        cells = []
        for other in cohorts:
            m = best.get((cohort, column, other))
            if m is None:
                cells.append("")
                continue
            back = best.get((other, m.best, cohort))
            mutual = "↔ " if back is not None and back.best == column else ""
            cells.append(f"{mutual}{m.best} {m.cosine:.2f} (+{m.margin:.2f})")
        table.add_row(f"{cohort}: {column}", *cells)
    console.print(table)
