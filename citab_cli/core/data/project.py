"""The project directory: the one place that knows where everything lives.

```
<project>/
  citab.yaml                       project settings
  schemas/<cohort>.yaml            frozen copy of the schema used at ingest
  cohorts/<cohort>/                subjects.csv, tabular.safetensors, images.npy, manifest.json,
                                   qc.png
  headers/<encoder-id>.safetensors header-embedding cache
  cache/                           finished scans and converted DICOM series, by content
  runs/<run>/                      config.yaml, metrics.jsonl, best/last/last.state.safetensors,
                                   environment.json, curves.png, tensorboard/
  studies/<study>/                 study.json, plan.json, scores/ (test probabilities per run)
  reports/<kind>-<run>-<cohort>-<time>/
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citab_cli.core import atomic, yaml_io
from citab_cli.core.errors import CitabError
from citab_cli.core.schema.cohort import COHORT_NAME
from citab_cli.core.settings import ProjectSettings

SETTINGS_FILE = "citab.yaml"
SUBJECTS_FILE = "subjects.csv"
TABULAR_FILE = "tabular.safetensors"
IMAGES_FILE = "images.npy"
MANIFEST_FILE = "manifest.json"
QC_FILE = "qc.png"
#: A synthetic cohort's latent variables per subject (copied from citab synth's truth.csv).
TRUTH_FILE = "truth.csv"
#: A run's files (runs/<run>/...).
RUN_CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
BEST_CHECKPOINT = "best.safetensors"
LAST_CHECKPOINT = "last.safetensors"
STATE_CHECKPOINT = "last.state.safetensors"
ENVIRONMENT_FILE = "environment.json"
CURVES_FILE = "curves.png"
#: The project page `citab report` writes, in its own folder.
PAGE_DIR = "page"
PAGE_FILE = "index.html"
TENSORBOARD_DIR = "tensorboard"
#: A report's files (reports/<kind>-<run>-<cohort>-<time>/...).
REPORT_DOCUMENT = "report.json"
REPORT_MARKDOWN = "report.md"
FINETUNED_MODEL = "finetuned.safetensors"
#: A study's working files (studies/<study>/...).
STUDY_COPY = "study.json"
STUDY_PLAN = "plan.json"
STUDY_SCORES = "scores"
STUDY_TIMINGS = "timings.json"


@dataclass(frozen=True)
class ReportFiles:
    """The files of one report folder (reports/<kind>-<run>-<cohort>-<time>/)."""

    directory: Path

    @property
    def document(self) -> Path:
        """report.json: everything the report found, as data."""
        return self.directory / REPORT_DOCUMENT

    @property
    def markdown(self) -> Path:
        """report.md: the same for a person to read."""
        return self.directory / REPORT_MARKDOWN

    @property
    def finetuned(self) -> Path:
        """The classifier a fine-tuning report keeps, for `citab predict` and `citab explain`."""
        return self.directory / FINETUNED_MODEL


@dataclass(frozen=True)
class StudyFiles:
    """The working files of one study (studies/<study>/)."""

    directory: Path

    @property
    def copy(self) -> Path:
        """The study file as it was run."""
        return self.directory / STUDY_COPY

    @property
    def plan(self) -> Path:
        """The runs the study plans, with their optimiser steps."""
        return self.directory / STUDY_PLAN

    @property
    def scores(self) -> Path:
        """The folder of the test probabilities of every scored run."""
        return self.directory / STUDY_SCORES

    @property
    def timings(self) -> Path:
        """The seconds of the study's parts, summed over its invocations."""
        return self.directory / STUDY_TIMINGS


