"""`citab report`: one HTML page per project."""

from __future__ import annotations

from pathlib import Path

from citab_cli.commands.console import console, err_console
from citab_cli.commands.options import ProjectOption


def report(project: Path = ProjectOption) -> None:
    """Write page/index.html: cohorts, QC, header matches, runs, evaluations and explanations."""
    from citab_cli.core.data.project import Project
    from citab_cli.core.workflows.project_page import write_page

    page = write_page(Project(project), message=lambda text: err_console.print(f"[dim]{text}[/]"))
    console.print(f"Project page: [bold]{page}[/] (open it in a browser; it reads no network)")
