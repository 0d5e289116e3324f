"""What a project holds, for `citab info`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from citab_cli.core.project import Project
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


@dataclass
class ProjectInfo:
    root: Path
    settings: ProjectSettings
    cohorts: list[CohortInfo]
    header_caches: list[Path] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


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
            )
        )
    return ProjectInfo(
        root=project.root,
        settings=settings,
        cohorts=cohorts,
        header_caches=project.header_caches(),
        runs=project.runs(),
    )
