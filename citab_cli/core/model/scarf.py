"""Tabular-only self-supervision by feature corruption (SCARF-style, Bahri et al. 2022), as a
baseline for CITab's cross-modal objective: each row is read twice, once as it is and once with
a share of its observed cells replaced by the same column's cell of another row of its cohort,
and the two readings of a row are pulled together against the other rows (ITC's symmetric
InfoNCE, between the tabular CLS of the two readings, through the same header tokens and
projection as CITab). The scan is never
read, so a comparison with CITab isolates what the image side adds."""

from __future__ import annotations

from dataclasses import replace

import torch

from citab_cli.core.layers.tabular_batch import TabularBatch

#: The cells of a slot that travel with a donor's value.
CELL_FIELDS = ("values", "missing", "level_vectors", "level_index", "level_ids")


def donors(
    cohorts: torch.Tensor | None,
    rows: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """For each row, another row of its cohort drawn uniformly (itself only when it is its
    cohort's only row in the batch): (B,) long."""
    groups = cohorts.to(device) if cohorts is not None else torch.zeros(rows, dtype=torch.long,
                                                                        device=device)  # fmt: skip
    scores = torch.rand(rows, rows, generator=generator, device=device)
    same = groups[:, None] == groups[None, :]
    alone = same.sum(1) == 1
    eye = torch.eye(rows, dtype=torch.bool, device=device)
    allowed = same & (~eye | alone[:, None])
    return scores.masked_fill(~allowed, -1.0).argmax(1)


def corrupt(
    batch: TabularBatch,
    fraction: float,
    cohorts: torch.Tensor | None,
    generator: torch.Generator | None = None,
) -> tuple[TabularBatch, torch.Tensor]:
    """The batch with about `fraction` of each row's existing cells taken from a donor row of
    the same cohort (the same column: within a cohort a slot is one column), and the (B, C)
    mask of the cells replaced."""
    b, c = batch.values.shape
    device = batch.values.device
    chosen = (torch.rand(b, c, generator=generator, device=device) < fraction) & batch.present
    source = donors(cohorts, b, generator, device)
    swapped = {}
    for name in CELL_FIELDS:
        tensor = getattr(batch, name)
        if tensor is None:
            continue
        mask = chosen.reshape(b, c, *([1] * (tensor.dim() - 2)))
        swapped[name] = torch.where(mask, tensor[source], tensor)
    return replace(batch, **swapped), chosen
