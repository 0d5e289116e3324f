"""Attribution methods: integrated gradients over cell tokens, 3D Grad-CAM over image features."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def integrated_gradients(
    f: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    baseline: torch.Tensor | None = None,
    steps: int = 64,
) -> torch.Tensor:
    """Attributions of `f` (inputs (B, C, D) -> scores (B,)) to each (B, C) cell.

    Riemann midpoint sum along the straight path from `baseline` (zeros) to `inputs`; the
    attributions of a sample sum to f(inputs) - f(baseline) up to the discretisation error.
    """
    baseline = torch.zeros_like(inputs) if baseline is None else baseline
    delta = inputs - baseline
    total = torch.zeros_like(inputs)
    for k in range(steps):
        alpha = (k + 0.5) / steps
        point = (baseline + alpha * delta).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(f(point).sum(), point)
        total += grad
    return (delta * total / steps).sum(-1)  # (B, C)


def grad_cam(
    features: torch.Tensor, score: torch.Tensor, size: tuple[int, int, int]
) -> torch.Tensor:
    """3D Grad-CAM: features (B, C, d, h, w) that `score` (B,) depends on -> maps (B, *size) in
    [0, 1], upsampled to the input grid."""
    (grad,) = torch.autograd.grad(score.sum(), features, retain_graph=True)
    weights = grad.mean(dim=(2, 3, 4), keepdim=True)  # (B, C, 1, 1, 1)
    cam = F.relu((weights * features).sum(1, keepdim=True))  # (B, 1, d, h, w)
    cam = F.interpolate(cam, size=size, mode="trilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None, None]
    return (cam / peak).detach()
