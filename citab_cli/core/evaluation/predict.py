"""`citab predict`: a fine-tuned classifier applied to every subject of a cohort, labelled or
not, seen in fine-tuning or not.

One row per subject: cohort, subject id, split, label (empty when unlabelled), whether the
subject helped fit the classifier (its fine-tuning cohort's train and validation subjects did),
a probability per class and the predicted class. Where labels exist, a short summary scores the
subjects the classifier never learned from. Rows are written batch by batch, scans read from the
memory-mapped store, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from citab_cli.core.data.project import Project
from citab_cli.core.data.subject_file import Column, file_format, subject_file
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation import metrics
from citab_cli.core.evaluation.classifier import CLASSIFIER, classifier_from
from citab_cli.core.evaluation.classifier import predict as classify
from citab_cli.core.evaluation.embedding_export import (
    ID_COLUMNS,
    SPLITS,
    criteria_note,
    id_batch,
    provenance,
    select_rows,
)
from citab_cli.core.runtime.dataset import CohortData, Collator, identity_vocabulary
from citab_cli.core.runtime.device import model_layout, pick_device
from citab_cli.core.runtime.pretrained import LoadedCheckpoint, load_checkpoint, read_cohorts

#: Splits of the fine-tuning cohort whose subjects fitted the classifier (train) or chose its
#: epoch (val).
FITTED_SPLITS = ("train", "val")
#: Rows written to the file at a time.
WRITE_ROWS = 4096


@dataclass
class PredictPlan:
    """What `write_predictions` will do: checked before any file is opened."""

    loaded: LoadedCheckpoint
    cohort: CohortData
    rows: np.ndarray
    classes: list[str]
    output: Path
    device: torch.device
    split: str
    criteria: list[str]  # criterion columns left out, as the classifier was trained

    @property
    def total(self) -> int:
        """Subjects to classify."""
        return int(len(self.rows))


def _check_columns(loaded: LoadedCheckpoint, cohort: CohortData) -> None:
    """A classifier that tells columns apart by a learned identity reads only the columns (and
    levels) it was trained with; one that reads header text reads any column."""
    tabular = loaded.config.model.tabular
    if tabular.column_identity != "learned":
        return
    missing = sorted(set(identity_vocabulary([cohort])) - set(tabular.vocabulary))
    if missing:
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        shown = ", ".join(missing[:8]) + more
        raise CitabError(
            f"cohort '{cohort.name}' has columns or levels this classifier never saw (it tells "
            f"columns apart by learned identity, not header text): {shown}; rename them in the "
            "cohort's schema or use a classifier pretrained with column_identity: header"
        )


def _check_classes(cohort: CohortData, classes: list[str]) -> None:
    """Every label the cohort's subjects carry must be one of the classifier's classes."""
    found = {label for label in cohort.labels if label is not None}
    unknown = sorted(found - set(classes))
    if unknown:
        raise CitabError(
            f"cohort '{cohort.name}' has label(s) {', '.join(unknown)} that the classifier does "
            f"not know (its classes: {', '.join(classes)}); map them onto these classes in the "
            "schema's label: mapping and re-ingest"
        )


def plan_predict(
    project: Project,
    ckpt: str,
    cohort: str,
    output: Path,
    split: str = "all",
    device: str = "auto",
    message: Callable[[str], None] = lambda text: None,
) -> PredictPlan:
    """Check the classifier, the cohort's columns and classes, and the output file; nothing is
    written."""
    file_format(Path(output))
    if split not in SPLITS:
        raise CitabError(f"--split '{split}' is not one of {', '.join(SPLITS)}")
    loaded = load_checkpoint(project, ckpt, kinds=(CLASSIFIER,))
    (data,) = read_cohorts(project, loaded, [cohort], message, table_only=True)
    criteria: list[str] = []
    if loaded.without_criteria(False):
        criteria = criteria_note(data)
        data = data.without_criteria()  # as the classifier was fine-tuned
    _check_columns(loaded, data)
    classes = list(loaded.document["classes"])
    _check_classes(data, classes)
    rows = select_rows(data, split)
    if not len(rows):
        raise CitabError(f"no subject of '{cohort}' is in the {split} split")
    return PredictPlan(
        loaded, data, rows, classes, Path(output), pick_device(device), split, criteria
    )


def fitted(plan: PredictPlan, rows: np.ndarray) -> np.ndarray:
    """(len(rows),) bool: the subject helped fit the classifier."""
    if plan.cohort.name != plan.loaded.document.get("finetuned_on"):
        return np.zeros(len(rows), bool)
    return np.isin(plan.cohort.splits[rows], FITTED_SPLITS)


def summary(plan: PredictPlan, probabilities: np.ndarray, used: np.ndarray) -> dict | None:
    """Metrics over the labelled subjects with a scan the classifier never learned from (None
    if none)."""
    labels = [plan.cohort.labels[r] for r in plan.rows]
    scored = np.array([lab is not None for lab in labels]) & ~used
    scored &= plan.cohort.has_scan[plan.rows]
    if not scored.any():
        return None
    y = np.array([plan.classes.index(lab) for lab, s in zip(labels, scored, strict=True) if s])
    p = probabilities[scored]
    counts = {c: int((y == k).sum()) for k, c in enumerate(plan.classes)}
    return {
        "subjects": int(scored.sum()),
        "per_class": counts,
        "accuracy": metrics.accuracy(y, p),
        "balanced_accuracy": metrics.balanced_accuracy(y, p),
        "macro_auc": metrics.macro_auc(y, p),
        "left_out_as_fitted": int((used & np.array([lab is not None for lab in labels])).sum()),
    }


def _columns(classes: list[str]) -> list[Column]:
    return [
        *ID_COLUMNS,
        Column("used_in_training", "bool"),
        *(Column(f"p_{c}", "float32") for c in classes),
        Column("predicted", "string"),
    ]


def write_predictions(plan: PredictPlan, advance: Callable[[int], None] = lambda n: None) -> dict:
    """Classify every planned subject and write the file; returns its metadata, with the
    summary over labelled subjects. `advance` is told how many subjects each batch finished."""
    model = model_layout(classifier_from(plan.loaded.document, plan.loaded.tensors), plan.device)
    collator = Collator.for_model([plan.cohort], plan.loaded.config.model)
    metadata = provenance(plan.loaded, "predictions", plan.device)
    metadata.update(
        cohort=plan.cohort.name,
        split=plan.split,
        classes=plan.classes,
        finetuned_on=plan.loaded.document.get("finetuned_on"),
        cohort_seen_in_finetuning=plan.cohort.name == plan.loaded.document.get("finetuned_on"),
        columns_read=plan.cohort.columns,
        criterion_columns_left_out=plan.criteria,
    )
    # Probabilities first (scans streamed batch by batch; N x K numbers stay in memory), so
    # the file's metadata carries the summary; then the rows, written in batches.
    # A subject without a scan has no multimodal embedding: no probabilities, no prediction.
    probabilities = np.full((plan.total, len(plan.classes)), np.nan, np.float32)
    scanned = np.nonzero(plan.cohort.has_scan[plan.rows])[0]
    metadata["without_scan"] = int(plan.total - len(scanned))
    batch_size = plan.loaded.config.train.batch_size
    for start in range(0, len(scanned), batch_size):
        where = scanned[start : start + batch_size]
        probabilities[where] = classify(model, collator, plan.rows[where], batch_size, plan.device)
        advance(len(where))
    advance(plan.total - len(scanned))
    used = fitted(plan, plan.rows)
    metadata["summary"] = summary(plan, probabilities, used)
    with subject_file(plan.output, _columns(plan.classes), metadata) as writer:
        for start in range(0, plan.total, WRITE_ROWS):
            part = slice(start, start + WRITE_ROWS)
            p = probabilities[part]
            batch = id_batch(plan.cohort, plan.rows[part])
            batch["used_in_training"] = used[part]
            batch.update({f"p_{c}": p[:, k] for k, c in enumerate(plan.classes)})
            batch["predicted"] = [
                "" if np.isnan(row).any() else plan.classes[int(row.argmax())] for row in p
            ]
            writer.write(batch)
    return metadata
