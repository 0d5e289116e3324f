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

    result = headers.embed(
        Project(project), model, progress=lambda msg: err_console.print(f"[dim]{msg}...[/]")
    )
    state = "model loaded" if result.model_loaded else "all cached, no model loaded"
    console.print(
        f"Header texts: {result.texts} ({result.new} new; {state}); encoder "
        f"[bold]{result.encoder_id}[/], cache {result.cache}"
    )
    if result.groups:
        table = Table(
            title="Columns that mean the same across cohorts",
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        table.add_column("concept (cohort: column)")
        table.add_column("cosine", justify="right")
        for group in result.groups:
            chain = " ↔ ".join(f"{column} ({cohort})" for cohort, column in group.members)
            table.add_row(chain, f"{group.cosine:.3f}")
        console.print(table)
    if result.unmatched:
        listed = ", ".join(f"{column} ({cohort})" for cohort, column in result.unmatched)
        console.print(f"Without a counterpart in another cohort: {listed}", soft_wrap=True)
