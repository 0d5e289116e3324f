"""Preprocessing one MRI volume onto the project's grid (run once, at ingest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citab_cli.core.errors import CitabError
from citab_cli.core.settings import ImageSettings

#: Bump when the minimal pipeline changes what it writes: older cached results are redone.
VERSION = "minimal-1"
#: The `minimal` pipeline, step by step, as recorded in each manifest.
PREPROCESSING_STEPS = [
    "reorient to RAS (torchio ToCanonical)",
    "resample to the project spacing (linear)",
    "crop/pad to the project shape around the foreground (voxels above the mean)",
    "clip to the foreground intensity percentiles",
    "z-score with the foreground mean and standard deviation",
    "store as float16",
]
STEPS = PREPROCESSING_STEPS
#: How the pipeline gives identical output for identical input, as the manifest records it.
DETERMINISM = {
    "bit_identical": True,
    "how": "no random step; resampling and statistics do not depend on the thread count",
    "holds_for": "the same input, software versions and CPU instruction set, whatever the "
    "number of workers, processes or threads",
}


@dataclass(frozen=True)
class Volume:
    """A decoded scan: (X, Y, Z) float32 voxels and the 4x4 voxel-to-world affine."""

    data: np.ndarray
    affine: np.ndarray


def load_volume(path: Path) -> Volume:
    """Read a NIfTI file and check it holds one finite, non-empty 3D volume."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as exc:  # any decoder failure is a property of the user's file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CitabError(
            f"{path}: cannot read this NIfTI file ({reason[:160]}); it is truncated "
            "or not NIfTI: re-export or re-download it"
        ) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        raise CitabError(
            f"{path}: holds {data.shape[3]} volumes {data.shape}; citab needs one 3D "
            "T1 volume per file: extract the one you want (e.g. fslroi)"
        )
    if data.ndim != 3 or min(data.shape) < 2:
        raise CitabError(
            f"{path}: is not a 3D volume (shape {data.shape}); citab needs a 3D T1 scan per subject"
        )
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise CitabError(
            f"{path}: {bad} voxel(s) are NaN or infinite; fix the export (or replace them with 0)"
        )
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise CitabError(f"{path}: the voxel-to-world affine is invalid; fix the NIfTI header")
    if float(data.max()) == float(data.min()):
        raise CitabError(
            f"{path}: the volume is empty (every voxel is {float(data.max()):g}); "
            "re-export the scan"
        )
    return Volume(data=data, affine=affine)


def _foreground(data: np.ndarray) -> np.ndarray:
    """Voxels brighter than the volume mean: the head (or brain) against the background."""
    return data > data.mean()


def to_grid(volume: Volume, settings: ImageSettings) -> np.ndarray:
    """Reorient to RAS, resample to the project spacing, crop/pad around the foreground,
    clip to the intensity percentiles and z-score inside the foreground.

    Returns a (D, H, W) float16 array of `settings.shape`.
    """
    import torch
    import torchio as tio

    subject = tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(volume.data[None]), affine=volume.affine)
    )
    subject = tio.ToCanonical()(subject)
    subject = tio.Resample(settings.spacing, image_interpolation="linear")(subject)
    resampled = subject["image"].data[0].numpy()
    subject.add_image(
        tio.LabelMap(
            tensor=torch.from_numpy(_foreground(resampled)[None]).to(torch.uint8),
            affine=subject["image"].affine,
        ),
        "foreground",
    )
    subject = tio.CropOrPad(settings.shape, padding_mode="minimum", mask_name="foreground")(subject)
    data = subject["image"].data[0].numpy().astype(np.float32)
    mask = _foreground(data)
    if mask.sum() < 8:
        raise CitabError(
            "after resampling, the image has almost no foreground; check its "
            "orientation and spacing in the NIfTI header"
        )
    lo, hi = np.percentile(data[mask], settings.clip_percentiles)
    data = np.clip(data, lo, hi)
    inside = data[mask]
    std = float(inside.std())
    data = (data - float(inside.mean())) / (std if std > 0 else 1.0)
    return data.astype(np.float16)
