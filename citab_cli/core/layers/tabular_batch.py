"""The tabular part of a batch: cells of rows from any cohorts, padded to one column count."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass(frozen=True)
class TabularBatch:
    """B rows, C column slots each (rows from a cohort with fewer columns are padded).

    Every tensor is indexed (B, C, ...) by row and slot. A slot's header vector carries the
    column's meaning, so slots need not line up across rows: column order is free.
    """

    column_vectors: torch.Tensor  # (B, C, E) header embedding of the slot's column
    level_vectors: torch.Tensor  # (B, C, E) embedding of the cell's level text (categorical)
    values: torch.Tensor  # (B, C) normalised numeric value; 0 where missing or categorical
    categorical: torch.Tensor  # (B, C) bool: the slot's column is categorical
    missing: torch.Tensor  # (B, C) bool: the column exists for the row, the cell is missing
    present: torch.Tensor  # (B, C) bool: the column exists for the row (False = padding)
    # For masked-cell reconstruction of categorical cells (optional):
    level_index: torch.Tensor | None = None  # (B, C) long: the cell's level, -1 if none
    level_candidates: torch.Tensor | None = None  # (B, C, L, E) the column's level embeddings
    candidate_mask: torch.Tensor | None = None  # (B, C, L) bool: which candidates exist
    # For a learned column identity (optional): ids into the model's vocabulary, 0 = unknown.
    column_ids: torch.Tensor | None = None  # (B, C) long: the slot's column name
    level_ids: torch.Tensor | None = None  # (B, C) long: the cell's "name: level"
    candidate_ids: torch.Tensor | None = None  # (B, C, L) long: the column's levels

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TabularBatch:
        """The batch with every tensor on `device` (asynchronously from pinned memory with
        `non_blocking`)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(
            self,
            **{
                k: v.to(device, non_blocking=non_blocking)
                for k, v in moved.items()
                if v is not None
            },
        )

    def pin_memory(self) -> TabularBatch:
        """The batch in page-locked host memory, so copies to a GPU need not wait."""
        tensors = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v.pin_memory() for k, v in tensors.items() if v is not None})

    def select(self, rows: torch.Tensor) -> TabularBatch:
        """Rows `rows` (a long index), e.g. to pair tables with other images."""
        picked = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v[rows] for k, v in picked.items() if v is not None})

    def with_missing(self, mask: torch.Tensor) -> TabularBatch:
        """The same rows with the cells of `mask` (B, C) turned into missing cells."""
        return replace(self, missing=self.missing | (mask & self.present))

    @property
    def rows(self) -> int:
        """Rows in the batch (B)."""
        return int(self.values.shape[0])
