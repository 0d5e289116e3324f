"""Synthetic T1 volumes: the MNI152 template, deformed per subject, seen through a scanner."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Field of view (mm) that a synthetic scan of any matrix size covers, centred on the brain.
FIELD_OF_VIEW_MM = 192.0
#: Brain landmarks in MNI space (mm): lateral ventricles and the two hippocampi.
VENTRICLE_CENTRE = np.array([0.0, -8.0, 16.0])
HIPPOCAMPUS_CENTRES = np.array([[-26.0, -22.0, -14.0], [26.0, -22.0, -14.0]])
BRAIN_CENTRE = np.array([0.0, -18.0, 8.0])


@dataclass(frozen=True)
class Scanner:
    """A cohort's acquisition: how its scans differ from another cohort's of the same brain."""

    intensity: float  # scale of stored values
    bias: float  # strength of the smooth multiplicative bias field
    noise: float  # noise standard deviation, relative to white matter
    blur: float  # Gaussian blur, in voxels
    flip: tuple[bool, bool, bool]  # axes stored reversed (e.g. LAS instead of RAS)
    dtype: str


@dataclass(frozen=True)
class Grid:
    """A cubic voxel grid of `size`^3 voxels covering FIELD_OF_VIEW_MM around the brain."""

    size: int

    @property
    def spacing(self) -> float:
        """Voxel size in mm."""
        return FIELD_OF_VIEW_MM / self.size

    def world(self) -> np.ndarray:
        """(3, S, S, S) world coordinates (mm, RAS) of every voxel centre."""
        axis = (np.arange(self.size) - (self.size - 1) / 2) * self.spacing
        return (
            np.stack(np.meshgrid(axis, axis, axis, indexing="ij"))
            + BRAIN_CENTRE[:, None, None, None]
        )

    def affine(self, flip: tuple[bool, bool, bool]) -> np.ndarray:
        """Voxel-to-world affine of the grid, axes flipped as asked."""
        affine = np.eye(4)
        origin = BRAIN_CENTRE - (self.size - 1) / 2 * self.spacing
        for axis in range(3):
            if flip[axis]:
                affine[axis, axis] = -self.spacing
                affine[axis, 3] = origin[axis] + (self.size - 1) * self.spacing
            else:
                affine[axis, axis] = self.spacing
                affine[axis, 3] = origin[axis]
        return affine


@lru_cache(maxsize=2)
def _template() -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 T1 template that ships with nilearn: (data, voxel-to-world affine)."""
    from nilearn.datasets import load_mni152_template

    image = load_mni152_template(resolution=1)
    return np.asarray(image.get_fdata(), dtype=np.float32), np.asarray(image.affine)


@lru_cache(maxsize=1)
def _ventricle_distance() -> np.ndarray:
    """Distance (mm) from every template voxel to the lateral ventricles (dark, near the centre)."""
    from scipy.ndimage import distance_transform_edt

    data, affine = _template()
    ijk = np.indices(data.shape, dtype=np.float32)
    world = np.tensordot(affine[:3, :3], ijk, axes=1) + affine[:3, 3, None, None, None]
    near = (
        (np.abs(world[0]) < 22)
        & (world[1] > -45)
        & (world[1] < 25)
        & (world[2] > -5)
        & (world[2] < 35)
    )
    ventricles = near & (data > 0.02) & (data < 0.35)
    return distance_transform_edt(~ventricles).astype(np.float32)


def _sample(data: np.ndarray, affine: np.ndarray, world: np.ndarray, order: int = 1) -> np.ndarray:
    """Values of `data` at `world` points (3, ...), by interpolation; 0 outside."""
    from scipy.ndimage import map_coordinates

    inverse = np.linalg.inv(affine)
    flat = world.reshape(3, -1)
    voxel = inverse[:3, :3] @ flat + inverse[:3, 3:4]
    return map_coordinates(data, voxel, order=order, mode="constant", cval=0.0).reshape(
        world.shape[1:]
    )


