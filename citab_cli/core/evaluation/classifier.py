"""A diagnosis classifier on CITab's multimodal embedding, and how it is trained: class-balanced
cross-entropy with early stopping on validation balanced accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from citab_cli.core.evaluation import metrics
from citab_cli.core.evaluation.labels import LabelLayout
from citab_cli.core.model.citab import CITab, build_model
from citab_cli.core.precision import full_precision
from citab_cli.core.runtime import checkpoint_file
from citab_cli.core.runtime.augment import AugmentConfig, augment, sample_parameters
from citab_cli.core.runtime.dataset import Collator
from citab_cli.core.runtime.device import autocast, image_layout
from citab_cli.core.runtime.embedding import cohort_items
from citab_cli.core.runtime.run_config import PretrainConfig

Strategy = Literal["frozen", "trainable"]
#: The backbone learns at this fraction of the head's rate when trained end to end.
BACKBONE_RATE = 0.1
#: Stream id that separates the epoch order's generator from other uses of (seed, epoch).
EPOCH_ORDER_STREAM = 11
#: The checkpoint kind of a saved classifier.
CLASSIFIER = checkpoint_file.CLASSIFIER


class Classifier(nn.Module):
    """CITab's multimodal embedding followed by a linear diagnosis head."""

    def __init__(self, backbone: CITab, classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.tabular.dim, classes)

    def forward(self, images: torch.Tensor, table) -> torch.Tensor:
        """-> logits (B, classes)."""
        embedding = self.backbone(images, table)["multimodal"]
        with full_precision(embedding):  # class scores in float32, also under bf16 autocast
            return self.head(embedding.float())


@dataclass
class Trained:
    """A trained classifier: its weights at the best validation epoch and the validation curve."""

    state: dict[str, torch.Tensor]  # the classifier at its best validation epoch
    curve: list[float]  # validation balanced accuracy per epoch
    best_epoch: int


def _mode(model: Classifier, strategy: Strategy) -> None:
    """Training mode, except a frozen backbone, which stays in evaluation mode (its BatchNorm
    statistics never move)."""
    model.train()
    if strategy == "frozen":
        model.backbone.eval()


@torch.no_grad()
def predict(
    model: Classifier, collator: Collator, rows: np.ndarray, batch: int, device: torch.device
) -> np.ndarray:
    """Class probabilities (N, K) for cohort rows, no augmentation."""
    was = model.training
    model.eval()
    out = []
    for start in range(0, len(rows), batch):
        items = cohort_items(rows[start : start + batch])
        images = image_layout(torch.from_numpy(collator.images(items)), device)
        with autocast(device):
            logits = model(images, collator.table(items).to(device))
        out.append(torch.softmax(logits.float(), -1))
    model.train(was)
    return torch.cat(out).cpu().numpy()


def _optimizer(model: Classifier, strategy: Strategy, learning_rate: float):
    if strategy == "frozen":
        model.backbone.requires_grad_(False)
        groups = [{"params": model.head.parameters(), "lr": learning_rate}]
    else:
        groups = [
            {"params": model.head.parameters(), "lr": learning_rate},
            {"params": model.backbone.parameters(), "lr": learning_rate * BACKBONE_RATE},
        ]
    return torch.optim.Adam(groups)


def balanced_loss(y: np.ndarray, classes: int, device: torch.device) -> nn.CrossEntropyLoss:
    """Cross-entropy weighting each class inversely to its count in `y`."""
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (classes * np.maximum(counts, 1)), 0.0)
    return nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32, device=device))


def train_classifier(
    model: Classifier,
    strategy: Strategy,
    collator: Collator,
    layout: LabelLayout,
    train_rows: np.ndarray,
    config: AugmentConfig,
    epochs: int,
    batch: int,
    learning_rate: float,
    patience: int,
    seed: int,
    device: torch.device,
) -> Trained:
    """Cross-entropy (class-balanced) with early stopping on validation balanced accuracy."""
    optimizer = _optimizer(model, strategy, learning_rate)
    loss_fn = balanced_loss(layout.y[train_rows], len(layout.classes), device)
    val_rows, val_y = layout.rows["val"], layout.labels("val")
    best = Trained({k: v.detach().clone() for k, v in model.state_dict().items()}, [], 0)
    best_score, waited = -1.0, 0
    for epoch in range(epochs):
        _mode(model, strategy)
        rng = np.random.default_rng([seed, epoch, EPOCH_ORDER_STREAM])
        order = train_rows[rng.permutation(len(train_rows))]
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            items = cohort_items(rows)
            images = image_layout(torch.from_numpy(collator.images(items)), device)
            images = augment(images, sample_parameters(config, seed, epoch, rows), config)
            target = torch.as_tensor(layout.y[rows], device=device)
            with autocast(device):
                logits = model(images, collator.table(items).to(device))
            loss = loss_fn(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        score = (
            metrics.balanced_accuracy(val_y, predict(model, collator, val_rows, batch, device))
            if len(val_rows)
            else -float(loss.detach())
        )
        best.curve.append(score)
        if score > best_score:
            best_score, waited = score, 0
            best.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best.best_epoch = epoch + 1
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best.state)
    return best


def load_classifier(path: Path) -> tuple[Classifier, dict]:
    """A classifier saved by `citab finetune`, in evaluation mode, and its metadata."""
    tensors, document = checkpoint_file.load(path, kind=CLASSIFIER)
    model = classifier_from(document, tensors)
    return model, document


def classifier_from(document: dict, tensors: dict[str, torch.Tensor]) -> Classifier:
    """A saved classifier rebuilt from its checkpoint document and tensors, in eval mode."""
    config = PretrainConfig.model_validate(document["config"])
    model = Classifier(build_model(config.model), len(document["classes"]))
    model.load_state_dict(tensors)
    return model.eval()
