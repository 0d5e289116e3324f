"""Header-aware cell tokens: each cell is its value joined to its column's meaning.

numeric cell:      (w * z + b) * A(h)       h: header embedding of the column
categorical cell:  A(h_level)               h_level: embedding of "<description>: <level>"
missing cell:      m * A(h)                 the model still knows which column is missing
absent column:     no token (masked)
A learned CLS token is prepended; there is no column positional embedding, so the tokens do not
depend on column order or on padding.
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
    ):
        """value_init "spread": b = 1 and w random, so a value turns its token's direction (a
        pre-norm transformer's LayerNorm keeps that); "identity": w = 1, b = 0, so a value only
        scales the column's meaning, which LayerNorm removes (all but the sign)."""
        super().__init__()
        self.categorical_as_levels = categorical_as_levels
        self.adapter = nn.Linear(header_dim, dim)  # A
        if value_init == "identity":
            scale, shift = torch.ones(dim), torch.zeros(dim)
        else:
            scale, shift = torch.randn(dim), torch.ones(dim)
        self.value_scale = nn.Parameter(scale)  # w
        self.value_shift = nn.Parameter(shift)  # b
        self.missing = nn.Parameter(torch.randn(dim) * 0.02)  # m
        self.cls = nn.Parameter(torch.randn(dim) * 0.02)

    def cell_tokens(self, batch: TabularBatch) -> torch.Tensor:
        """(B, C, D) one token per cell slot (padding slots are zeros)."""
        meaning = self.adapter(batch.column_vectors)  # (B, C, D)
        z = batch.values[..., None]  # (B, C, 1)
        tokens = (self.value_scale * z + self.value_shift) * meaning
        if self.categorical_as_levels:
            levels = self.adapter(batch.level_vectors)
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

    def level_logits(self, tokens: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores of each candidate level for reconstructed cells.

        tokens (N, D), candidates (N, L, E) header embeddings -> (N, L).
        """
        return torch.einsum("nd,nld->nl", tokens, self.adapter(candidates))
