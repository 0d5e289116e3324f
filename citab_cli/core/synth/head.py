"""Synthetic scans as a scanner writes them: the whole head (scalp, skull, CSF, neck) around the
synthetic brain, at a random pose, in a field of view and storage orientation of its own, with a
bias field, and the true brain mask on the same grid."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from citab_cli.core.synth import anatomy

#: Tissue intensities of a T1 head (white matter ~1): CSF, bone, marrow, scalp fat, muscle.
CSF, BONE, MARROW, FAT, MUSCLE = 0.12, 0.04, 0.35, 0.95, 0.5
#: Shell depths outside the brain (mm): CSF, then the skull, then the scalp.
CSF_MM, SKULL_MM, SCALP_MM = 2.5, 7.0, 6.0
#: Largest random rotation (degrees) and shift (mm) of the head in the scanner.
MAX_ROTATION, MAX_SHIFT = 15.0, 20.0
#: Storage orientations: axis order and flips of the voxel grid, as scanners export them.
ORIENTATIONS = (
    ((0, 1, 2), (False, False, False)),  # RAS
    ((0, 1, 2), (True, False, False)),  # LAS
    ((1, 2, 0), (True, True, False)),  # PSR-like: sagittal slices
    ((0, 2, 1), (False, False, True)),  # coronal slices
    ((0, 1, 2), (True, True, False)),  # LPS
)


@dataclass(frozen=True)
class RawScan:
    """A whole-head scan as a scanner might store it, with where its brain is."""

    data: np.ndarray  # the stored voxels
    affine: np.ndarray  # voxel -> world (mm)
    brain_mask: np.ndarray  # bool, same grid: where the brain is


@lru_cache(maxsize=1)
def _outside_distance() -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) from each template voxel to the template's brain, and the template
    affine: 0 inside the brain."""
    from nilearn.datasets import load_mni152_brain_mask
    from scipy.ndimage import distance_transform_edt

    mask = load_mni152_brain_mask(resolution=1)
    inside = np.asarray(mask.get_fdata()) > 0
    return distance_transform_edt(~inside).astype(np.float32), np.asarray(mask.affine)


def _rotation(degrees: np.ndarray) -> np.ndarray:
    a, b, c = np.radians(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _head(points: np.ndarray, brain: np.ndarray, scale: float) -> np.ndarray:
    """Head tissue at template-space `points` (3, ...), `brain` the brain intensity there."""
    distance, affine = _outside_distance()
    d = anatomy._sample(distance, affine, points, order=1) * scale
    d = np.where(np.isnan(d), 99.0, d)
    out = np.where(d <= 0.5, brain, 0.0)
    out = np.where((d > 0.5) & (d <= CSF_MM), CSF, out)
    skull = (d > CSF_MM) & (d <= CSF_MM + SKULL_MM)
    depth = (d - CSF_MM) / SKULL_MM
    out = np.where(skull, np.where(np.abs(depth - 0.5) < 0.2, MARROW, BONE), out)
    scalp = (d > CSF_MM + SKULL_MM) & (d <= CSF_MM + SKULL_MM + SCALP_MM)
    out = np.where(scalp, FAT, out)
    # the neck: below the skull base, an elliptic column of muscle wrapped in fat
    x, y, z = points
    radius = np.sqrt((x / 55.0) ** 2 + ((y + 15.0) / 60.0) ** 2)
    neck = (z < -45.0) & (d > CSF_MM + SKULL_MM + SCALP_MM)
    out = np.where(neck & (radius < 0.9), MUSCLE, out)
    out = np.where(neck & (radius >= 0.9) & (radius < 1.0), FAT, out)
    return out


def raw_scan(
    grid: anatomy.Grid,
    rng: np.random.Generator,
    atrophy: float,
    age: float,
    female: bool,
    scanner: anatomy.Scanner,
) -> RawScan:
    """A whole-head scan of one subject: a field of view larger than the brain reaching down
    the neck, a random pose, a random storage orientation, the scanner's bias and noise."""
    spacing = 240.0 / grid.size  # the field of view covers the head and the neck
    extent = np.array([grid.size, grid.size, int(grid.size * 1.1)])
    order, flips = ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))]
    rotation = _rotation(rng.uniform(-MAX_ROTATION, MAX_ROTATION, 3))
    shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, 3)
    view = anatomy.BRAIN_CENTRE + np.array([0.0, 0.0, -35.0])  # head and neck
    axes = [(np.arange(n) - (n - 1) / 2) * spacing for n in extent]
    scanner_world = (
        np.stack(np.meshgrid(*axes, indexing="ij")) + (view + shift)[:, None, None, None]
    )
    # scanner space -> head (template) space: undo the pose about the brain centre
    relative = scanner_world - (anatomy.BRAIN_CENTRE + shift)[:, None, None, None]
    points = np.tensordot(rotation.T, relative, axes=1) + anatomy.BRAIN_CENTRE[:, None, None, None]
    head_scale = rng.normal(1.0, 0.03) - (0.03 if female else 0.0)
    centre = anatomy.BRAIN_CENTRE[:, None, None, None]
    points = (points - centre) / head_scale + centre  # a larger head: the template stretched
    brain = anatomy.brain_at(points, atrophy, age)
    truth = anatomy.template_mask_at(points)
    volume = _head(points, brain, head_scale)
    voxels = anatomy.scan_voxels(volume, scanner_world, scanner, rng)
    affine = np.eye(4)
    affine[:3, :3] = np.diag([spacing] * 3)
    affine[:3, 3] = scanner_world[:, 0, 0, 0]
    data, mask, affine = _store(voxels, truth, affine, order, flips)
    if np.issubdtype(np.dtype(scanner.dtype), np.integer):
        data = np.clip(np.round(data), 0, np.iinfo(scanner.dtype).max)
    return RawScan(np.ascontiguousarray(data.astype(scanner.dtype)), affine, mask)


def _store(data, mask, affine, order, flips):
    """The volume in a scanner's storage order: axes permuted and flipped, affine to match."""
    for axis, flipped in enumerate(flips):
        if flipped:
            n = data.shape[axis]
            data, mask = np.flip(data, axis), np.flip(mask, axis)
            column = affine[:3, axis].copy()
            affine = affine.copy()
            affine[:3, 3] = affine[:3, 3] + column * (n - 1)
            affine[:3, axis] = -column
    data, mask = np.transpose(data, order), np.transpose(mask, order)
    permuted = affine.copy()
    permuted[:3, :3] = affine[:3, :3][:, list(order)]
    return data, mask, permuted
