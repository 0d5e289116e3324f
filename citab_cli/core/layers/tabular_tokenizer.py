"""Header-aware cell tokens: each cell is its value joined to its column's meaning.

numeric cell:      (w * z + b) * A(h)       h: header embedding of the column
categorical cell:  A(h_level)               h_level: embedding of "<description>: <level>"
missing cell:      m * A(h)                 the model still knows which column is missing
absent column:     no token (masked)
A learned CLS token is prepended; there is no column positional embedding, so the tokens do not
depend on column order or on padding.

With a learned column identity (an ablation of CITab's header idea), h is a trained vector per
column name (and per level) looked up by the batch's ids; the header vectors are not read.
"""

from __future__ import annotations

import torch
from torch import nn

from citab_cli.core.layers.tabular_batch import TabularBatch


class TabularTokenizer(nn.Module):
    """Cell tokens from header vectors: a numeric value scales its column's adapted header, a level
    is its own text's vector, a missing cell a learned vector on its header."""

    def __init__(
        self,
        header_dim: int,
        dim: int,
        categorical_as_levels: bool = True,
        value_init: str = "spread",
        vocabulary_size: int | None = None,
    ):
        """value_init "spread": b = 1 and w random, so a value turns its token's direction (a
        pre-norm transformer's LayerNorm keeps that); "identity": w = 1, b = 0, so a value only
        scales the column's meaning, which LayerNorm removes (all but the sign).
        vocabulary_size: None reads the header vectors; a number learns one vector per
        vocabulary entry (id 1..n; id 0 for names the vocabulary lacks) in their place."""
        super().__init__()
        self.categorical_as_levels = categorical_as_levels
        self.adapter = nn.Linear(header_dim, dim)  # A
        self.identity = None
        if vocabulary_size is not None:
            self.identity = nn.Embedding(vocabulary_size + 1, header_dim)
            nn.init.normal_(self.identity.weight, std=header_dim**-0.5)  # ~unit norm, as h
        if value_init == "identity":
            scale, shift = torch.ones(dim), torch.zeros(dim)
        else:
            scale, shift = torch.randn(dim), torch.ones(dim)
        self.value_scale = nn.Parameter(scale)  # w
        self.value_shift = nn.Parameter(shift)  # b
        self.missing = nn.Parameter(torch.randn(dim) * 0.02)  # m
        self.cls = nn.Parameter(torch.randn(dim) * 0.02)

    def _vectors(self, vectors: torch.Tensor | None, ids: torch.Tensor | None) -> torch.Tensor:
        """Header vectors as given, or the learned identity's vectors of `ids`."""
        if self.identity is None:
            return vectors
        if ids is None:
            raise ValueError("a learned column identity needs the batch's column and level ids")
        return self.identity(ids)

    def meaning(self, batch: TabularBatch) -> torch.Tensor:
        """(B, C, D) A(h): each slot's column meaning, from its header or its learned vector."""
        return self.adapter(self._vectors(batch.column_vectors, batch.column_ids))

    def cell_tokens(self, batch: TabularBatch) -> torch.Tensor:
        """(B, C, D) one token per cell slot (padding slots are zeros)."""
        meaning = self.meaning(batch)  # (B, C, D)
        z = batch.values[..., None]  # (B, C, 1)
        tokens = (self.value_scale * z + self.value_shift) * meaning
        if self.categorical_as_levels:
            levels = self.adapter(self._vectors(batch.level_vectors, batch.level_ids))
            tokens = torch.where(batch.categorical[..., None], levels, tokens)
        tokens = torch.where(batch.missing[..., None], self.missing * meaning, tokens)
        return tokens * batch.present[..., None].to(tokens.dtype)

    def with_cls(
        self, cells: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepend CLS: (B, C, D), (B, C) -> (B, 1 + C, D), keep mask (B, 1 + C)."""
        b = cells.shape[0]
        cls = self.cls.expand(b, 1, -1).to(cells.dtype)
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=present.device), present], 1)
        return torch.cat([cls, cells], dim=1), keep

    def level_logits(self, tokens: torch.Tensor, batch: TabularBatch) -> torch.Tensor:
        """Scores of each candidate level of each slot's column for reconstructed cells.

        tokens (B, C, D), the batch's level candidates (B, C, L, E) -> (B, C, L).
        """
        candidates = self._vectors(batch.level_candidates, batch.candidate_ids)
        return torch.einsum("bcd,bcld->bcl", tokens, self.adapter(candidates))
