"""The `citab` command-line application."""

from __future__ import annotations

import typer

from citab_cli import __version__
from citab_cli.commands import (
    demo,
    embed,
    explain,
    finetune,
    headers,
    info,
    ingest,
    predict,
    pretrain,
    probe,
    report,
    schema,
    study,
    synth,
)
from citab_cli.commands.console import CitabGroup

app = typer.Typer(
    name="citab",
    cls=CitabGroup,
    help="Cross-cohort image-tabular self-supervised learning for brain MRI and clinical tables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"citab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """citab: header-aware image-tabular pretraining across cohorts (ADNI, NACC, AIBL, ...)."""


app.command("synth")(synth.synth)
app.command("ingest")(ingest.ingest)
app.add_typer(schema.app, name="schema")
app.command("embed-headers")(headers.embed_headers)
app.command("pretrain")(pretrain.pretrain)
app.command("probe")(probe.probe)
app.command("finetune")(finetune.finetune)
app.command("explain")(explain.explain)
app.command("embed")(embed.embed)
app.command("predict")(predict.predict)
app.command("study")(study.study)
app.command("report")(report.report)
app.command("demo")(demo.demo)
app.command("info")(info.info)


def main() -> None:
    app()
