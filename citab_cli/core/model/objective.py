"""The pretraining objective: loss = (ITC + ITM) / 2 + lambda * MTR."""

from __future__ import annotations

import torch

from citab_cli.core.layers.prototype_mixture import balance_penalty
from citab_cli.core.layers.tabular_batch import TabularBatch
from citab_cli.core.losses.contrastive import Gather, itc_loss, itc_queue_loss, nt_xent_loss
from citab_cli.core.losses.matching import hard_negatives, itm_loss, match_auc
from citab_cli.core.losses.reconstruction import choose_cells, mtr_loss
from citab_cli.core.model import scarf
from citab_cli.core.model.citab import CITab, ImageOutput, TabularOutput
from citab_cli.core.model.momentum import MomentumEncoders
from citab_cli.core.precision import full_precision


def pretraining_loss(
    model: CITab,
    images: torch.Tensor,
    batch: TabularBatch,
    cohorts: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    gather: Gather | None = None,
    momentum: MomentumEncoders | None = None,
    views: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Losses for one batch: images (P, 1, D, H, W) already augmented; batch the raw rows
    (B >= P: its first P rows are the scans' subjects, the others subjects without a scan,
    which join only the tabular objectives, MTR and the P-MoLin balance).

    cohorts (B,) cohort ids, used to keep ITC and ITM negatives within a cohort when configured;
    momentum: momentum encoders with their queue (training only; the queue is updated here).
    Returns {"loss", "itc", "itm", "mtr", "balance"} and, with ITM on, "itm_accuracy" and
    "itm_auc" against the negatives ITM trains with (scalars; "loss" is what to minimise).
    views: with objective simclr, a second augmentation of the same scans (B, 1, D, H, W).
    """
    config = model.config.loss
    if config.objective == "scarf":
        return _scarf(model, batch, cohorts, generator, gather)
    if config.objective == "simclr":
        return _simclr(model, images, views, cohorts, gather)
    image = model.encode_image(images)
    everyone = model.encode_tabular(batch)
    pairs = images.shape[0]
    table, pair_batch = everyone, batch
    if pairs < batch.rows:  # ITC and ITM see the pairs alone
        table = TabularOutput(everyone.tokens[:pairs], everyone.keep[:pairs], [])
        pair_batch = batch.select(torch.arange(pairs, device=batch.values.device))
        cohorts = None if cohorts is None else cohorts[:pairs]
    image_features = model.image_projection(image.pooled)
    table_features = model.tabular_projection(table.cls)
    if momentum is None:
        groups = cohorts if config.itc_same_cohort else None
        itc, logits = itc_loss(
            image_features, table_features, config.itc_temperature, gather, groups
        )
    else:
        itc, logits = _queued_itc(momentum, model, images, pair_batch, image_features,
                                  table_features, config.itc_temperature, gather)  # fmt: skip

    extra = {}
    itm = torch.zeros((), device=images.device)
    if config.itm_weight > 0:
        itm, extra = _matching(model, image, table, logits, cohorts, generator)

    loss = (itc + config.itm_weight * itm) / 2
    mtr = torch.zeros((), device=images.device)
    if config.mtr_weight > 0:
        mtr = _reconstruction(model, batch, config.mtr_mask_fraction, config.mtr_source, generator)
        loss = loss + config.mtr_weight * mtr
    balance = torch.zeros((), device=images.device)
    if model.config.tabular.prototype_balance > 0:
        balance = torch.stack([balance_penalty(g, everyone.keep) for g in everyone.gates]).mean()
        loss = loss + model.config.tabular.prototype_balance * balance
    return {
        "loss": loss,
        "itc": itc.detach(),
        "itm": itm.detach(),
        "mtr": mtr.detach(),
        "balance": balance.detach(),
        **extra,
    }


def _scarf(
    model: CITab,
    batch: TabularBatch,
    cohorts: torch.Tensor | None,
    generator: torch.Generator | None,
    gather: Gather | None,
) -> dict[str, torch.Tensor]:
    """The tabular-only baseline: each row and its corrupted copy pulled together (scarf.py);
    the image-table losses are zero (the scan is not read)."""
    config = model.config.loss
    corrupted, _ = scarf.corrupt(batch, config.scarf_corruption, cohorts, generator)
    anchor = model.tabular_projection(model.encode_tabular(batch).cls)
    view = model.tabular_projection(model.encode_tabular(corrupted).cls)
    groups = cohorts if config.itc_same_cohort else None
    loss, _ = itc_loss(anchor, view, config.itc_temperature, gather, groups)
    zero = torch.zeros((), device=loss.device)
    return {"loss": loss, "itc": zero, "itm": zero, "mtr": zero, "balance": zero,
            "scarf": loss.detach()}  # fmt: skip


def _simclr(
    model: CITab,
    images: torch.Tensor,
    views: torch.Tensor | None,
    cohorts: torch.Tensor | None,
    gather: Gather | None,
) -> dict[str, torch.Tensor]:
    """The image-only baseline: two augmentations of each scan pulled together against the
    other scans' (SimCLR's NT-Xent on the pooled image features through the image projection);
    the table is not read, the image-table losses are zero."""
    if views is None:
        raise ValueError("objective simclr needs a second view of the scans")
    config = model.config.loss
    pooled = model.encode_image(torch.cat([images, views])).pooled  # one pass: BatchNorm sees both
    features = model.image_projection(pooled)
    b = images.shape[0]
    groups = cohorts[:b] if cohorts is not None and config.itc_same_cohort else None
    loss = nt_xent_loss(features[:b], features[b:], config.itc_temperature, gather, groups)
    zero = torch.zeros((), device=loss.device)
    return {"loss": loss, "itc": zero, "itm": zero, "mtr": zero, "balance": zero,
            "simclr": loss.detach()}  # fmt: skip


def _matching(
    model: CITab,
    image: ImageOutput,
    table: TabularOutput,
    logits: torch.Tensor,
    cohorts: torch.Tensor | None,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """ITM loss over true pairs and hard negatives, and how well the head tells them apart:
    its balanced accuracy and its threshold-free AUC."""
    b = logits.shape[0]
    loss = model.config.loss
    # ITC within cohorts masks the other cohorts' logits; the draw must keep that mask whatever
    # the hardness (scaling by 0 would otherwise make them candidates again)
    within = loss.itm_same_cohort or loss.itc_same_cohort
    groups = cohorts if within else None
    table_for_image, image_for_table = hard_negatives(logits, generator, groups, loss.itm_hardness)
    # Three sets of pairs in one fusion pass: true pairs, each image with another table, each
    # table with another image.
    fused_tables = TabularOutput(
        tokens=torch.cat([table.tokens, table.tokens[table_for_image], table.tokens]),
        keep=torch.cat([table.keep, table.keep[table_for_image], table.keep]),
        gates=[],
    )
    fused_images = ImageOutput(
        feature_map=image.feature_map,
        tokens=torch.cat([image.tokens, image.tokens, image.tokens[image_for_table]]),
        pooled=image.pooled,
    )
    fused = model.fuse(fused_tables, fused_images)
    with full_precision(fused):  # match scores in float32, also under bf16 autocast
        scores = model.matching_head(fused.float())  # (3B, 2)
    itm = itm_loss(scores, positives=b)
    matched = scores.detach().argmax(1) == (torch.arange(3 * b, device=scores.device) < b)
    # balanced: the mean of the accuracy on true pairs and on negatives (chance 0.5)
    accuracy = (matched[:b].float().mean() + matched[b:].float().mean()) / 2
    # a pair's cohort: its image's (true pairs, other tables), its table's (other images)
    pair_cohorts = None if cohorts is None else cohorts.repeat(3)
    return itm, {"itm_accuracy": accuracy, "itm_auc": match_auc(scores, b, pair_cohorts)}


def _queued_itc(
    momentum: MomentumEncoders,
    model: CITab,
    images: torch.Tensor,
    batch: TabularBatch,
    image_features: torch.Tensor,
    table_features: torch.Tensor,
    temperature: float,
    gather: Gather | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ITC against the momentum keys of the global batch and the queue; then the queue takes
    the batch's keys (every rank's, when gathered; never non-finite ones)."""
    momentum.follow(model)
    image_keys, table_keys = momentum.keys(images, batch)
    offset = 0
    if gather is not None:
        image_keys, offset = gather(image_keys)
        table_keys, _ = gather(table_keys)
    itc, logits = itc_queue_loss(
        image_features,
        table_features,
        image_keys,
        table_keys,
        momentum.image_queue.clone(),
        momentum.table_queue.clone(),
        temperature,
        offset,
    )
    if torch.isfinite(image_keys).all() and torch.isfinite(table_keys).all():
        momentum.enqueue(image_keys, table_keys)
    return itc, logits


