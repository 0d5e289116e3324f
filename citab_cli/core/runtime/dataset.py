"""Ingested cohorts as model input: normalised table cells, header vectors, memory-mapped scans."""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from citab_cli.core import headers
from citab_cli.core.data.project import IMAGES_FILE, SUBJECTS_FILE, TABULAR_FILE, Project
from citab_cli.core.errors import CitabError
from citab_cli.core.model.config import ModelConfig

#: Standardised values are clipped to this many standard deviations.
ZSCORE_CLIP = 5.0


@dataclass
class CohortData:
    """One ingested cohort, ready to batch. Row i of every array is subject i."""

    name: str
    subjects: list[str]
    splits: np.ndarray  # (N,) str: train / val / test
    labels: list[str | None]
    z: np.ndarray  # (N, C) float32 normalised numeric value, 0 where missing or categorical
    missing: np.ndarray  # (N, C) bool
    level: np.ndarray  # (N, C) int64 level index of categorical cells, -1 elsewhere
    categorical: np.ndarray  # (C,) bool
    column_vectors: np.ndarray  # (C, E) header embedding of each column
    #: (C, L, E) embedding of each level text (zeros past a column's levels)
    level_vectors: np.ndarray
    level_count: np.ndarray  # (C,) levels per column (0 for numeric)
    images: np.ndarray  # (N, D, H, W) float16 memory map
    schema_fingerprint: str
    columns: list[str]
    classes: list[str]  # the schema's classes, in its order
    texts: list[str]  # (C) header text of each column: description (unit)
    level_names: list[list[str]]  # (C) canonical level names of each column ([] if numeric)
    criterion: np.ndarray  # (C,) bool: the column helps define the label
    covariates: list[str | None]  # (C) age / sex / education, or None
    #: (N,) row of `images` read as subject i's scan; None: its own (shuffled-pairs controls)
    image_rows: np.ndarray | None = None
    #: Subjects kept without a scan (ingest) that `scanned_only` left out of this cohort.
    without_scan: int = 0
    #: (N,) row of `images` holding subject i's scan, -1 for a table-only subject; None: row i
    #: (every subject has a scan)
    scan_rows: np.ndarray | None = None

    @property
    def has_scan(self) -> np.ndarray:
        """(N,) bool: the subject has a scan."""
        if self.scan_rows is None:
            return np.ones(self.size, bool)
        return self.scan_rows >= 0

    def subset(self, rows: np.ndarray) -> CohortData:
        """The cohort with only the subjects `rows` (indices, in that order)."""
        rows = np.asarray(rows, np.int64)
        return replace(
            self,
            subjects=[self.subjects[i] for i in rows],
            splits=self.splits[rows],
            labels=[self.labels[i] for i in rows],
            z=self.z[rows],
            missing=self.missing[rows],
            level=self.level[rows],
            image_rows=None if self.image_rows is None else self.image_rows[rows],
            scan_rows=None if self.scan_rows is None else self.scan_rows[rows],
        )

    def scanned_only(self) -> CohortData:
        """The cohort without its table-only subjects (counted in `without_scan`)."""
        if self.scan_rows is None:
            return self
        kept = self.subset(np.nonzero(self.has_scan)[0])
        return replace(kept, without_scan=self.without_scan + self.size - kept.size)

    @property
    def size(self) -> int:
        """Subjects in the cohort."""
        return len(self.subjects)

    def keep_columns(self, keep: np.ndarray) -> CohortData:
        """The cohort with only the columns where `keep` (C,) is True: the others are absent,
        exactly as if the cohort had never had them."""
        keep = np.asarray(keep, bool)
        index = np.nonzero(keep)[0]
        levels = int(max([self.level_count[j] for j in index] + [1]))
        return replace(
            self,
            z=self.z[:, keep],
            missing=self.missing[:, keep],
            level=self.level[:, keep],
            categorical=self.categorical[keep],
            column_vectors=self.column_vectors[keep],
            level_vectors=self.level_vectors[keep][:, :levels],
            level_count=self.level_count[keep],
            columns=[self.columns[j] for j in index],
            texts=[self.texts[j] for j in index],
            level_names=[self.level_names[j] for j in index],
            criterion=self.criterion[keep],
            covariates=[self.covariates[j] for j in index],
        )

    def with_image_rows(self, image_rows: np.ndarray) -> CohortData:
        """The cohort with subject i read together with the scan of row `image_rows[i]`."""
        return replace(self, image_rows=np.asarray(image_rows, np.int64))

    def scan(self, row: int) -> np.ndarray:
        """(D, H, W) the scan read with table row `row`."""
        if self.image_rows is not None:
            return self.images[self.image_rows[row]]
        index = row if self.scan_rows is None else int(self.scan_rows[row])
        if index < 0:
            raise ValueError(f"subject {self.subjects[row]} of {self.name} has no scan")
        return self.images[index]

    def without_criteria(self) -> CohortData:
        """The cohort without the columns that define its label (schema `criterion: true`)."""
        return self.keep_columns(~self.criterion)

    def present_columns(self) -> np.ndarray:
        """(C,) bool: columns with at least one observed value."""
        return ~self.missing.all(axis=0)


