"""Momentum encoders and a queue of their past features: extra ITC negatives for the small
batches 3D images allow (ALBEF / MoCo). The momentum copies follow the online encoders by an
exponential moving average and receive no gradient; the queue is part of the resumable state."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from citab_cli.core.layers.tabular_batch import TabularBatch

#: The parts of the model whose momentum copies make the ITC keys.
PARTS = ("image", "image_projection", "tabular", "tabular_projection")


class MomentumEncoders(nn.Module):
    """An exponential moving average of the encoders and projections, and a queue of their past
    features as extra ITC negatives."""

    def __init__(self, model: nn.Module, queue_size: int, momentum: float, dim: int):
        super().__init__()
        self.momentum = momentum
        for name in PARTS:
            part = copy.deepcopy(getattr(model, name))
            part.requires_grad_(False)
            setattr(self, name, part)
        # the queue starts with random unit vectors, as in MoCo (drawn on the CPU, so every device
        # starts from the same queue), and lives on the device of the model it mirrors
        device = next(model.parameters()).device
        start = torch.Generator().manual_seed(0)
        image = F.normalize(torch.randn(queue_size, dim, generator=start), dim=-1)
        table = F.normalize(torch.randn(queue_size, dim, generator=start), dim=-1)
        self.register_buffer("image_queue", image.to(device))
        self.register_buffer("table_queue", table.to(device))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long, device=device))

    @torch.no_grad()
    def follow(self, model: nn.Module) -> None:
        """EMA step: copy = m * copy + (1 - m) * online; buffers (BatchNorm statistics) copied."""
        for name in PARTS:
            online, mirror = getattr(model, name), getattr(self, name)
            for p_online, p_mirror in zip(online.parameters(), mirror.parameters(), strict=True):
                p_mirror.mul_(self.momentum).add_(p_online.detach(), alpha=1 - self.momentum)
            for b_online, b_mirror in zip(online.buffers(), mirror.buffers(), strict=True):
                b_mirror.copy_(b_online)

    @torch.no_grad()
    def keys(self, images: torch.Tensor, batch: TabularBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(image keys, table keys), each (B, P), L2-normalised."""
        pooled = self.image(images).mean(dim=(2, 3, 4))  # (B, C_img)
        cls = self.tabular(batch).cls  # (B, D)
        image = F.normalize(self.image_projection(pooled).float(), dim=-1)
        table = F.normalize(self.tabular_projection(cls).float(), dim=-1)
        return image, table

    @torch.no_grad()
    def enqueue(self, image_keys: torch.Tensor, table_keys: torch.Tensor) -> None:
        """Write the newest keys over the oldest (the keys of every rank, in rank order)."""
        size = self.image_queue.shape[0]
        n = min(image_keys.shape[0], size)
        index = (self.pointer + torch.arange(n, device=self.pointer.device)) % size
        self.image_queue[index] = image_keys[:n].to(self.image_queue.dtype)
        self.table_queue[index] = table_keys[:n].to(self.table_queue.dtype)
        self.pointer.copy_((self.pointer + n) % size)
