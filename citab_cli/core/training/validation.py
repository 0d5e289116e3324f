"""Validation during pretraining: the SSL losses on the val split (no augmentation) and a quick
linear probe of the multimodal embedding."""

from __future__ import annotations

import math

import numpy as np
import torch

from citab_cli.core.model.citab import CITab
from citab_cli.core.model.objective import pretraining_loss
from citab_cli.core.training.dataset import CohortData, Collator, subjects_in
from citab_cli.core.training.embedding import cohort_items, embed_subjects
from citab_cli.core.training.precision import autocast, image_layout
from citab_cli.core.training.sampling import step_generator

#: The validation scores a best checkpoint records.
BEST_KEYS = ("step", "epoch", "val_loss", "val_probe_bacc")


@torch.no_grad()
def validate(
    model: CITab,
    collator: Collator,
    cohorts: list[CohortData],
    batch_size: int,
    device: torch.device,
    seed: int,
) -> dict:
    """Validation losses (no augmentation, in the training precision) and a quick linear probe
    of the embeddings."""
    model.eval()
    val = subjects_in(cohorts, {"val"})
    totals: dict[str, float] = {}
    batches = 0
    for start in range(0, len(val), batch_size):
        chunk = val[start : start + batch_size]
        if len(chunk) < 2:
            continue
        images = image_layout(torch.from_numpy(collator.images(chunk)), device)
        with autocast(device):
            losses = pretraining_loss(
                model,
                images,
                collator.table(chunk).to(device),
                torch.as_tensor(chunk[:, 0], device=device),
                step_generator(seed, start, device),
            )
        for key in ("loss", "itc", "itm"):
            totals[key] = totals.get(key, 0.0) + float(losses[key])
        batches += 1
    scores = {f"val_{k}": v / max(batches, 1) for k, v in totals.items()}
    if not batches:
        scores["val_loss"] = math.inf
    probe = quick_probe(model, collator, cohorts, batch_size, device)
    if probe is not None:
        scores["val_probe_bacc"] = probe
    model.train()
    return scores


def quick_probe(
    model: CITab,
    collator: Collator,
    cohorts: list[CohortData],
    batch_size: int,
    device: torch.device,
) -> float | None:
    """Mean over cohorts of the val balanced accuracy of a logistic regression fitted on the
    train embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = []
    for ci, cohort in enumerate(cohorts):
        labelled = np.array([label is not None for label in cohort.labels])
        rows = {s: np.nonzero(labelled & (cohort.splits == s))[0] for s in ("train", "val")}
        labels = np.array([label or "" for label in cohort.labels])
        if len(rows["val"]) == 0 or len(set(labels[rows["train"]])) < 2:
            continue
        items = cohort_items(np.concatenate([rows["train"], rows["val"]]), ci)
        embeddings = embed_subjects(model, collator, items, batch_size, device)["multimodal"]
        n_train = len(rows["train"])
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(embeddings[:n_train], labels[rows["train"]])
        predicted = probe.predict(embeddings[n_train:])
        scores.append(balanced_accuracy_score(labels[rows["val"]], predicted))
    return float(np.mean(scores)) if scores else None


def better(scores: dict, best: dict) -> bool:
    """Whether validation `scores` beat the `best` so far (probe first, then loss)."""
    if not best:
        return True
    if "val_probe_bacc" in scores and "val_probe_bacc" in best:
        return scores["val_probe_bacc"] > best["val_probe_bacc"] or (
            scores["val_probe_bacc"] == best["val_probe_bacc"]
            and scores["val_loss"] < best["val_loss"]
        )
    return scores["val_loss"] < best["val_loss"]


def describe(scores: dict) -> str:
    text = f"validation after epoch {scores['epoch']}: loss {scores['val_loss']:.4f}"
    if "val_probe_bacc" in scores:
        text += f", probe balanced accuracy {scores['val_probe_bacc']:.3f}"
    return text