def _normalise(
    values: np.ndarray, columns: list[dict]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, missing, level) from stored values (N, C) and the manifest's column entries."""
    missing = np.isnan(values)
    z = np.zeros_like(values, dtype=np.float32)
    level = np.full(values.shape, -1, dtype=np.int64)
    for j, column in enumerate(columns):
        v = values[:, j]
        present = ~missing[:, j]
        if column["type"] == "categorical":
            level[present, j] = v[present].astype(np.int64)
            continue
        if column.get("normalize") == "range" and column.get("range"):
            lo, hi = column["range"]
            z[present, j] = 2.0 * (v[present] - lo) / (hi - lo) - 1.0
        else:
            stats = column.get("train_stats", {})
            mean, std = stats.get("mean", 0.0), stats.get("std", 1.0) or 1.0
            z[present, j] = np.clip((v[present] - mean) / std, -ZSCORE_CLIP, ZSCORE_CLIP)
    return z, missing, level


def load_cohort(
    project: Project, name: str, cache: headers.HeaderCache, table_only: bool = False
) -> CohortData:
    """Read a cohort from the project; its header texts must already be in `cache`. Subjects
    without a scan are left out (and counted) unless `table_only`; a cohort without any scan
    is refused then."""
    from safetensors.numpy import load_file

    manifest = project.manifest(name)
    columns = manifest["columns"]
    values = load_file(str(project.cohort_file(name, TABULAR_FILE)))["values"]
    with open(project.cohort_file(name, SUBJECTS_FILE), newline="") as handle:
        rows = list(csv.DictReader(handle))
    index = cache.lookup()
    try:
        column_vectors = np.stack(
            [
                cache.vectors[
                    index[headers.text_key(headers.column_text(c["description"], c.get("unit")))]
                ]
                for c in columns
            ]
        )
        max_levels = max([len(c.get("levels", [])) for c in columns] + [1])
        level_vectors = np.zeros((len(columns), max_levels, cache.dim), dtype=np.float32)
        for j, c in enumerate(columns):
            for k, lv in enumerate(c.get("levels", [])):
                level_vectors[j, k] = cache.vectors[
                    index[headers.text_key(headers.level_text(c["description"], lv))]
                ]
    except KeyError:
        raise CitabError(
            f"cohort '{name}' has header texts missing from the "
            f"{cache.encoder_id} cache; run `citab embed-headers`"
        ) from None
    z, missing, level = _normalise(values, columns)
    scanned = np.array([bool(r["image"]) for r in rows], bool)
    if not scanned.any() and not table_only:
        raise CitabError(
            f"cohort '{name}' has no subject with a scan (all {len(rows)} were ingested as "
            "table-only subjects); leave it out of --cohorts"
        )
    cohort = CohortData(
        name=name,
        subjects=[r["subject"] for r in rows],
        splits=np.array([r["split"] for r in rows]),
        labels=[r["label"] or None for r in rows],
        z=z,
        missing=missing,
        level=level,
        categorical=np.array([c["type"] == "categorical" for c in columns]),
        column_vectors=column_vectors.astype(np.float32),
        level_vectors=level_vectors,
        level_count=np.array([len(c.get("levels", [])) for c in columns]),
        images=np.load(project.cohort_file(name, IMAGES_FILE), mmap_mode="r"),
        schema_fingerprint=manifest["schema"]["fingerprint"],
        columns=[c["name"] for c in columns],
        classes=list(manifest["classes"]),
        texts=[headers.column_text(c["description"], c.get("unit")) for c in columns],
        level_names=[list(c.get("levels", [])) for c in columns],
        criterion=np.array([bool(c.get("criterion", False)) for c in columns], bool),
        covariates=[c.get("covariate") for c in columns],
        scan_rows=None if scanned.all() else np.where(scanned, np.cumsum(scanned) - 1, -1),
    )
    return cohort if table_only else cohort.scanned_only()


