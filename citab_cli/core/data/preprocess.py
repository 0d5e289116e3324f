"""Preprocessing one MRI volume onto the project's grid (run once, at ingest)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citab_cli.core.errors import CitabError
from citab_cli.core.settings import ImageSettings

#: The `minimal` pipeline, step by step, as recorded in each manifest.
PREPROCESSING_STEPS = [
    "reorient to RAS (torchio ToCanonical)",
    "resample to the project spacing (linear)",
    "crop/pad to the project shape around the foreground (voxels above the mean)",
    "clip to the foreground intensity percentiles",
    "z-score with the foreground mean and standard deviation",
    "store as float16",
]


@dataclass(frozen=True)
class Volume:
    """A decoded scan: (X, Y, Z) float32 voxels and the 4x4 voxel-to-world affine."""

    data: np.ndarray
    affine: np.ndarray


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


@dataclass(frozen=True)
class Preprocessed:
    """One scan on the project grid, with what ingest records about its source."""

    volume: np.ndarray  # (D, H, W) float16
    sha256: str  # of the source file
    source_spacing: tuple[float, float, float]  # mm, as stored in the source header


def preprocess_file(path: Path, settings: ImageSettings) -> Preprocessed:
    """Load, check and preprocess one scan."""
    try:
        volume = load_volume(path)
        spacing = np.sqrt((volume.affine[:3, :3] ** 2).sum(axis=0))
        return Preprocessed(
            volume=to_grid(volume, settings),
            sha256=file_sha256(path),
            source_spacing=tuple(float(s) for s in spacing),  # type: ignore[arg-type]
        )
    except CitabError as exc:
        message = str(exc)
        if not message.startswith(str(path)):
            message = f"{path}: {message}"
        raise CitabError(message) from None


def _init_worker() -> None:
    """One thread per worker process: the processes are the parallelism."""
    import SimpleITK
    import torch
    import torchio  # noqa: F401  (imported once per worker, not per volume)

    torch.set_num_threads(1)
    SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _preprocess_job(index: int, path: Path, settings: ImageSettings):
    try:
        return index, preprocess_file(path, settings), None
    except CitabError as exc:
        return index, None, str(exc)


def preprocess_all(
    paths: list[Path],
    settings: ImageSettings,
    workers: int,
    sink: Callable[[int, Preprocessed], None],
    progress: Callable[[], None] | None = None,
    origins: list[str] | None = None,
) -> None:
    """Preprocess every file, in `workers` processes, handing each result to `sink`.

    Every unreadable file is collected; if any, one CitabError names the first (prefixed with
    its `origins` entry, e.g. the CSV line it came from) and counts the rest.
    """
    failures: list[tuple[int, str]] = []

    def accept(result) -> None:
        index, done, error = result
        if error is not None:
            failures.append((index, error))
        else:
            sink(index, done)
        if progress is not None:
            progress()

    if workers <= 1 or len(paths) <= 1:
        for index, path in enumerate(paths):
            accept(_preprocess_job(index, path, settings))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker
        ) as pool:
            futures = [pool.submit(_preprocess_job, i, p, settings) for i, p in enumerate(paths)]
            try:
                for future in as_completed(futures):
                    accept(future.result())
            except BrokenProcessPool:
                raise CitabError(
                    "an image preprocessing worker died (out of memory?); retry with "
                    "fewer --workers, e.g. --workers 1"
                ) from None
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    if failures:
        failures.sort()
        index, message = failures[0]
        origin = f"{origins[index]}: " if origins else ""
        more = f" (and {len(failures) - 1} more unreadable image(s))" if len(failures) > 1 else ""
        raise CitabError(origin + message + more)
