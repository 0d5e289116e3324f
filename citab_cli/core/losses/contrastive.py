"""ITC: symmetric CLIP loss between image and table embeddings; SimCLR's NT-Xent between two
views of one modality (the image-only baseline).

Under data parallelism, pass `gather`: it returns every rank's embeddings (with gradients for
the local part) and where this rank's rows start, so negatives come from the whole global batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from citab_cli.core.precision import full_precision

Gather = Callable[[torch.Tensor], tuple[torch.Tensor, int]]


#: Logit given to a pair that is not a candidate (another cohort's row): finite, so scaling it
#: by an ITM hardness of 0 gives 0 rather than NaN, and far below any cosine / temperature.
NOT_A_CANDIDATE = -1.0e4


def itc_loss(
    image: torch.Tensor,
    table: torch.Tensor,
    temperature: float,
    gather: Gather | None = None,
    groups: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """image, table (B, P) -> (loss, in-batch logits (B, B) image -> table).

    Row i of `image` and row i of `table` are the positive pair; all other rows of the
    (gathered) batch are negatives, in both directions. With `groups` (B,) cohort ids, only rows
    of the same cohort are negatives: a table from another cohort is told apart by its columns
    and a scan by its scanner, which teaches the cohort rather than the subject.
    """
    image = F.normalize(image.float(), dim=-1)
    table = F.normalize(table.float(), dim=-1)
    if gather is None:
        all_image, all_table, offset = image, table, 0
    else:
        all_image, offset = gather(image)
        all_table, _ = gather(table)
    b = image.shape[0]
    targets = torch.arange(offset, offset + b, device=image.device)
    with full_precision(image):
        image_to_table = image @ all_table.T / temperature  # (B, W*B)
        table_to_image = table @ all_image.T / temperature  # (B, W*B)
    if groups is not None:
        all_groups = groups if gather is None else gather(groups)[0]
        other = groups[:, None] != all_groups[None, :]
        image_to_table = image_to_table.masked_fill(other, NOT_A_CANDIDATE)
        table_to_image = table_to_image.masked_fill(other, NOT_A_CANDIDATE)
    loss = (F.cross_entropy(image_to_table, targets) + F.cross_entropy(table_to_image, targets)) / 2
    return loss, image_to_table[:, offset : offset + b]


def itc_queue_loss(
    image: torch.Tensor,
    table: torch.Tensor,
    image_keys: torch.Tensor,
    table_keys: torch.Tensor,
    image_queue: torch.Tensor,
    table_queue: torch.Tensor,
    temperature: float,
    offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ITC against momentum features (ALBEF/MoCo): image, table (B, P) from the online encoders;
    image_keys, table_keys (W*B, P) from the momentum encoders for the global batch (this
    rank's rows start at `offset`); *_queue (Q, P) past momentum features, extra negatives.

    Returns (loss, in-batch logits (B, B) image -> own rows' table keys). With an empty queue
    and keys equal to the online features, the loss is `itc_loss`'s."""
    image = F.normalize(image.float(), dim=-1)
    table = F.normalize(table.float(), dim=-1)
    image_keys = F.normalize(image_keys.float(), dim=-1)
    table_keys = F.normalize(table_keys.float(), dim=-1)
    all_table = torch.cat([table_keys, table_queue.float()])  # (W*B + Q, P)
    all_image = torch.cat([image_keys, image_queue.float()])
    b = image.shape[0]
    targets = torch.arange(offset, offset + b, device=image.device)
    with full_precision(image):
        image_to_table = image @ all_table.T / temperature
        table_to_image = table @ all_image.T / temperature
    loss = (F.cross_entropy(image_to_table, targets) + F.cross_entropy(table_to_image, targets)) / 2
    return loss, image_to_table[:, offset : offset + b]


def nt_xent_loss(
    first: torch.Tensor,
    second: torch.Tensor,
    temperature: float,
    gather: Gather | None = None,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """SimCLR's NT-Xent between two views of the same rows: first, second (B, P).

    Each of the 2B embeddings has one positive, the other view of its row, and as negatives
    every other embedding of the (gathered) batch, both views, itself excluded. With `groups`
    (B,) cohort ids, only rows of the same cohort are negatives (as in `itc_loss`). The loss is
    the mean cross-entropy over the 2B embeddings."""
    first = F.normalize(first.float(), dim=-1)
    second = F.normalize(second.float(), dim=-1)
    b = first.shape[0]
    if gather is None:
        all_first, all_second, offset = first, second, 0
    else:
        all_first, offset = gather(first)
        all_second, _ = gather(second)
    n = all_first.shape[0]
    candidates = torch.cat([all_first, all_second])  # (2N, P): views 1 then views 2
    mine = torch.cat([first, second])  # (2B, P)
    own = torch.cat([torch.arange(offset, offset + b), torch.arange(n + offset, n + offset + b)])
    own = own.to(first.device)
    positive = torch.cat([own[b:], own[:b]])  # the other view of the same row
    with full_precision(mine):
        logits = mine @ candidates.T / temperature  # (2B, 2N)
    excluded = torch.zeros_like(logits, dtype=torch.bool)
    excluded[torch.arange(2 * b, device=first.device), own] = True  # never itself
    if groups is not None:
        all_groups = groups if gather is None else gather(groups)[0]
        both = torch.cat([all_groups, all_groups])
        excluded |= torch.cat([groups, groups])[:, None] != both[None, :]
    logits = logits.masked_fill(excluded, NOT_A_CANDIDATE)
    return F.cross_entropy(logits, positive)
