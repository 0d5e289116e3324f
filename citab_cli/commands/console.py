"""Terminal output shared by the commands, and the CitabError -> exit 1 rule."""

from __future__ import annotations

import os
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperGroup

from citab_cli.core.errors import CitabError


class WholeTables(Console):
    """A console that never cuts a table: where its output is not a terminal (a log, a pipe, a
    file, CI), a table is printed at its natural width instead of being squeezed into 80
    columns with its cells cut short ("coho…"). In a terminal, or with COLUMNS set, tables
    fit that width."""

    def print(self, *objects, **kwargs) -> None:  # type: ignore[override]
        from rich.table import Table

        tables = [o for o in objects if isinstance(o, Table)]
        if self.is_terminal or not tables or os.environ.get("COLUMNS"):  # a width asked for
            super().print(*objects, **kwargs)
            return
        unbounded = self.options.update_width(100_000)
        natural = max(self.measure(t, options=unbounded).maximum for t in tables)
        previous = self._width  # rich caps a print's width at the console's: widen it for this one
        self.width = max(self.width, natural)
        try:
            super().print(*objects, **kwargs)
        finally:
            self._width = previous


def _flags_take_no_value() -> None:
    """Typer's help shows a `<bool>` type beside every on/off flag (`--help <bool>`,
    `--dry-run <bool>`), as if it took a value: flags show no type."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "citab_flags", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_bool_flag else shown(self, ctx)

    display_type_rich.citab_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_take_no_value()
console = WholeTables(highlight=False)
err_console = WholeTables(stderr=True, highlight=False)


def fail(message: str) -> None:
    """Print one red line on stderr."""
    err_console.print(f"[bold red]Error:[/] {message}", markup=True, soft_wrap=True)


class CitabGroup(TyperGroup):
    """Turns a CitabError raised anywhere below into one red line and exit status 1."""

    def invoke(self, ctx):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except CitabError as exc:
            fail(_escape(str(exc)))
            raise typer.Exit(1) from None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def new_progress(*fields: str, disable: bool = False) -> Progress:
    """The one progress bar of every command: description, bar, done/total, the task fields
    named in `fields` (e.g. the current loss), elapsed time and ETA; on stderr, gone when done."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(f"{{task.fields[{name}]}}") for name in fields),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=err_console, transient=True, disable=disable)


@contextmanager
def progress_bar(description: str, total: int):
    """A progress bar for `total` items; yields a function that advances it (by one unless
    told how many)."""
    with new_progress() as bar:
        task = bar.add_task(description, total=total)
        yield lambda done=1: bar.advance(task, done)
