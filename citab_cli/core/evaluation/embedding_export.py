"""`citab embed`: every subject's embeddings in a file for the user's own statistics.

One row per subject: cohort, subject id, split, label (empty when unlabelled), then the
multimodal embedding, the tabular CLS and the pooled image features, each under column names
that say which. The numbers are the ones `citab probe` fits on: the same frozen forward pass,
batch by batch, one cohort at a time. Scans are read batch by batch from the memory-mapped
store and rows are written as they come, so memory stays bounded whatever the cohort's size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from citab_cli import __version__
from citab_cli.core.data.project import Project
from citab_cli.core.data.subject_file import Column, file_format, subject_file
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation import evaluation_report
from citab_cli.core.runtime.dataset import CohortData, Collator
from citab_cli.core.runtime.device import describe_device, model_layout, pick_device
from citab_cli.core.runtime.embedding import EMBEDDINGS, cohort_items, embedding_batches
from citab_cli.core.runtime.pretrained import LoadedCheckpoint, load_checkpoint, read_cohorts

#: What --split accepts.
SPLITS = ("all", "train", "val", "test")
#: The columns that name each row, before any number.
ID_COLUMNS = [Column(name, "string") for name in ("cohort", "subject", "split", "label")]
ID_COLUMNS.append(Column("has_scan", "bool"))  # False: the embeddings that read a scan are NaN
#: Column-name prefix of each embedding, and what it is.
EMBEDDING_COLUMNS = {
    "multimodal": ("multimodal", "CITab multimodal embedding (the fusion transformer's CLS)"),
    "tabular": ("tabular_cls", "the tabular encoder's CLS token"),
    "image": ("image_pooled", "the image encoder's globally pooled features"),
}


def select_rows(cohort: CohortData, split: str) -> np.ndarray:
    """Row indices of `cohort` in `split` (one of SPLITS; "all": every row), in stored order."""
    if split == "all":
        return np.arange(cohort.size)
    return np.nonzero(cohort.splits == split)[0]


def id_batch(cohort: CohortData, rows: np.ndarray) -> dict[str, list]:
    """The identifying columns of `rows` of `cohort`."""
    has_scan = cohort.has_scan
    return {
        "cohort": [cohort.name] * len(rows),
        "subject": [cohort.subjects[r] for r in rows],
        "split": [str(cohort.splits[r]) for r in rows],
        "label": [cohort.labels[r] for r in rows],
        "has_scan": [bool(has_scan[r]) for r in rows],
    }


def provenance(loaded: LoadedCheckpoint, kind: str, device: torch.device) -> dict:
    """What every exported file records of how it was made."""
    return {
        "kind": kind,
        "citab_version": __version__,
        "created": evaluation_report.created(),
        "checkpoint": str(loaded.path),
        "run": loaded.run,
        "step": loaded.document.get("step"),
        "header_encoder": loaded.document["header_encoder"]["id"],
        "device": describe_device(device),
    }


def criteria_note(cohort: CohortData) -> list[str]:
    """Names of the columns of `cohort` that define its label (schema criterion: true)."""
    return [c for c, flag in zip(cohort.columns, cohort.criterion, strict=True) if flag]


@dataclass
class ExportPlan:
    """What `write_embeddings` will do: checked before any file is opened."""

    loaded: LoadedCheckpoint
    cohorts: list[CohortData]
    rows: dict[str, np.ndarray]  # cohort -> rows to embed
    output: Path
    device: torch.device
    split: str
    exclude_criteria: bool
    criteria: dict[str, list[str]]  # cohort -> criterion columns left out (when excluded)

    @property
    def total(self) -> int:
        """Subjects to embed, over all cohorts."""
        return int(sum(len(r) for r in self.rows.values()))


def plan_export(
    project: Project,
    ckpt: str,
    output: Path,
    cohorts: list[str] | None = None,
    split: str = "all",
    device: str = "auto",
    exclude_criteria: bool = False,
    message: Callable[[str], None] = lambda text: None,
) -> ExportPlan:
    """Check the checkpoint, cohorts, split and output file; nothing is written."""
    file_format(Path(output))
    if split not in SPLITS:
        raise CitabError(f"--split '{split}' is not one of {', '.join(SPLITS)}")
    loaded = load_checkpoint(project, ckpt)
    names = cohorts or project.cohorts()
    if not names:
        raise CitabError(f"{project.root} has no ingested cohort; run `citab ingest` first")
    data = read_cohorts(project, loaded, list(dict.fromkeys(names)), message, table_only=True)
    exclude_criteria = loaded.without_criteria(exclude_criteria)
    criteria = {c.name: criteria_note(c) if exclude_criteria else [] for c in data}
    if exclude_criteria:
        data = [c.without_criteria() for c in data]
    rows = {c.name: select_rows(c, split) for c in data}
    if not any(len(r) for r in rows.values()):
        raise CitabError(f"no subject of {', '.join(rows)} is in the {split} split")
    target = pick_device(device)
    return ExportPlan(loaded, data, rows, Path(output), target, split, exclude_criteria, criteria)


def embedding_columns(dims: dict[str, int]) -> list[Column]:
    """The float columns of each embedding, e.g. multimodal_000 ... multimodal_127."""
    columns = []
    for key in EMBEDDINGS:
        prefix, _ = EMBEDDING_COLUMNS[key]
        width = max(3, len(str(dims[key] - 1)))
        columns += [Column(f"{prefix}_{i:0{width}d}", "float32") for i in range(dims[key])]
    return columns


def _metadata(plan: ExportPlan, dims: dict[str, int]) -> dict:
    document = provenance(plan.loaded, "embeddings", plan.device)
    document.update(
        split=plan.split,
        exclude_criteria=plan.exclude_criteria,
        cohorts={
            c.name: {
                "subjects": int(len(plan.rows[c.name])),
                "without_scan": int((~c.has_scan[plan.rows[c.name]]).sum()),
                "seen_in_pretraining": plan.loaded.seen(c.name),
                "columns_read": c.columns,
                "criterion_columns_left_out": plan.criteria[c.name],
            }
            for c in plan.cohorts
        },
        embeddings={
            key: {
                "columns": f"{EMBEDDING_COLUMNS[key][0]}_*",
                "dimensions": dims[key],
                "what": EMBEDDING_COLUMNS[key][1],
            }
            for key in EMBEDDINGS
        },  # fmt: skip
    )
    return document


def _dims(model) -> dict[str, int]:
    """Width of each embedding of `model`."""
    config = model.config
    return {
        "multimodal": config.tabular.dim,
        "tabular": config.tabular.dim,
        "image": model.image.out_channels,
    }


def write_embeddings(plan: ExportPlan, advance: Callable[[int], None] = lambda n: None) -> dict:
    """Embed every planned subject and write the file; returns its metadata. `advance` is
    told how many subjects each batch finished."""
    model = model_layout(plan.loaded.model(), plan.device)
    dims = _dims(model)
    metadata = _metadata(plan, dims)
    columns = embedding_columns(dims)
    batch_size = plan.loaded.config.train.batch_size
    with subject_file(plan.output, [*ID_COLUMNS, *columns], metadata) as writer:
        for cohort in plan.cohorts:
            rows = plan.rows[cohort.name]
            collator = Collator.for_model([cohort], plan.loaded.config.model)
            start = 0
            items = cohort_items(rows)
            for out in embedding_batches(model, collator, items, batch_size, plan.device):
                chunk = rows[start : start + len(out["multimodal"])]
                start += len(chunk)
                values = np.concatenate([out[key] for key in EMBEDDINGS], axis=1)
                batch = id_batch(cohort, chunk)
                batch.update({c.name: values[:, j] for j, c in enumerate(columns)})
                writer.write(batch)
                advance(len(chunk))
    return metadata
