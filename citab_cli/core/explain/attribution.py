"""Attribution methods, with captum underneath: integrated gradients from one baseline, expected
gradients (integrated gradients averaged over baselines drawn from real subjects), 3D Grad-CAM
with a fallback when it finds no positive evidence, and brain-masked occlusion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Integrated-gradient steps evaluated per forward pass (bounds memory on large inputs).
INTERNAL_BATCH = 64
#: A map whose spread inside the brain is below this fraction of its mean says nothing.
FLAT_SPREAD = 0.05


def integrated_gradients(
    f: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    baseline: torch.Tensor | None = None,
    steps: int = 64,
    extra: tuple = (),
) -> torch.Tensor:
    """Attributions of `f` (inputs (B, C, D), *extra -> scores (B,)) to each (B, C) cell:
    captum's integrated gradients, midpoint rule along the straight path from `baseline`
    (zeros) to `inputs`; a sample's attributions sum to f(inputs) - f(baseline) up to the
    discretisation error. `extra` tensors (batch first) are passed on to `f`."""
    from captum.attr import IntegratedGradients

    attributions = IntegratedGradients(f).attribute(
        inputs,
        baselines=torch.zeros_like(inputs) if baseline is None else baseline,
        additional_forward_args=extra or None,
        n_steps=steps,
        method="riemann_middle",
        internal_batch_size=max(INTERNAL_BATCH, len(inputs)),
    )
    return attributions.sum(-1)


def expected_gradients(
    f: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    steps: int = 32,
    extra: tuple = (),
) -> torch.Tensor:
    """Expected gradients, estimated without sampling noise: captum's integrated gradients from
    each of `baselines` (K, C, D), drawn from real subjects, averaged over them. A binary column
    then starts from a level someone has, never from the point between the two, and its path
    to the other level is integrated whole. -> (B, C); a sample's attributions sum to f(inputs)
    minus the mean of f over the baselines, up to the discretisation error."""
    total = torch.zeros(inputs.shape[:2], dtype=inputs.dtype, device=inputs.device)
    for start in baselines:
        total += integrated_gradients(f, inputs, start[None].expand_as(inputs), steps, extra)
    return total / len(baselines)


def sample_baselines(tokens: torch.Tensor, observed: torch.Tensor, count: int, seed: int = 0):
    """`count` baselines (K, C, D) for expected gradients: each column's cell taken from a
    random subject of `tokens` (N, C, D) in whom that column is observed (`observed` (N, C)),
    independently per column; a column observed in nobody keeps its mean token."""
    generator = torch.Generator().manual_seed(seed)
    n, c, _ = tokens.shape
    picks = torch.empty(count, c, dtype=torch.long)
    for j in range(c):
        rows = torch.nonzero(observed[:, j]).flatten().cpu()
        pool = rows if len(rows) else torch.arange(n)
        picks[:, j] = pool[torch.randint(len(pool), (count,), generator=generator)]
    picks = picks.to(tokens.device)
    return tokens[picks, torch.arange(c, device=tokens.device)[None, :]]  # (K, C, D)


@dataclass
class ScanMap:
    """A saliency map per subject in [0, 1] on the input grid, and what it shows in words."""

    maps: torch.Tensor  # (B, D, H, W)
    notes: list[str]  # per subject: "" or why the map is not plain Grad-CAM


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    return maps / maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None, None]


def flat(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) bool: a map that is zero, or nearly constant inside the brain, localises nothing."""
    out = []
    for m, inside in zip(maps, mask, strict=True):
        values = m[inside] if inside.any() else m.flatten()
        mean = values.mean()
        out.append(bool(values.max() <= 0 or values.std() <= FLAT_SPREAD * mean.abs()))
    return torch.tensor(out)


