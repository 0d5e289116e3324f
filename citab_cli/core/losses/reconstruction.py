"""MTR: reconstruct masked table cells (numeric: squared error on z; categorical: cross-entropy
over the column's level embeddings). Computed on the full (B, C) grid with masks, so nothing
waits on the host."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def choose_cells(
    observed: torch.Tensor, fraction: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random `fraction` of the observed cells: observed (B, C) bool -> mask (B, C) bool."""
    noise = torch.rand(observed.shape, generator=generator, device=observed.device)
    return (noise < fraction) & observed


def mtr_loss(
    numeric_prediction: torch.Tensor,
    numeric_target: torch.Tensor,
    numeric_mask: torch.Tensor,
    level_logits: torch.Tensor,
    level_target: torch.Tensor,
    level_mask: torch.Tensor,
) -> torch.Tensor:
    """Mean of the numeric and categorical reconstruction losses over their masked cells.

    numeric_prediction, numeric_target (B, C); level_logits (B, C, L) with -inf for levels a
    column does not have; level_target (B, C) long; *_mask (B, C) bool. A part with no masked
    cell contributes nothing.
    """
    numeric_weight = numeric_mask.float()
    squared = (numeric_prediction.float() - numeric_target.float()) ** 2 * numeric_weight
    numeric = squared.sum() / numeric_weight.sum().clamp_min(1.0)
    level_weight = level_mask.float()
    b, c, levels = level_logits.shape
    safe_target = torch.where(level_mask, level_target, torch.zeros_like(level_target))
    safe_logits = torch.where(
        level_mask[..., None],
        level_logits.float(),
        torch.zeros_like(level_logits, dtype=torch.float),
    )
    ce = F.cross_entropy(
        safe_logits.reshape(b * c, levels), safe_target.reshape(-1), reduction="none"
    ).reshape(b, c)
    categorical = (ce * level_weight).sum() / level_weight.sum().clamp_min(1.0)
    parts = (numeric_weight.sum() > 0).float() + (level_weight.sum() > 0).float()
    return (numeric + categorical) / parts.clamp_min(1.0)