@dataclass(frozen=True)
class RunFiles:
    """The files of one pretraining run, all in `directory` (runs/<run>/)."""

    directory: Path

    @property
    def name(self) -> str:
        """The run's name."""
        return self.directory.name

    @property
    def config(self) -> Path:
        """The resolved configuration the run trains with."""
        return self.directory / RUN_CONFIG_FILE

    @property
    def metrics(self) -> Path:
        """One JSON line per logged step and per validation."""
        return self.directory / METRICS_FILE

    @property
    def best(self) -> Path:
        """The model at its best validation."""
        return self.directory / BEST_CHECKPOINT

    @property
    def last(self) -> Path:
        """The model at the last checkpoint."""
        return self.directory / LAST_CHECKPOINT

    @property
    def state(self) -> Path:
        """Model, optimizer and progress: what a resumed run continues from."""
        return self.directory / STATE_CHECKPOINT

    @property
    def environment(self) -> Path:
        """Versions, devices and processes of the latest start."""
        return self.directory / ENVIRONMENT_FILE

    @property
    def curves(self) -> Path:
        """Losses and validation scores against steps."""
        return self.directory / CURVES_FILE

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files, when asked for."""
        return self.directory / TENSORBOARD_DIR


@dataclass(frozen=True)
class Project:
    """A project directory: every path in it comes from here."""

    root: Path

    @property
    def settings_path(self) -> Path:
        """citab.yaml."""
        return self.root / SETTINGS_FILE

    @property
    def cohorts_dir(self) -> Path:
        """cohorts/: one folder per ingested cohort."""
        return self.root / "cohorts"

    @property
    def schemas_dir(self) -> Path:
        """schemas/: the frozen copy of each cohort's schema."""
        return self.root / "schemas"

    @property
    def headers_dir(self) -> Path:
        """headers/: header-embedding caches, one per encoder."""
        return self.root / "headers"

    @property
    def runs_dir(self) -> Path:
        """runs/: one folder per pretraining run."""
        return self.root / "runs"

    @property
    def scan_cache_dir(self) -> Path:
        """cache/: finished scans and converted DICOM series, keyed by content."""
        return self.root / "cache"

    @property
    def reports_dir(self) -> Path:
        """reports/: one folder per probe, fine-tune and explanation."""
        return self.root / "reports"

    @property
    def page_dir(self) -> Path:
        """report/: the project page (index.html) and the figures it shows."""
        return self.root / PAGE_DIR

    def cohort_dir(self, cohort: str) -> Path:
        """cohorts/<cohort>/ (the name checked)."""
        if not COHORT_NAME.match(cohort):
            raise CitabError(
                f"'{cohort}' is not a valid cohort name; use lower-case letters, "
                "digits, '-' and '_' (e.g. adni)"
            )
        return self.cohorts_dir / cohort

    def schema_path(self, cohort: str) -> Path:
        """schemas/<cohort>.yaml."""
        self.cohort_dir(cohort)  # validates the name
        return self.schemas_dir / f"{cohort}.yaml"

    def cohort_file(self, cohort: str, name: str) -> Path:
        """A file of a stored cohort (one of the *_FILE names)."""
        return self.cohort_dir(cohort) / name

    # settings ---------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the project has its settings (something was ingested)."""
        return self.settings_path.is_file()

    def load_settings(self) -> ProjectSettings:
        """citab.yaml, checked; a folder without one is not a project."""
        if not self.exists():
            raise CitabError(
                f"{self.root} is not a citab project (no {SETTINGS_FILE}); "
                "ingest a cohort first or pass --project DIR"
            )
        return yaml_io.load_model(self.settings_path, ProjectSettings, "project settings")  # type: ignore[return-value]

    def write_settings(self, settings: ProjectSettings) -> None:
        """Write citab.yaml atomically."""
        atomic.write_text(self.settings_path, yaml_io.dump(settings.model_dump(mode="json")))

    # cohorts ----------------------------------------------------------------------------------
    def cohorts(self) -> list[str]:
        """The ingested cohorts, sorted."""
        if not self.cohorts_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.cohorts_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()
        )

    def manifest(self, cohort: str) -> dict[str, Any]:
        """A cohort's manifest.json; a cohort not ingested is an error naming those that are."""
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

    # runs -------------------------------------------------------------------------------------
    def runs(self) -> list[str]:
        """The runs' names, sorted."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def run_files(self, run: str) -> RunFiles:
        """The files of run `run` (the name checked; nothing is created)."""
        if not run or "/" in run or "\\" in run or run.startswith("."):
            raise CitabError(f"'{run}' is not a valid run name; use letters, digits, '-' and '_'")
        return RunFiles(self.runs_dir / run)

    def newest_run(self, having: str | None = None) -> str | None:
        """The run changed last; with `having` (a run file name), the run whose file of that
        name was written last. None when there is no such run."""
        runs = self.runs()
        if having is not None:
            runs = [r for r in runs if (self.runs_dir / r / having).is_file()]
        if not runs:
            return None
        return max(runs, key=lambda r: (self.runs_dir / r / (having or "")).stat().st_mtime)

    def study_dir(self, study: str) -> Path:
        """studies/<study>/: a study's copy of its file, its plan and its runs' test scores."""
        return self.root / "studies" / study

    def header_cache(self, encoder: str) -> Path:
        """headers/<encoder-id>.safetensors: the vectors one encoder gave, with their texts."""
        return self.headers_dir / f"{encoder}.safetensors"

    def header_caches(self) -> list[Path]:
        """The header-embedding caches, one per encoder used."""
        if not self.headers_dir.is_dir():
            return []
        return sorted(self.headers_dir.glob("*.safetensors"))
