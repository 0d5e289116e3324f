"""Tables in logs: where the output is not a terminal, every cell is printed whole."""

from __future__ import annotations

import io
from pathlib import Path

from rich.table import Table

from citab_cli.commands.console import WholeTables
from tests.helpers import run


def _wide_table() -> Table:
    table = Table(title="probe")
    for name in ("cohort", "labelled subjects", "balanced accuracy (mean ± sd over seeds)"):
        table.add_column(name)
    table.add_row("adni", "120", "0.333 ± 0.123 " + "x" * 60)
    return table


def test_a_table_written_to_a_file_keeps_every_cell_whole(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    out = io.StringIO()
    console = WholeTables(file=out, highlight=False)
    assert not console.is_terminal and console.width == 80
    console.print(_wide_table())
    console.print("a line of text")
    text = out.getvalue()
    assert "…" not in text
    assert "balanced accuracy (mean ± sd over seeds)" in text and "x" * 60 in text
    assert max(len(line) for line in text.splitlines()) > 80  # wider than the default
    assert console.width == 80  # only that print was widened


def test_a_terminal_still_fits_its_window():
    out = io.StringIO()
    console = WholeTables(file=out, force_terminal=True, color_system=None, width=60)
    console.print(_wide_table())
    assert max(len(line) for line in out.getvalue().splitlines()) <= 60


def test_citab_info_piped_cuts_no_cell(project: Path, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    result = run("info", "--project", project)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output


def test_a_width_asked_for_with_columns_is_kept(monkeypatch):
    monkeypatch.setenv("COLUMNS", "70")
    out = io.StringIO()
    console = WholeTables(file=out, color_system=None)
    console.print(_wide_table())
    assert max(len(line) for line in out.getvalue().splitlines()) <= 70


def test_on_off_flags_show_no_value_in_help():
    """`--help`, `--version` and `--dry-run` take no value, so help shows no type for them;
    options that take one keep theirs."""
    top = run("--help")
    assert top.exit_code == 0 and "--version" in top.output
    study = run("study", "--help")
    assert study.exit_code == 0 and "--dry-run" in study.output
    for output in (top.output, study.output):
        assert "<bool>" not in output
    assert "<auto|cpu|cuda>" in study.output and "<path>" in study.output
    assert "and the probes run:" in study.output  # plural subject, plural verb