def grad_cam(
    forward: Callable[..., torch.Tensor],
    layer: torch.nn.Module,
    images: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    stage: int,
    extra: tuple = (),
) -> ScanMap:
    """3D Grad-CAM (captum's LayerGradCam) of `layer` for class `target` (B,), upsampled to the
    input grid and masked to the brain (`mask` (B, D, H, W)). A subject whose map is zero or flat
    inside the brain gets |gradient x activation| of the same layer instead, said in its note."""
    from captum.attr import LayerAttribution, LayerGradCam, LayerGradientXActivation

    size = tuple(images.shape[2:])

    def upsample(raw: torch.Tensor) -> torch.Tensor:
        up = LayerAttribution.interpolate(raw, size, interpolate_mode="trilinear")
        return up[:, 0].float() * mask

    extra = extra or None
    cam = upsample(LayerGradCam(forward, layer).attribute(
        images, target=target, additional_forward_args=extra, relu_attributions=True))  # fmt: skip
    empty = flat(cam, mask)
    notes = [""] * len(images)
    if empty.any():
        product = LayerGradientXActivation(forward, layer).attribute(
            images, target=target, additional_forward_args=extra
        )
        fallback = upsample(product.abs().sum(1, keepdim=True))
        for i in torch.nonzero(empty).flatten().tolist():
            zero = bool(cam[i].max() <= 0)
            why = "no positive evidence" if zero else "a map flat over the brain"
            notes[i] = f"Grad-CAM at stage {stage + 1} found {why}; showing |gradient x activation|"
            cam[i] = fallback[i]
    return ScanMap(_normalise(cam).detach(), notes)


def occlusion(
    forward: Callable[..., torch.Tensor],
    images: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    patch: int,
    extra: tuple = (),
) -> ScanMap:
    """Occlusion sensitivity (captum's Occlusion): how much the target class's score drops when
    a cube of `patch` voxels is set to the background, cubes side by side (stride = patch: one
    forward pass a cube), masked to the brain and clipped at 0 (only evidence for the class)."""
    from captum.attr import Occlusion

    stride = patch
    background = images.flatten(1).amin(1)[:, None, None, None, None]
    drop = Occlusion(forward).attribute(
        images,
        sliding_window_shapes=(1, patch, patch, patch),
        strides=(1, stride, stride, stride),
        baselines=background,
        target=target,
        additional_forward_args=extra or None,
        perturbations_per_eval=16,
    )
    maps = F.relu(drop[:, 0].float()) * mask
    notes = ["occlusion found no patch whose removal lowers the score" if m.max() <= 0 else ""
             for m in maps]  # fmt: skip
    return ScanMap(_normalise(maps).detach(), notes)


#: Grad-CAM reads the deepest image stage whose grid has at least this many voxels per axis:
#: finer than the last feature map, which at small grids is a few voxels wide.
CAM_MIN_GRID = 8


def localising_stage(shape: tuple[int, int, int], minimum: int = CAM_MIN_GRID) -> int:
    """The deepest ResNet stage (0..3) whose output keeps `minimum` voxels on every axis."""
    from citab_cli.core.layers.resnet3d import stage_grid

    fine = [s for s in range(4) if min(stage_grid(shape, s)) >= minimum]
    return max(fine) if fine else 0


def brain_mask(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, D, H, W) stored scans -> (B, D, H, W) bool: voxels above the background (after
    preprocessing the background is each scan's constant minimum)."""
    low = images.flatten(1).amin(1)[:, None, None, None, None]
    high = images.flatten(1).amax(1)[:, None, None, None, None]
    return (images > low + 1e-3 * (high - low))[:, 0]


def mean_cell_tokens(tokens: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """The `--baseline mean` start of integrated gradients: each column's average token over
    subjects where the column is observed. tokens (N, C, D), observed (N, C) -> (C, D)."""
    weight = observed.to(tokens.dtype)[..., None]  # (N, C, 1)
    total = (tokens * weight).sum(0)
    count = weight.sum(0)
    fallback = tokens.mean(0)
    return torch.where(count > 0, total / count.clamp_min(1), fallback)


def routing_entropy(matrix: np.ndarray, cohorts: list[str]) -> dict[str, dict]:
    """Per cohort, how its columns spread over the P-MoLin prototypes, from the mean gates
    `matrix` (R, L, K) of its rows: per layer the entropy of the prototypes its columns route
    to most (0: all to one; 1: evenly), and the prototype that most of them pick."""
    out = {}
    layers, k = matrix.shape[1], matrix.shape[2]
    for cohort in dict.fromkeys(cohorts):
        rows = matrix[[i for i, c in enumerate(cohorts) if c == cohort]]
        per_layer = []
        for layer in range(layers):
            top = rows[:, layer].argmax(1)
            share = np.bincount(top, minlength=k) / len(top)
            present = share[share > 0]
            entropy = abs(float(-(present * np.log(present)).sum() / np.log(k))) if k > 1 else 0.0
            per_layer.append({"entropy": entropy, "prototype": int(share.argmax()) + 1,
                              "share": float(share.max())})  # fmt: skip
        out[cohort] = {"columns": int(len(rows)), "layers": per_layer}
    return out
