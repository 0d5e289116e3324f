"""ITM: does this table belong to this image? Positives plus hard negatives mined from ITC."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hard_negatives(
    logits: torch.Tensor,
    generator: torch.Generator | None = None,
    groups: torch.Tensor | None = None,
    hardness: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one negative per row and per column of the ITC logits, never the positive.

    logits (B, B) image -> table; groups (B,) optional cohort ids: where a row has another
    member of its group, the negative is drawn within the group (a table from another cohort is
    trivially spotted by its columns). One batched multinomial, no host synchronisation.
    `hardness` scales the logits before the softmax: 1 draws in proportion to exp(ITC logit)
    (the hardest negatives most often), 0 draws uniformly.
    Returns (table index for each image (B,), image index for each table (B,)). Needs B >= 2.
    """
    b = logits.shape[0]
    scores = torch.cat([logits, logits.T]).detach().float() * hardness  # (2B, B)
    weights = torch.softmax(scores, dim=-1)
    not_self = ~torch.eye(b, dtype=torch.bool, device=logits.device).repeat(2, 1)
    weights = weights * not_self
    if groups is not None:
        same = (groups[:, None] == groups[None, :]).repeat(2, 1) & not_self
        within = weights * same
        has_mate = same.any(dim=1, keepdim=True)
        weights = torch.where(has_mate, within, weights)
    # Rows whose probability underflowed to zero fall back to uniform over the other rows.
    weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, not_self.float())
    picks = torch.multinomial(weights, 1, generator=generator).squeeze(1)  # (2B,)
    return picks[:b], picks[b:]


def itm_loss(scores: torch.Tensor, positives: int) -> torch.Tensor:
    """scores (N, 2) for N pairs whose first `positives` are true pairs, the rest negatives."""
    labels = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    labels[:positives] = 1
    return F.cross_entropy(scores.float(), labels)
