"""The plan of one ingest: everything it will write, decided and checked before anything is
written. `ingest.plan` makes it, `ingest.execute` carries it out, `manifest` records it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from citab_cli.core.data.project import Project
from citab_cli.core.data.table import ValidatedTable
from citab_cli.core.schema.cohort import CohortSchema
from citab_cli.core.settings import ProjectSettings

OnMissing = Literal["error", "skip"]
OnBadScan = Literal["error", "skip"]
#: The pipeline of a cohort whose schema and command line name none.
DEFAULT_PIPELINE = "minimal"


@dataclass
class IngestPlan:
    """Everything ingest will write, decided and validated before anything is written."""

    project: Project
    settings: ProjectSettings
    new_project: bool
    cohort: str
    schema: CohortSchema
    schema_path: Path
    csv_path: Path
    csv_sha256: str
    images_root: Path
    table: ValidatedTable
    images: list[Path]
    pipeline: str = DEFAULT_PIPELINE
    on_bad_scan: OnBadScan = "error"
    warnings: list[str] = field(default_factory=list)
    qc: dict = field(default_factory=dict)  # subject -> QC figures, filled by execute
    qc_outliers: dict = field(default_factory=dict)  # subject -> figures it is an outlier on
    seconds: dict = field(default_factory=dict)  # mean seconds per scan of each step
    peak_mb: float = 0.0  # the largest peak resident memory of a process that ran a scan
    notes: list[str] = field(default_factory=list)  # about how the scans were made
    fixed_splits: list[str] | None = None  # each subject's split from --splits FILE
    split_source: dict = field(default_factory=dict)  # the fractions and seed, or the file
    schema_text: str | None = None  # a schema drafted for this ingest, saved with the cohort
    bids: dict | None = None  # a BIDS dataset's rules, sessions, scans and their sidecars
