"""What a project holds, for `citab info`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from citab_cli.core.data.project import Project
from citab_cli.core.settings import ProjectSettings


@dataclass
class CohortInfo:
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


@dataclass
class RunInfo:
    name: str
    cohorts: list[str]
    step: int | None  # of last.safetensors; None while no checkpoint exists
    best: dict  # metrics of best.safetensors


@dataclass
class ProjectInfo:
    root: Path
    settings: ProjectSettings
    cohorts: list[CohortInfo]
    header_caches: list[Path] = field(default_factory=list)
    runs: list[RunInfo] = field(default_factory=list)


def describe(project: Project) -> ProjectInfo:
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
            )
        )
    return ProjectInfo(
        root=project.root,
        settings=settings,
        cohorts=cohorts,
        header_caches=project.header_caches(),
        runs=[_run(project, name) for name in project.runs()],
    )


def _metadata(path: Path) -> dict:
    """The citab metadata of a checkpoint, read from its header only ({} if unreadable)."""
    import json

    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return json.loads((handle.metadata() or {}).get("citab", "{}"))
    except (SafetensorError, OSError, ValueError):
        return {}


def _run(project: Project, name: str) -> RunInfo:
    folder = project.runs_dir / name
    last = _metadata(folder / "last.safetensors") if (folder / "last.safetensors").is_file() else {}
    best = _metadata(folder / "best.safetensors") if (folder / "best.safetensors").is_file() else {}
    return RunInfo(
        name=name,
        cohorts=sorted(last.get("cohorts", {})),
        step=last.get("step"),
        best=best.get("metrics", {}),
    )