def without_scan_notes(cohorts: list[CohortData]) -> list[str]:
    """One line per cohort that left subjects without a scan out."""
    return [
        f"cohort {c.name}: {c.without_scan} subject(s) without a scan left out (pretraining and "
        "evaluation read subjects with a scan)"
        for c in cohorts
        if c.without_scan
    ]


def identity_vocabulary(cohorts: list[CohortData]) -> list[str]:
    """What a learned column identity gives a vector of its own: every column name of the
    cohorts, and "name: level" for each level of a categorical column, sorted."""
    entries = set()
    for cohort in cohorts:
        for name, levels in zip(cohort.columns, cohort.level_names, strict=True):
            entries.add(name)
            entries.update(f"{name}: {level}" for level in levels)
    return sorted(entries)


class Collator:
    """Turns (cohort, row) pairs into model input on the host, as torch tensors."""

    def __init__(
        self,
        cohorts: list[CohortData],
        categorical_as_levels: bool = True,
        vocabulary: list[str] | None = None,
    ):
        """vocabulary: with a learned column identity, the model's entries; batches then carry
        each slot's ids (position in the vocabulary + 1; 0 for an entry it lacks)."""
        self.cohorts = cohorts
        self.categorical_as_levels = categorical_as_levels
        self.width = max(c.z.shape[1] for c in cohorts)
        self.max_levels = max(c.level_vectors.shape[1] for c in cohorts)
        self.dim = cohorts[0].column_vectors.shape[1]
        self.ids = None
        if vocabulary is not None:
            index = {entry: i + 1 for i, entry in enumerate(vocabulary)}
            self.ids = [_cohort_ids(c, index) for c in cohorts]

    @classmethod
    def for_model(cls, cohorts: list[CohortData], model: ModelConfig) -> Collator:
        """The collator that feeds a model of configuration `model`."""
        tabular = model.tabular
        learned = tabular.column_identity == "learned"
        return cls(
            cohorts, tabular.categorical == "levels", tabular.vocabulary if learned else None
        )

    def images(self, items: np.ndarray) -> np.ndarray:
        """items (B, 2) [cohort, row] -> (B, 1, D, H, W) float16, as stored (`image_layout`
        widens them to float32 on the device)."""
        return np.stack([self.cohorts[c].scan(r) for c, r in items]).astype(np.float16)[:, None]

    def scanned(self, items: np.ndarray) -> np.ndarray:
        """items (B, 2) [cohort, row] -> (B,) bool: the subject has a scan."""
        rows = [self.cohorts[c].scan_rows for c in items[:, 0]]
        return np.array([s is None or s[r] >= 0 for s, r in zip(rows, items[:, 1], strict=True)])

    def table(self, items: np.ndarray):
        """items (B, 2) [cohort, row] -> TabularBatch (on the CPU)."""
        import torch

        from citab_cli.core.layers.tabular_batch import TabularBatch

        b, c, e, lmax = len(items), self.width, self.dim, self.max_levels
        column_vectors = np.zeros((b, c, e), np.float32)
        level_vectors = np.zeros((b, c, e), np.float32)
        values = np.zeros((b, c), np.float32)
        categorical = np.zeros((b, c), bool)
        missing = np.zeros((b, c), bool)
        present = np.zeros((b, c), bool)
        level_index = np.full((b, c), -1, np.int64)
        candidates = np.zeros((b, c, lmax, e), np.float32)
        candidate_mask = np.zeros((b, c, lmax), bool)
        ids = _SlotIds(b, c, lmax) if self.ids is not None else None
        for i, (ci, row) in enumerate(items):
            cohort = self.cohorts[ci]
            n = cohort.z.shape[1]
            column_vectors[i, :n] = cohort.column_vectors
            present[i, :n] = True
            missing[i, :n] = cohort.missing[row]
            values[i, :n] = cohort.z[row]
            levels = cohort.level[row]
            cat = cohort.categorical & (levels >= 0)
            if self.categorical_as_levels:
                categorical[i, :n] = cohort.categorical
                level_vectors[i, :n][cat] = cohort.level_vectors[cat, levels[cat]]
            else:  # the paper's behaviour: a level is a number in [-1, 1]
                span = np.maximum(cohort.level_count - 1, 1)
                values[i, :n] = np.where(cat, 2.0 * levels / span - 1.0, values[i, :n])
            level_index[i, :n] = levels
            nl = cohort.level_vectors.shape[1]
            candidates[i, :n, :nl] = cohort.level_vectors
            candidate_mask[i, :n] = np.arange(lmax)[None, :] < cohort.level_count[:, None]
            if ids is not None:
                ids.fill(i, self.ids[ci], levels, cat)
        return TabularBatch(
            column_vectors=torch.from_numpy(column_vectors),
            level_vectors=torch.from_numpy(level_vectors),
            values=torch.from_numpy(values),
            categorical=torch.from_numpy(categorical),
            missing=torch.from_numpy(missing),
            present=torch.from_numpy(present),
            level_index=torch.from_numpy(level_index),
            level_candidates=torch.from_numpy(candidates),
            candidate_mask=torch.from_numpy(candidate_mask),
            **(ids.tensors() if ids is not None else {}),
        )


