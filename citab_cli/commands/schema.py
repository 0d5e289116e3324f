"""`citab schema ...`: work with cohort schemas."""

from __future__ import annotations

from pathlib import Path

import typer

from citab_cli.commands.console import console, err_console
from citab_cli.commands.options import default

app = typer.Typer(help="Draft and check cohort schemas.", no_args_is_help=True)


@app.command("infer")
def infer(
    csv_path: Path = typer.Argument(
        ..., metavar="CSV|BIDS_ROOT", help="The cohort's table, or the root of a BIDS dataset."
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Write the draft here. " + default("print it")
    ),
    dictionary: Path = typer.Option(
        None,
        "--dictionary",
        help="The cohort's data dictionary (CSV: ADNI's FLDNAME/TEXT, NACC's VariableName/"
        "Description, ...): descriptions and units come from it. " + default("none"),
    ),
    images: Path = typer.Option(
        None,
        "--images",
        help="The folder of the cohort's scans: the subject column whose ids the file names use "
        "is preferred. " + default("not looked at"),
    ),
    dictionary_columns: str = typer.Option(
        None,
        "--dictionary-columns",
        help="NAME,DESCRIPTION: the dictionary's column names when its layout is another. "
        + default("recognised by their names"),
    ),
    session: str = typer.Option(
        None,
        "--session",
        help="BIDS: whose session's values the draft reads: first, last or a label such as "
        "ses-M000. " + default("first"),
    ),
) -> None:
    """Draft a schema YAML from a CSV, or from a BIDS dataset's tables and JSON sidecars: types,
    ranges, missing codes, censored values, the label, identifiers to drop; a review table says
    where each description came from and what is still to do."""
    from citab_cli.core import atomic
    from citab_cli.core.data import bids
    from citab_cli.core.errors import CitabError
    from citab_cli.core.schema.dictionary import parse_columns
    from citab_cli.core.schema.draft import draft

    if bids.is_bids(csv_path):
        from citab_cli.core.data import ingest_bids

        if dictionary is not None or images is not None:
            raise CitabError("a BIDS dataset describes its own columns and holds its scans: "
                             "leave out --dictionary and --images")  # fmt: skip
        dataset = bids.read(csv_path, bids.Rules(session=session or "first", run="first"))
        result = ingest_bids.draft(dataset)
    else:
        if session is not None:
            raise CitabError(f"--session reads a BIDS dataset's sessions; {csv_path} is not one "
                             "(no dataset_description.json)")  # fmt: skip
        result = draft(csv_path, dictionary, parse_columns(dictionary_columns), images)
    if output is not None and output.exists():
        from citab_cli.core.errors import CitabError

        raise CitabError(f"{output} already exists; choose another -o path or remove it")
    screen = console if output is not None else err_console
    _review(result.review, screen)
    if output is None:
        typer.echo(result.text, nl=False)
        return
    atomic.write_text(output, result.text)
    console.print(f"Draft schema written to {output}: review every 'TODO' before ingesting.")


def _review(rows, screen) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title="Review", title_justify="left", box=box.SIMPLE_HEAD)
    for heading in ("column", "taken for", "described by", "proposed codes", "still TODO"):
        table.add_column(heading)
    for row in rows:
        table.add_row(row.column, row.guess, row.described_by, row.codes, row.todo)
    screen.print(table)


@app.command("check")
def check(schema_path: Path = typer.Argument(..., metavar="YAML", help="A cohort schema.")) -> None:
    """Validate a schema YAML and summarise what it maps."""
    from citab_cli.core.schema.cohort import CategoricalColumn, load_schema

    schema = load_schema(schema_path)
    numeric = sum(not isinstance(c, CategoricalColumn) for c in schema.columns.values())
    console.print(
        f"[green]OK[/] {schema_path}: cohort [bold]{schema.cohort}[/], subject "
        f"{schema.subject}, {len(schema.columns)} columns ({numeric} numeric, "
        f"{len(schema.columns) - numeric} categorical)"
    )
    if schema.visit is not None:
        console.print(f"  baseline visit: {schema.visit.column} = {schema.visit.baseline}")
    if schema.label is not None:
        console.print(
            f"  label {schema.label.column} -> classes {', '.join(schema.label.class_names)}"
        )
    console.print(f"  dropped before anything is stored: {', '.join(schema.drop) or 'nothing'}")
    criteria = [n for n, c in schema.columns.items() if c.criterion]
    listed = ", ".join(criteria) or "none marked"
    console.print(f"  define the label (left out by --exclude-criteria): {listed}")
    roles = [f"{c.covariate} {n}" for n, c in schema.columns.items() if c.covariate]
    console.print(f"  demographic floor: {', '.join(roles) or 'no covariate: marked'}")
