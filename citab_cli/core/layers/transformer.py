"""Pre-norm transformer blocks with key-padding masks (scaled dot-product attention)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key-padding mask."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, T, D); keep (B, T) bool, False for padding keys. Returns (B, T, D)."""
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, T, D/H)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        return self.out(attended.transpose(1, 2).reshape(b, t, d))  # (B, T, D)


class FeedForward(nn.Module):
    """The plain MLP: dim -> hidden -> dim, hidden = ratio * dim unless given."""

    def __init__(self, dim: int, ratio: float, hidden: int | None = None):
        super().__init__()
        hidden = int(round(dim * ratio)) if hidden is None else hidden
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """(B, N, D) -> ((B, N, D), no gates)."""
        return self.net(x), None


class Block(nn.Module):
    """x + attention(norm(x)), then x + feed_forward(norm(x)).

    The feed-forward module returns (output, aux); aux (e.g. P-MoLin gates) is passed back.
    """

    def __init__(self, dim: int, heads: int, feed_forward: nn.Module):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.feed_forward = feed_forward

    def forward(
        self, x: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pre-norm attention then feed-forward, each added back: (B, N, D) -> ((B, N, D), gates or
        None)."""
        x = x + self.attention(self.norm1(x), keep)
        update, aux = self.feed_forward(self.norm2(x))
        return x + update, aux
