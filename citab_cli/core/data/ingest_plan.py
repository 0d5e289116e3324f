"""The plan of one ingest: everything it will write, decided and checked before anything is
written. `ingest.plan` makes it, `ingest_execute.execute` carries it out without changing it
(what the scans decide is its `IngestResult`), `manifest` records both."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from citab_cli.core.data.project import Project
from citab_cli.core.data.table import ValidatedTable
from citab_cli.core.schema.cohort import CohortSchema
from citab_cli.core.settings import ProjectSettings

OnMissing = Literal["error", "skip", "keep"]
OnBadScan = Literal["error", "skip"]
#: The pipeline of a cohort whose schema and command line name none.
DEFAULT_PIPELINE = "minimal"


def scanned_rows(images: list[Path | None]) -> list[int]:
    """The rows of `images` that have a scan."""
    return [i for i, path in enumerate(images) if path is not None]


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
    #: each row's scan; None: a table-only subject (--on-missing-image keep)
    images: list[Path | None]
    pipeline: str = DEFAULT_PIPELINE
    on_bad_scan: OnBadScan = "error"
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the dataset the plan read
    fixed_splits: list[str] | None = None  # each subject's split from --splits FILE
    split_source: dict = field(default_factory=dict)  # the fractions and seed, or the file
    schema_text: str | None = None  # a schema drafted for this ingest, saved with the cohort
    bids: dict | None = None  # a BIDS dataset's rules, sessions, scans and their sidecars

    @property
    def scanned(self) -> list[int]:
        """The rows with a scan (the others are table-only subjects)."""
        return scanned_rows(self.images)


@dataclass
class IngestResult:
    """What carrying out a plan kept and found: the rows and scans left after the pipeline, each
    subject's split, QC figures and outliers, seconds per step, peak memory, and the plan's
    warnings with those the scans added."""

    table: ValidatedTable
    images: list[Path | None]
    fixed_splits: list[str] | None
    warnings: list[str]
    notes: list[str] = field(default_factory=list)
    split_of: list[str] = field(default_factory=list)
    qc: dict = field(default_factory=dict)  # subject -> QC figures
    qc_outliers: dict = field(default_factory=dict)  # subject -> figures it is an outlier on
    seconds: dict = field(default_factory=dict)  # mean seconds per scan of each step
    peak_mb: float = 0.0  # the largest peak resident memory of a process that ran a scan
    digests: list[str] = field(default_factory=list)  # each row's stored scan's sha256, or ""

    @property
    def scanned(self) -> list[int]:
        """The rows with a scan (the others are table-only subjects)."""
        return scanned_rows(self.images)

    def keep(self, rows: list[int]) -> None:
        """Only these rows (and their scans and fixed splits) from now on."""
        self.table = self.table.subset(rows)
        self.images = [self.images[i] for i in rows]
        if self.fixed_splits is not None:
            self.fixed_splits = [self.fixed_splits[i] for i in rows]