def _bump(world: np.ndarray, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    offset = world - centre[:, None, None, None]
    weight = np.exp(-(offset**2).sum(0) / (2 * radius**2))
    return offset, weight


def brain(
    grid: Grid, rng: np.random.Generator, atrophy: float, age: float, female: bool
) -> np.ndarray:
    """One subject's brain on `grid`: (S, S, S) float32, template intensity (white matter ~1).

    `atrophy` (the subject's image-visible severity) enlarges the ventricles and shrinks and
    darkens the hippocampi; age adds to both; head size varies with sex and at random.
    """
    world = grid.world()
    head = rng.normal(1.0, 0.03) - (0.03 if female else 0.0)
    shift = rng.normal(0, 3.0, size=3)
    points = (world - BRAIN_CENTRE[:, None, None, None]) / head + BRAIN_CENTRE[:, None, None, None]
    return brain_at(points - shift[:, None, None, None], atrophy, age)


def brain_at(points: np.ndarray, atrophy: float, age: float) -> np.ndarray:
    """The deformed template brain at template-space `points` (3, ...): float32."""
    data, affine = _template()
    ageing = (age - 70.0) / 10.0
    # Sampling the template at warped points: a point pulled towards a centre expands what is
    # there (ventricles), a point pushed away from it shrinks it (hippocampi).
    offset, weight = _bump(points, VENTRICLE_CENTRE, 20.0)
    expand = np.clip(0.12 + 0.14 * atrophy + 0.05 * ageing, 0.0, 0.6)
    points = points - expand * offset * weight
    darken = np.zeros(points.shape[1:], dtype=np.float64)
    for centre in HIPPOCAMPUS_CENTRES:
        offset, weight = _bump(points, centre, 9.0)
        shrink = np.clip(0.10 * atrophy + 0.03 * ageing, 0.0, 0.5)
        points = points + shrink * offset * weight
        darken += np.clip(0.12 * atrophy, 0.0, 0.4) * weight
    # CSF spreads from the ventricles into the surrounding tissue as severity and age grow.
    spread = 0.5 + 2.0 * float(np.clip(atrophy + 0.3 * ageing, 0.0, 4.0))
    distance = _sample(_ventricle_distance(), affine, points)
    darken += 0.55 * np.exp(-distance / spread)
    out = _sample(data, affine, points) * np.clip(1.0 - darken, 0.05, 1.0)
    return out.astype(np.float32)


def scan(volume: np.ndarray, grid: Grid, scanner: Scanner, rng: np.random.Generator) -> np.ndarray:
    """`volume` as `scanner` records it: bias field, blur, Rician noise, scale, storage order."""
    out = scan_voxels(volume, grid.world(), scanner, rng)
    for axis, flipped in enumerate(scanner.flip):
        if flipped:
            out = np.flip(out, axis=axis)
    if np.issubdtype(np.dtype(scanner.dtype), np.integer):
        out = np.clip(np.round(out), 0, np.iinfo(scanner.dtype).max)
    return np.ascontiguousarray(out.astype(scanner.dtype))


def scan_voxels(
    volume: np.ndarray, world: np.ndarray, scanner: Scanner, rng: np.random.Generator
) -> np.ndarray:
    """Bias field (over the `world` coordinates of the voxels), blur, Rician noise, scale."""
    from scipy.ndimage import gaussian_filter

    world = (world - BRAIN_CENTRE[:, None, None, None]) / 100.0
    coefficients = rng.normal(0, scanner.bias, size=3)
    field = np.exp(np.tensordot(coefficients, world, axes=1) + scanner.bias * (world[2] ** 2))
    out = volume * field
    if scanner.blur > 0:
        out = gaussian_filter(out, scanner.blur)
    real = out + rng.normal(0, scanner.noise, out.shape)
    imag = rng.normal(0, scanner.noise, out.shape)
    return np.sqrt(real**2 + imag**2) * scanner.intensity


def template_mask_at(points: np.ndarray) -> np.ndarray:
    """Whether template-space `points` (3, ...) lie in the template's brain mask: bool."""
    from nilearn.datasets import load_mni152_brain_mask

    mask = load_mni152_brain_mask(resolution=1)
    inside = (np.asarray(mask.get_fdata()) > 0).astype(np.float32)
    return _sample(inside, np.asarray(mask.affine), points, order=1) >= 0.5


def nifti_gz_bytes(data: np.ndarray, affine: np.ndarray) -> bytes:
    """A .nii.gz file's bytes; byte-identical for identical inputs (gzip time stamp fixed)."""
    import nibabel as nib

    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    return gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)
