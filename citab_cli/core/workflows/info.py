"""What a project holds, for `citab info`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from citab_cli.core.data.project import QC_FILE, Project
from citab_cli.core.runtime import checkpoint_file
from citab_cli.core.settings import ProjectSettings


@dataclass
class CohortInfo:
    """One ingested cohort as `citab info` shows it."""

    name: str
    subjects: int
    splits: dict[str, int]
    labelled: int
    classes: list[str]
    columns: int
    warnings: int
    created: str
    pipeline: str = "minimal"
    qc_outliers: dict = field(default_factory=dict)  # subject -> QC figures it stands out on
    montage: Path | None = None  # qc.png
    without_scan: int = 0  # subjects kept without a scan (table-only)


@dataclass
class RunInfo:
    """One run as `citab info` shows it."""

    name: str
    cohorts: list[str]
    step: int | None  # of last.safetensors; None while no checkpoint exists
    best: dict  # metrics of best.safetensors


@dataclass
class ProjectInfo:
    """Everything `citab info` shows."""

    root: Path
    settings: ProjectSettings
    cohorts: list[CohortInfo]
    header_caches: list[Path] = field(default_factory=list)
    runs: list[RunInfo] = field(default_factory=list)


def describe(project: Project) -> ProjectInfo:
    """What the project holds: settings, cohorts, header caches and runs."""
    settings = project.load_settings()
    cohorts = []
    for name in project.cohorts():
        manifest = project.manifest(name)
        cohorts.append(
            CohortInfo(
                name=name,
                subjects=manifest["subjects"],
                splits={s: manifest["splits"].get(s, 0) for s in ("train", "val", "test")},
                labelled=sum(manifest["label_counts"].values()),
                classes=manifest["classes"],
                columns=len(manifest["columns"]),
                warnings=len(manifest["warnings"]),
                created=manifest["created"],
                pipeline=manifest.get("preprocessing", {}).get("pipeline", "minimal"),
                qc_outliers=manifest.get("qc_outliers", {}),
                montage=project.cohort_file(name, QC_FILE),
                without_scan=sum(manifest.get("without_scan", {}).values()),
            )
        )
    return ProjectInfo(
        root=project.root,
        settings=settings,
        cohorts=cohorts,
        header_caches=project.header_caches(),
        runs=[_run(project, name) for name in project.runs()],
    )


def _run(project: Project, name: str) -> RunInfo:
    files = project.run_files(name)
    last = checkpoint_file.read_metadata(files.last)
    best = checkpoint_file.read_metadata(files.best)
    return RunInfo(
        name=name,
        cohorts=sorted(last.get("cohorts", {})),
        step=last.get("step"),
        best=best.get("metrics", {}),
    )
