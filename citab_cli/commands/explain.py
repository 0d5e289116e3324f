"""`citab explain`: attributions by header text, prototype concepts, 3D saliency."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from citab_cli.commands.console import console, err_console
from citab_cli.commands.options import Device, ProjectOption, default, device_option

#: Columns the terminal lists (the report lists them all).
SHOWN = 8


class Baseline(str, Enum):
    sample = "sample"
    mean = "mean"


class ScanMethod(str, Enum):
    gradcam = "gradcam"
    occlusion = "occlusion"


def explain(
    ckpt: str = typer.Option(
        ...,
        "--ckpt",
        help="A fine-tuned classifier (finetuned."
        "safetensors), or a pretrained checkpoint (then a linear probe is "
        "fitted on the cohort's train subjects).",
    ),
    cohort: str = typer.Option(..., "--cohort", help="The cohort to explain."),
    subjects: str = typer.Option(
        "3", "--subjects", help="How many test subjects, or IDs (comma-separated)."
    ),
    steps: int = typer.Option(
        32, "--steps", min=4, help="Samples (expected gradients) or steps (--baseline mean)."
    ),
    baseline: Baseline = typer.Option(
        Baseline.sample,
        "--baseline",
        help="Where each column's path starts: sample (expected gradients: real train subjects' "
        "cells) or mean (each column's average token).",
    ),
    scan_method: ScanMethod = typer.Option(
        ScanMethod.gradcam,
        "--scan-method",
        help="The scan map: gradcam, or occlusion (slower: one pass a patch).",
    ),
    exclude_criteria: bool = typer.Option(
        False,
        "--exclude-criteria",
        help="Leave out the columns that define the diagnosis (a classifier fine-tuned without "
        "them always leaves them out). " + default("off"),
    ),
    device: Device = device_option("the model"),
    project: Path = ProjectOption,
) -> None:
    """Explain diagnoses: columns by header text, prototype routing, Grad-CAM on the scans."""
    from citab_cli.core.data.project import Project, ReportFiles
    from citab_cli.core.explain import explanation as core

    result = core.explain(
        Project(project),
        ckpt,
        cohort,
        subjects,
        steps,
        device.value,
        message=lambda text: err_console.print(f"[dim]{text}...[/]"),
        exclude_criteria=exclude_criteria,
        baseline=baseline.value,
        scan_method=scan_method.value,
    )
    how = "expected gradients" if baseline.value == "sample" else "from the mean token"
    console.print(
        f"[bold]{cohort}[/]: columns that drive the predicted diagnosis "
        f"(mean |attribution|, {how}):"
    )
    for header, value in result.ranking[:SHOWN]:
        console.print(f"  {value:8.4f}  {header}")
    if len(result.ranking) > SHOWN:
        console.print(
            f"  ... the {SHOWN} strongest of {len(result.ranking)} columns; all in the report"
        )
    console.print(
        f"  report: {ReportFiles(result.folder).markdown} (prototype routing heatmap, "
        "Grad-CAM NIfTI and PNG per subject)"
    )