def _cohort_ids(cohort: CohortData, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """A cohort's vocabulary ids: per column (C,), and per column and level (C, L)."""
    columns = np.array([index.get(name, 0) for name in cohort.columns], np.int64)
    levels = np.zeros((len(cohort.columns), cohort.level_vectors.shape[1]), np.int64)
    for j, name in enumerate(cohort.columns):
        for k, level in enumerate(cohort.level_names[j]):
            levels[j, k] = index.get(f"{name}: {level}", 0)
    return columns, levels


class _SlotIds:
    """The id arrays of one batch, filled row by row."""

    def __init__(self, b: int, c: int, lmax: int):
        self.columns = np.zeros((b, c), np.int64)
        self.levels = np.zeros((b, c), np.int64)
        self.candidates = np.zeros((b, c, lmax), np.int64)

    def fill(self, i: int, ids, levels: np.ndarray, cat: np.ndarray) -> None:
        columns, level_ids = ids
        n = len(columns)
        self.columns[i, :n] = columns
        self.levels[i, :n][cat] = level_ids[cat, levels[cat]]
        self.candidates[i, :n, : level_ids.shape[1]] = level_ids

    def tensors(self) -> dict:
        import torch

        return {
            "column_ids": torch.from_numpy(self.columns),
            "level_ids": torch.from_numpy(self.levels),
            "candidate_ids": torch.from_numpy(self.candidates),
        }


def subjects_in(
    cohorts: list[CohortData], splits: set[str], scans: bool | None = True
) -> np.ndarray:
    """(M, 2) [cohort, row] of every subject whose split is in `splits`: with a scan (`scans`
    True, the default), without one (False) or either (None)."""

    def chosen(c: CohortData, s: str) -> np.ndarray:
        wanted = c.splits == s
        if scans is not None:
            wanted &= c.has_scan == scans
        return np.nonzero(wanted)[0]

    parts = [
        np.stack([np.full(len(rows), i), rows], 1)
        for i, c in enumerate(cohorts)
        for s in sorted(splits)
        for rows in [chosen(c, s)]
    ]
    parts = [p for p in parts if len(p)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 2), np.int64)


def check_images_match(cohorts: list[CohortData], shape: tuple[int, int, int], where: Path) -> None:
    """Every cohort's stored scans must have the grid the model expects."""
    for c in cohorts:
        if tuple(c.images.shape[1:]) != tuple(shape):
            raise CitabError(
                f"cohort '{c.name}' stores images of {tuple(c.images.shape[1:])} "
                f"but the model expects {tuple(shape)}; set image.shape in the "
                f"config to the project's grid ({where})"
            )
