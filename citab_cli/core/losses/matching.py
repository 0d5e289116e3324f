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


def match_auc(
    scores: torch.Tensor, positives: int, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """How often a true pair's match score beats a negative's (ties count half): the area under
    the ROC curve of the head, chance 0.5, independent of any threshold. With one true pair to
    two negatives a head that has learned a little still predicts "no match" for every pair
    (its balanced accuracy stays at 0.5); this shows what it has learned.

    scores (N, 2) as for `itm_loss`; groups (N,) optional cohort of each pair: a true pair is
    then compared only with negatives of its own cohort (scores may sit higher in one cohort
    than another without telling anything about the pairs)."""
    margin = (scores[:, 1].float() - scores[:, 0].float()).detach()
    true, other = margin[:positives, None], margin[None, positives:]
    wins = (true > other).float() + 0.5 * (true == other).float()  # (P, N - P)
    if groups is None:
        return wins.mean()
    same = (groups[:positives, None] == groups[None, positives:]).float()
    return (wins * same).sum() / same.sum().clamp(min=1)
