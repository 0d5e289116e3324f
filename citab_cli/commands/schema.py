"""`citab schema ...`: work with cohort schemas."""

from __future__ import annotations

from pathlib import Path

import typer

from citab_cli.commands.console import console
from citab_cli.commands.options import default

app = typer.Typer(help="Draft and check cohort schemas.", no_args_is_help=True)


@app.command("infer")
def infer(
    csv_path: Path = typer.Argument(..., metavar="CSV", help="The cohort's table."),
    output: Path = typer.Option(
        None, "--output", "-o", help="Write the draft here. " + default("print it")
    ),
) -> None:
    """Draft a schema YAML from a CSV: types, ranges, levels, likely missing codes."""
    from citab_cli.core import atomic
    from citab_cli.core.data.schema_infer import draft

    text = draft(csv_path)
    if output is None:
        typer.echo(text, nl=False)
        return
    if output.exists():
        from citab_cli.core.errors import CitabError

        raise CitabError(f"{output} already exists; choose another -o path or remove it")
    atomic.write_text(output, text)
    console.print(f"Draft schema written to {output}: review every 'TODO' before ingesting.")


@app.command("check")
def check(schema_path: Path = typer.Argument(..., metavar="YAML", help="A cohort schema.")) -> None:
    """Validate a schema YAML and summarise what it maps."""
    from citab_cli.core.data.schema import CategoricalColumn, load_schema

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
