"""The project directory: the one place that knows where everything lives.

```
<project>/
  citab.yaml                       project settings
  schemas/<cohort>.yaml            frozen copy of the schema used at ingest
  cohorts/<cohort>/                subjects.csv, tabular.safetensors, images.npy, manifest.json
  headers/<encoder-id>.safetensors header-embedding cache
  runs/<run>/                      pretraining runs
  reports/<kind>-<run>-<cohort>-<time>/
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citab_cli.core import atomic, yaml_io
from citab_cli.core.data.schema import COHORT_NAME
from citab_cli.core.errors import CitabError
from citab_cli.core.settings import ProjectSettings

SETTINGS_FILE = "citab.yaml"
SUBJECTS_FILE = "subjects.csv"
TABULAR_FILE = "tabular.safetensors"
IMAGES_FILE = "images.npy"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Project:
    root: Path

    @property
    def settings_path(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def cohorts_dir(self) -> Path:
        return self.root / "cohorts"

    @property
    def schemas_dir(self) -> Path:
        return self.root / "schemas"

    @property
    def headers_dir(self) -> Path:
        return self.root / "headers"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def cohort_dir(self, cohort: str) -> Path:
        if not COHORT_NAME.match(cohort):
            raise CitabError(
                f"'{cohort}' is not a valid cohort name; use lower-case letters, "
                "digits, '-' and '_' (e.g. adni)"
            )
        return self.cohorts_dir / cohort

    def schema_path(self, cohort: str) -> Path:
        self.cohort_dir(cohort)  # validates the name
        return self.schemas_dir / f"{cohort}.yaml"

    def cohort_file(self, cohort: str, name: str) -> Path:
        return self.cohort_dir(cohort) / name

    # settings ---------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.settings_path.is_file()

    def load_settings(self) -> ProjectSettings:
        if not self.exists():
            raise CitabError(
                f"{self.root} is not a citab project (no {SETTINGS_FILE}); "
                "ingest a cohort first or pass --project DIR"
            )
        return yaml_io.load_model(self.settings_path, ProjectSettings, "project settings")  # type: ignore[return-value]

    def write_settings(self, settings: ProjectSettings) -> None:
        atomic.write_text(self.settings_path, yaml_io.dump(settings.model_dump(mode="json")))

    # cohorts ----------------------------------------------------------------------------------
    def cohorts(self) -> list[str]:
        if not self.cohorts_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.cohorts_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()
        )

    def manifest(self, cohort: str) -> dict[str, Any]:
        path = self.cohort_file(cohort, MANIFEST_FILE)
        if not path.is_file():
            known = ", ".join(self.cohorts()) or "none yet"
            raise CitabError(
                f"cohort '{cohort}' is not ingested in {self.root} (ingested: {known}); "
                f"run `citab ingest` for it first"
            )
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CitabError(f"{path} is corrupt; re-run `citab ingest` for '{cohort}'") from None

    def runs(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def header_caches(self) -> list[Path]:
        if not self.headers_dir.is_dir():
            return []
        return sorted(self.headers_dir.glob("*.safetensors"))
