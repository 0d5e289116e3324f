"""The attributions of `citab explain` for a batch of subjects: columns by expected gradients
(or integrated gradients from each column's mean token) through the cell tokens with the scan
held fixed, and a scan map (Grad-CAM, or occlusion) with the table held fixed, both for each
subject's predicted class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from citab_cli.core.evaluation.classifier import Classifier
from citab_cli.core.explain.attribution import (
    brain_mask,
    expected_gradients,
    grad_cam,
    integrated_gradients,
    mean_cell_tokens,
    occlusion,
    sample_baselines,
)
from citab_cli.core.model.citab import ImageOutput, TabularOutput
from citab_cli.core.runtime.dataset import Collator
from citab_cli.core.runtime.device import image_layout
from citab_cli.core.runtime.embedding import cohort_items

Baseline = Literal["sample", "mean"]
ScanMethod = Literal["gradcam", "occlusion"]
#: Subjects read per pass while collecting the baselines' tokens.
TOKEN_BATCH = 8
#: Baselines drawn from the train subjects for expected gradients; each path gets --steps /
#: PATH_SHARE midpoints, so expected gradients cost BASELINES / PATH_SHARE = 2 times integrated
#: gradients from the mean token at the same --steps.
BASELINES = 4
PATH_SHARE = 2
#: Occlusion patch: this fraction of the grid's smallest axis (at least 2 voxels).
PATCH_FRACTION = 1 / 8


@dataclass
class Attributions:
    """Explanations of a batch of subjects, for the class the model predicts."""

    cells: np.ndarray  # (B, C) attribution per column
    cams: np.ndarray  # (B, D, H, W) scan map in [0, 1], zero outside the brain
    notes: list[str]  # per subject: what the scan map shows when it is not the method's own
    predicted: np.ndarray  # (B,) class index
    logits: np.ndarray  # (B,) logit of the predicted class
    baseline_logits: np.ndarray  # (B,) the same logit from the baseline cells (mean over them)
    images: np.ndarray  # (B, 1, D, H, W) the scans as the model saw them


def join(parts: list[Attributions]) -> Attributions:
    """The attributions of consecutive passes as one."""
    return Attributions(
        cells=np.concatenate([p.cells for p in parts]),
        cams=np.concatenate([p.cams for p in parts]),
        notes=[note for p in parts for note in p.notes],
        predicted=np.concatenate([p.predicted for p in parts]),
        logits=np.concatenate([p.logits for p in parts]),
        baseline_logits=np.concatenate([p.baseline_logits for p in parts]),
        images=np.concatenate([p.images for p in parts]),
    )


@dataclass
class Settings:
    """How `attribute` works: baselines, steps, the scan method and its stage."""

    baseline: Baseline
    starts: torch.Tensor  # (C, D) mean tokens, or (K, C, D) sampled baselines
    steps: int
    scan_method: ScanMethod
    stage: int


@torch.no_grad()
def baseline_starts(
    model: Classifier,
    collator: Collator,
    rows: np.ndarray,
    device: torch.device,
    baseline: Baseline,
    seed: int = 0,
) -> torch.Tensor:
    """Where the columns' paths start, from the train subjects `rows`: each column's mean token
    (C, D), or BASELINES baselines (K, C, D) whose every cell is a real subject's."""
    tokenizer = model.backbone.tabular.tokenizer
    parts, observed = [], []
    for start in range(0, len(rows), TOKEN_BATCH):
        table = collator.table(cohort_items(rows[start : start + TOKEN_BATCH])).to(device)
        parts.append(tokenizer.cell_tokens(table).float())
        observed.append(table.present & ~table.missing)
    tokens, seen = torch.cat(parts), torch.cat(observed)
    if baseline == "mean":
        return mean_cell_tokens(tokens, seen)
    return sample_baselines(tokens, seen, BASELINES, seed)


def _column_attributions(model, cells, image: ImageOutput, present, predicted, settings):
    """(B, C) attributions of the predicted logit to the cell tokens, and the baseline logit."""
    backbone = model.backbone

    def f(c, feature_map, tokens, pooled, keep, target):
        image = ImageOutput(feature_map, tokens, pooled)
        out = model.head(backbone.embed_cells(image, c, keep))
        return out.gather(1, target[:, None])[:, 0]

    extra = (image.feature_map, image.tokens, image.pooled, present, predicted)
    mask = present[..., None].to(cells.dtype)
    if settings.baseline == "mean":
        start = settings.starts[None].to(cells.dtype).expand_as(cells) * mask
        values = integrated_gradients(f, cells, start, settings.steps, extra)
        with torch.no_grad():
            base = f(start, *extra)
    else:
        starts = settings.starts.to(cells.dtype) * mask[:1]
        per_path = max(4, settings.steps // PATH_SHARE)
        values = expected_gradients(f, cells, starts, per_path, extra)
        with torch.no_grad():
            base = torch.stack([f(s[None].expand_as(cells), *extra) for s in starts]).mean(0)
    return values * present, base


def attribute(
    model: Classifier, collator: Collator, rows: np.ndarray, device: torch.device, settings
) -> Attributions:
    """Columns by expected (or integrated) gradients with the scan held fixed, and the scan map
    by Grad-CAM over image stage `settings.stage` (or occlusion) with the table held fixed,
    masked to the brain; each for the subject's predicted class."""
    items = cohort_items(rows)
    images = image_layout(torch.from_numpy(collator.images(items)), device)
    table = collator.table(items).to(device)
    backbone = model.backbone
    with torch.no_grad():
        encoded = backbone.encode_tabular(table)
        image = backbone.encode_image(images)
        logits = model.head(backbone.fuse(encoded, image))
    predicted = logits.argmax(1)
    score = logits.gather(1, predicted[:, None])[:, 0]
    mask = brain_mask(images)

    def from_scan(scans, tokens, keep):
        return model.head(
            backbone.fuse(TabularOutput(tokens, keep, []), backbone.encode_image(scans))
        )

    extra = (encoded.tokens, encoded.keep)
    if settings.scan_method == "occlusion":
        patch = max(2, int(min(images.shape[2:]) * PATCH_FRACTION))
        scan = occlusion(from_scan, images, predicted, mask, patch, extra)
    else:
        layer = backbone.image.stages[settings.stage]
        scan = grad_cam(from_scan, layer, images, predicted, mask, settings.stage, extra)
    cells = backbone.tabular.tokenizer.cell_tokens(table).detach()
    values, base = _column_attributions(model, cells, image, table.present, predicted, settings)
    return Attributions(
        cells=values.detach().float().cpu().numpy(),
        cams=scan.maps.float().cpu().numpy(),
        notes=scan.notes,
        predicted=predicted.cpu().numpy(),
        logits=score.float().cpu().numpy(),
        baseline_logits=base.float().cpu().numpy(),
        images=images.float().cpu().numpy(),
    )
