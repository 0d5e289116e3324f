"""Embeddings of subjects from a frozen model: what validation, probes and explanations read."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from citab_cli.core.model.citab import CITab, ImageOutput, TabularOutput
from citab_cli.core.runtime.dataset import Collator
from citab_cli.core.runtime.device import autocast, image_layout

#: The embeddings `embed_subjects` returns, by name.
EMBEDDINGS = ("multimodal", "tabular", "image")


def cohort_items(rows: np.ndarray, cohort: int = 0) -> np.ndarray:
    """(N,) row indices of one cohort -> (N, 2) [cohort, row] items for a `Collator`."""
    rows = np.asarray(rows, dtype=np.int64)
    return np.stack([np.full(len(rows), cohort, np.int64), rows], 1)


@torch.no_grad()
def encoded_batches(
    model: CITab, collator: Collator, items: np.ndarray, batch_size: int, device: torch.device
) -> Iterator[tuple[ImageOutput, TabularOutput]]:
    """What the image and tabular encoders make of `items` (M, 2), batch by batch, in order;
    on CUDA as in training (bf16 autocast, channels-last)."""
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        images = image_layout(torch.from_numpy(collator.images(chunk)), device)
        with autocast(device):
            image = model.encode_image(images)
            table = model.encode_tabular(collator.table(chunk).to(device))
        yield image, table


@torch.no_grad()
def embedding_batches(
    model: CITab, collator: Collator, items: np.ndarray, batch_size: int, device: torch.device
) -> Iterator[dict[str, np.ndarray]]:
    """Frozen embeddings of `items` (M, 2), batch by batch, in order: multimodal CLS (B, D),
    tabular CLS (B, D) and pooled image (B, C_img), as float32 numpy arrays. A subject without
    a scan has its tabular CLS and NaN for the two embeddings that read a scan. The model is in
    evaluation mode while the batches are drawn. On CUDA the forward pass runs as in training
    (bf16 autocast, channels-last)."""
    was_training = model.training
    model.eval()
    try:
        if collator.scanned(items).all():
            for image, table in encoded_batches(model, collator, items, batch_size, device):
                with autocast(device):
                    out = {"multimodal": model.fuse(table, image), "tabular": table.cls,
                           "image": image.pooled}  # fmt: skip
                yield {key: out[key].float().cpu().numpy() for key in EMBEDDINGS}
        else:
            for start in range(0, len(items), batch_size):
                yield _partly_scanned(model, collator, items[start : start + batch_size], device)
    finally:
        model.train(was_training)


def _partly_scanned(model: CITab, collator: Collator, chunk: np.ndarray, device) -> dict:
    """The embeddings of a batch some of whose subjects have no scan (NaN where one is read)."""
    has = collator.scanned(chunk)
    with autocast(device):
        table = model.encode_tabular(collator.table(chunk).to(device))
    out = {"tabular": table.cls.float().cpu().numpy()}
    out["multimodal"] = np.full((len(chunk), model.config.tabular.dim), np.nan, np.float32)
    out["image"] = np.full((len(chunk), model.image.out_channels), np.nan, np.float32)
    if has.any():
        images = image_layout(torch.from_numpy(collator.images(chunk[has])), device)
        index = torch.as_tensor(np.nonzero(has)[0], device=table.tokens.device)
        scanned = TabularOutput(table.tokens[index], table.keep[index], [])
        with autocast(device):
            image = model.encode_image(images)
            out["multimodal"][has] = model.fuse(scanned, image).float().cpu().numpy()
            out["image"][has] = image.pooled.float().cpu().numpy()
    return out


def embed_subjects(
    model: CITab, collator: Collator, items: np.ndarray, batch_size: int, device: torch.device
) -> dict[str, np.ndarray]:
    """Frozen embeddings of `items` (M, 2), in order, as whole arrays (see `embedding_batches`)."""
    parts: dict[str, list[np.ndarray]] = {key: [] for key in EMBEDDINGS}
    for batch in embedding_batches(model, collator, items, batch_size, device):
        for key in parts:
            parts[key].append(batch[key])
    return {k: np.concatenate(v) if v else np.zeros((0, 0)) for k, v in parts.items()}


@torch.no_grad()
def reestimate_batchnorm(
    model: CITab, collator: Collator, items: np.ndarray, batch_size: int, device: torch.device
) -> int:
    """Replace the running statistics of every BatchNorm layer of `model` with those of the
    scans of `items` (M, 2): the layers reset, then a cumulative average over batches of the
    image encoder in training mode, without gradients or augmentation (as
    `torch.optim.swa_utils.update_bn` does). A pretrained network and a random one treated
    this way are compared on equal terms: neither keeps statistics the other lacks. Returns
    the number of layers re-estimated."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers or len(items) < 2:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over the batches
    was_training = model.training
    model.train()
    try:
        # batches of at least two scans: the last one joins its neighbour
        for chunk in np.array_split(items, max(1, len(items) // batch_size)):
            images = image_layout(torch.from_numpy(collator.images(chunk)), device)
            with autocast(device):
                model.encode_image(images)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.train(was_training)
    return len(layers)