def _reconstruction(
    model: CITab,
    batch: TabularBatch,
    fraction: float,
    source: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    observed = batch.present & ~batch.missing
    masked = choose_cells(observed, fraction, generator)
    encoded = model.encode_tabular(batch.with_missing(masked))
    if source == "cls":
        # the CLS alone carries the row: each cell is rebuilt from it and the column's meaning
        meaning = model.tabular.tokenizer.meaning(batch)  # (B, C, D)
        cls = encoded.cls[:, None].expand_as(meaning)  # (B, C, D)
        out = model.cell_decoder(torch.cat([cls, meaning.to(cls.dtype)], -1))  # (B, C, D)
    else:
        out = encoded.tokens[:, 1:]  # (B, C, D) the masked cells' own output tokens
    numeric_mask = masked & ~batch.categorical
    level_mask = masked & batch.categorical
    if batch.level_candidates is not None and batch.candidate_mask is not None:
        logits = model.tabular.tokenizer.level_logits(out, batch)  # (B, C, L)
        logits = logits.masked_fill(~batch.candidate_mask, float("-inf"))
        level_target = batch.level_index
        level_mask = level_mask & (level_target >= 0)
    else:
        logits = torch.zeros(*masked.shape, 1, device=out.device)
        level_target = torch.zeros_like(masked, dtype=torch.long)
        level_mask = torch.zeros_like(masked)
    prediction = model.numeric_head(out).squeeze(-1)  # (B, C)
    return mtr_loss(prediction, batch.values, numeric_mask, logits, level_target, level_mask)


class PretrainingObjective(torch.nn.Module):
    """The model and its pretraining loss as one module, so data parallelism wraps the whole
    computation (its gradient synchronisation is set up in forward)."""

    def __init__(self, model: CITab):
        super().__init__()
        self.model = model
        loss = model.config.loss
        self.momentum = (
            MomentumEncoders(model, loss.queue_size, loss.momentum, model.config.projection_dim)
            if loss.queue_size > 0
            else None
        )

    def forward(
        self,
        images: torch.Tensor,
        batch: TabularBatch,
        cohorts: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        gather: Gather | None = None,
        views: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The pretraining losses of one batch (see `pretraining_loss`)."""
        return pretraining_loss(
            self.model, images, batch, cohorts, generator, gather, self.momentum, views
        )
