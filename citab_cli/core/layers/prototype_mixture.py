"""P-MoLin: a prototype-guided mixture of expert layers.

Each token is routed by its similarity to K learned prototypes, g = softmax(<x, p_k> / tau)
(or cosine similarity), and the output is sum_k g_k E_k(x). All K experts run in one batched
contraction; the gates are returned so explanations can read them.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def _uniform_(tensor: torch.Tensor, fan_in: int) -> None:
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(tensor, -bound, bound)


class PrototypeMixture(nn.Module):
    """P-MoLin: each token is routed by its similarity to K learned prototypes over K expert feed-
    forwards, computed in one batched contraction."""

    def __init__(
        self,
        dim: int,
        experts: int,
        ratio: float,
        linear: bool = False,
        gate: Literal["dot", "cosine"] = "dot",
        temperature: float = 1.0,
        prototypes: nn.Parameter | None = None,
    ):
        """`prototypes` (K, dim), if given, is shared with other layers; else the layer owns one."""
        super().__init__()
        self.gate = gate
        self.temperature = temperature
        self.linear = linear
        if prototypes is None:
            prototypes = nn.Parameter(torch.randn(experts, dim) / math.sqrt(dim))
        if prototypes.shape != (experts, dim):
            raise ValueError(
                f"prototypes must be ({experts}, {dim}), got {tuple(prototypes.shape)}"
            )
        self.prototypes = prototypes
        hidden = dim if linear else int(round(dim * ratio))
        self.w_in = nn.Parameter(torch.empty(experts, dim, hidden))  # (K, D, H)
        self.b_in = nn.Parameter(torch.empty(experts, hidden))
        _uniform_(self.w_in, dim)
        _uniform_(self.b_in, dim)
        if not linear:
            self.w_out = nn.Parameter(torch.empty(experts, hidden, dim))  # (K, H, D)
            self.b_out = nn.Parameter(torch.empty(experts, dim))
            _uniform_(self.w_out, hidden)
            _uniform_(self.b_out, hidden)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, D) -> routing weights (B, T, K), each row a distribution."""
        prototypes = self.prototypes
        if self.gate == "cosine":
            x = F.normalize(x, dim=-1)
            prototypes = F.normalize(prototypes, dim=-1)
        return torch.softmax(x @ prototypes.T / self.temperature, dim=-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, D) -> (sum_k g_k E_k(x) (B, T, D), gates (B, T, K))."""
        g = self.gates(x)
        hidden = torch.einsum("btd,kdh->btkh", x, self.w_in) + self.b_in  # (B, T, K, H)
        if self.linear:
            expert_out = hidden  # (B, T, K, D)
        else:
            hidden = F.gelu(hidden)
            expert_out = torch.einsum("btkh,khd->btkd", hidden, self.w_out) + self.b_out
        return torch.einsum("btk,btkd->btd", g, expert_out), g


def mixture_parameters(dim: int, experts: int, ratio: float, linear: bool, prototypes: bool) -> int:
    """Parameters of one PrototypeMixture layer (its prototypes counted when it owns them)."""
    if linear:
        count = experts * dim * dim + experts * dim
    else:
        hidden = int(round(dim * ratio))
        count = 2 * experts * dim * hidden + experts * hidden + experts * dim
    return count + (experts * dim if prototypes else 0)


def balance_penalty(gates: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """How far the mean gate over real tokens is from uniform: K * sum_k mean_k^2 - 1 (0 = even).

    gates (B, T, K); keep (B, T) bool.
    """
    weights = keep.to(gates.dtype)[..., None]
    mean = (gates * weights).sum((0, 1)) / weights.sum().clamp_min(1.0)  # (K,)
    return gates.shape[-1] * (mean**2).sum() - 1.0
