"""`citab synth`: write synthetic cohorts to try citab without access-controlled data."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.table import Table

from citab_cli.commands.console import console, progress_bar
from citab_cli.commands.options import default


class Wording(str, Enum):
    shared = "shared"
    independent = "independent"


def synth(
    out: Path = typer.Argument(..., help="New folder to write the cohorts into."),
    cohorts: str = typer.Option("adni,nacc,aibl", "--cohorts", help="Comma-separated cohorts."),
    subjects: int = typer.Option(60, "--subjects", help="Subjects per cohort."),
    shape: int = typer.Option(48, "--shape", help="Voxels per axis of each scan (cube)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same files."),
    image_signal: float = typer.Option(
        1.0,
        "--image-signal",
        help="How much of the latent severity the scans show, 0-1: below 1, part of what the "
        "table knows is invisible in the scan (for studies).",
    ),
    wording: Wording = typer.Option(
        "shared",
        "--wording",
        help="How the cohorts describe their columns: shared (one wording per concept, as in "
        "the shipped schemas: header matching is exact) or independent (each cohort in its own "
        "words and sometimes units, written separately: matching is imperfect, as with real "
        "data).",
    ),
    control: str = typer.Option(
        None,
        "--control",
        help="Write a control with a known answer: positive (sources adni and nacc with twice "
        "the subjects and one in five labelled; target aibl with balanced classes; see "
        "docs/synthetic-data.md). With --image-signal 0 it is the negative control whose "
        "scans carry nothing. " + default("none: ordinary cohorts"),
    ),
    tables_only: int = typer.Option(
        0,
        "--tables-only",
        help="Also give each cohort N subjects with table rows and no scan, as registries have "
        "(ingest them with --on-missing-image keep). " + default("0"),
    ),
    raw_scans: bool = typer.Option(
        False,
        "--raw-scans",
        help="Write whole-head scans as scanners do (skull, scalp, neck, random pose, field of "
        "view and orientation, bias field), for the t1-linear pipeline; the true brain masks go "
        "to <cohort>_truth/. " + default("off: brain-only scans, for the minimal pipeline"),
    ),
) -> None:
    """Write synthetic ADNI-, NACC- and AIBL-like cohorts: CSV tables, T1 NIfTI scans, truth."""
    from citab_cli.core import synth as core

    names = [c.strip().lower() for c in cohorts.split(",") if c.strip()]
    core.check_request(out, names, subjects, shape, image_signal, wording.value, control,
                       tables_only)  # fmt: skip
    total = sum(core.subjects_of(names, subjects, control).values())
    with progress_bar("Synthesising scans", total) as advance:
        result = core.generate(
            out,
            names,
            subjects,
            shape,
            seed,
            advance=advance,
            image_signal=image_signal,
            raw_scans=raw_scans,
            wording=wording.value,
            control=control,
            tables_only=tables_only,
        )
    _show(result, tables_only)


def _show(result, tables_only: int) -> None:
    """The cohorts written, and the next command."""
    table = Table(title=f"Synthetic cohorts in {result.out}", title_justify="left")
    for column in ("cohort", "subjects", "labelled", "CSV rows", "CN/MCI/AD", "ceiling accuracy",
                   "files"):  # fmt: skip
        table.add_column(column)
    for c in result.cohorts:
        counts = "/".join(str(c.class_counts[k]) for k in ("CN", "MCI", "AD"))
        table.add_row(
            c.name,
            str(c.subjects),
            str(c.labelled),
            str(c.rows),
            counts,
            f"{c.ceiling_accuracy:.3f}",
            f"{c.csv.name}, {c.images.name}/",
        )
    console.print(table)
    if tables_only:
        console.print(f"Each cohort's last {tables_only} subjects have table rows and no scan.")
    console.print(f"Truth (latent severity, ceiling accuracy): {result.truth}")
    first = result.cohorts[0]
    keep = " --on-missing-image keep" if tables_only else ""
    console.print(f"Next: citab ingest {first.csv} --images {first.images} --project PROJECT{keep}")
