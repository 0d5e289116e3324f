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


#: Grad-CAM reads the deepest image stage whose grid has at least this many voxels per axis:
#: finer than the last feature map, which at small grids is a few voxels wide.
CAM_MIN_GRID = 8


def localising_stage(shape: tuple[int, int, int], minimum: int = CAM_MIN_GRID) -> int:
    """The deepest ResNet stage (0..3) whose output keeps `minimum` voxels on every axis."""
    from citab_cli.core.layers.resnet3d import stage_grid

    fine = [s for s in range(4) if min(stage_grid(shape, s)) >= minimum]
    return max(fine) if fine else 0


class Capture:
    """Keeps the output of `module` from the next forward pass (for Grad-CAM)."""

    def __init__(self, module: torch.nn.Module):
        self.output: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        self.output = output

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def brain_mask(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, D, H, W) stored scans -> (B, D, H, W) bool: voxels above the background (after
    preprocessing the background is each scan's constant minimum)."""
    low = images.flatten(1).amin(1)[:, None, None, None, None]
    high = images.flatten(1).amax(1)[:, None, None, None, None]
    return (images > low + 1e-3 * (high - low))[:, 0]


def mean_cell_tokens(tokens: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """The baseline of integrated gradients: each column's average token over subjects where
    the column is observed. tokens (N, C, D), observed (N, C) -> (C, D).

    Numeric and categorical cells then start from the same kind of point, "a typical value of
    this column", so their attributions are comparable (an all-zero baseline credits a
    categorical cell with its column's whole meaning, a numeric one only with its value)."""
    weight = observed.to(tokens.dtype)[..., None]  # (N, C, 1)
    total = (tokens * weight).sum(0)
    count = weight.sum(0)
    fallback = tokens.mean(0)
    return torch.where(count > 0, total / count.clamp_min(1), fallback)
