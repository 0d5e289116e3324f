"""The `t1-linear` pipeline, for scans as they come off the scanner: reorient, extract the brain
(deepbet), correct the bias field (N4) and register affinely to the MNI152 template (ANTsPy;
nilearn's template, nothing downloaded), then resample the masked brain onto the project grid,
a box in MNI space, and z-score it inside the brain."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from citab_cli.core.errors import CitabError
from citab_cli.core.scans.preprocess import Volume
from citab_cli.core.settings import ImageSettings

#: Bump when the pipeline changes what it writes: cached results of older versions are redone.
VERSION = "t1-linear-4"
STEPS = [
    "reorient to RAS (nibabel as_closest_canonical)",
    "brain extraction (deepbet 1.0's networks and the weights from its wheel, run by citab: "
    "the same mask, in less time)",
    "N4 bias-field correction inside the brain mask (ANTsPy; shrink 4, three fitting levels of "
    "25 iterations)",
    "affine registration of the brain, cropped to its bounding box, to the MNI152 template "
    "shipped in nilearn (ANTsPy; levels at 12, 8 and 4 mm, none at the template's 2 mm)",
    "brain image and mask resampled onto the project grid, a box in MNI space (linear; mask "
    "nearest neighbour)",
    "clip to the brain's intensity percentiles, z-score inside the brain, background constant",
    "store as float16",
]
#: ANTs' registration seed: its sampling of voxels is random, and a seed of 0 means "from the
#: clock" to ANTs, so the seed is 1.
REGISTRATION_SEED = 1
#: Affine registration's levels: iterations, shrink factors of the 2 mm template and smoothing
#: sigmas (voxels). ANTsPy's "Affine" schedule without its last level, at full resolution: it
#: costs as much as the three coarser levels together and moves the brain by 0.1-0.2 mm. (Asking
#: that level for 0 iterations still runs one, and its set-up, so the level is left out.)
AFFINE_LEVELS = {"aff_iterations": (2100, 1200, 1200), "aff_shrink_factors": (6, 4, 2),
                 "aff_smoothing_sigmas": (3, 2, 1)}  # fmt: skip
#: N4's fitting levels and iterations at each: three levels of 25 (a final B-spline mesh of 4
#: elements an axis) instead of ANTsPy's four of 50. On 12 synthetic heads with a known bias
#: field, all 12 came out closer to the true field than with the default (median residual
#: log-field 0.039 against 0.070; 0.077 uncorrected) in 0.84 s instead of 2.02 s
#: (benchmarks/n4_known_field.py, docs/performance.md).
N4_ITERATIONS = (25, 25, 25)
#: Voxels kept around the brain mask's bounding box when the brain is cropped for registration
#: (the neck and the empty field of view cost time and carry nothing once the brain is masked).
CROP_MARGIN = 4
#: How the pipeline gives identical output for identical input, as the manifest records it.
DETERMINISM = {
    "bit_identical": True,
    "brain_extraction": "deepbet on the CPU with one PyTorch thread (on a GPU: one worker per "
    "device, cuDNN may differ from the CPU in the last bits of the mask's edge)",
    "n4": "ANTs with one ITK thread",
    "registration": f"ANTs with one ITK thread and random seed {REGISTRATION_SEED}",
    "holds_for": "the same input, software versions and CPU instruction set, whatever the "
    "number of workers, processes or threads",
}
#: A brain outside this volume (ml) means brain extraction failed.
BRAIN_ML = (400.0, 2500.0)
#: Below this correlation with the template (inside its brain mask) registration failed.
MIN_TEMPLATE_CORRELATION = 0.3


@dataclass
class T1Result:
    """A scan through t1-linear: the volume on the project grid, the native brain mask and the
    seconds each step took."""

    volume: np.ndarray  # (D, H, W) float16 on the project grid
    native_mask: np.ndarray  # bool brain mask in the scan's RAS-reoriented voxel grid
    native_affine: np.ndarray  # its affine
    qc: dict = field(default_factory=dict)  # brain_ml, template_correlation, brain_fraction
    seconds: dict = field(default_factory=dict)  # per step


#: Words of an error raised by the device rather than by the scan.
DEVICE_ERRORS = ("out of memory", "cuda", "cublas", "cudnn", "nccl")
#: Whether this process runs brain extraction on its GPU: None decides by whether PyTorch sees
#: one; an ingest worker process is told (one worker per GPU uses it, the others the CPU).
_USE_GPU: bool | None = None


class DeviceFailure(CitabError):
    """The GPU, not the scan, failed during brain extraction: every scan would fail alike, so
    ingest stops instead of skipping subjects."""


def use_gpu_for_extraction(use: bool | None) -> None:
    """Tell this process whether brain extraction may use its current CUDA device (None: if
    PyTorch sees one)."""
    global _USE_GPU
    _USE_GPU = use


def extraction_device(worker: int, gpus: int) -> int | None:
    """The CUDA device of ingest worker number `worker` among `gpus` devices, or None for the
    CPU: one worker per GPU, so no GPU holds a CUDA context (and a model) per worker."""
    return worker if worker < gpus else None


def _extractor(cuda: bool):
    from citab_cli.core.scans.brain_extraction import extractor

    return extractor("cuda" if cuda else "cpu")


def _brain_mask(image, path: Path) -> np.ndarray:
    """deepbet's brain mask of a RAS image (bool, its voxel grid), or a CitabError naming the
    file."""
    import torch

    cuda = torch.cuda.is_available() if _USE_GPU is None else _USE_GPU
    threads = torch.get_num_threads()
    try:
        if not cuda:  # the same mask whatever the process's thread count
            torch.set_num_threads(1)
        mask = _extractor(cuda).mask(image.get_fdata(dtype=np.float32))
    except (AssertionError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        if isinstance(exc, torch.cuda.OutOfMemoryError) or any(
            word in first.lower() for word in DEVICE_ERRORS
        ):
            raise DeviceFailure(
                f"{path}: brain extraction failed on the GPU ({first}); ingest with fewer "
                "--workers, or on the CPU with CUDA_VISIBLE_DEVICES= (nothing was stored)"
            ) from None
        raise CitabError(
            f"{path}: brain extraction found no brain ({str(exc).splitlines()[0][:80]}); check "
            "that the file is a T1-weighted head scan, or use --on-bad-scan skip"
        ) from None
    finally:
        torch.set_num_threads(threads)
    return mask


def _deterministic_ants():
    """ANTsPy, set to give the same result for the same input: one ITK thread (its multi-threaded
    registration sums the metric in a varying order) and a fixed registration seed."""
    import os

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    import ants

    ants.config._random_seed = REGISTRATION_SEED  # what ants.registration passes as --random-seed
    return ants


@lru_cache(maxsize=4)
def template(settings: ImageSettings) -> tuple[np.ndarray, np.ndarray]:
    """nilearn's MNI152 template and its brain mask on the project grid."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template
    from nilearn.image import resample_img

    target = settings.grid_affine()
    kwargs = {"target_affine": target, "target_shape": settings.shape}
    tpl = resample_img(load_mni152_template(resolution=1), interpolation="continuous",
                       force_resample=True, copy_header=True, **kwargs)  # fmt: skip
    mask = resample_img(load_mni152_brain_mask(resolution=1), interpolation="nearest",
                        force_resample=True, copy_header=True, **kwargs)  # fmt: skip
    del nib
    return np.asarray(tpl.get_fdata(), np.float32), np.asarray(mask.get_fdata()) > 0


def correlation_with_template(volume: np.ndarray, settings: ImageSettings) -> float:
    """Pearson correlation of a grid volume with the template, inside the template's brain."""
    tpl, mask = template(settings)
    a, b = volume[mask].astype(np.float64), tpl[mask].astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _ants_image(folder: Path, name: str, data: np.ndarray, affine: np.ndarray):
    """An ANTs image of a RAS array, through an uncompressed NIfTI in `folder` (ANTs reads
    the orientation from its header; compressing a scratch file only costs time)."""
    import nibabel as nib

    path = folder / f"{name}.nii"
    nib.save(nib.Nifti1Image(data, affine), path)
    return _deterministic_ants().image_read(str(path))


@lru_cache(maxsize=1)
def _mni_2mm():
    """The 2 mm MNI152 template as an ANTs image, read once per process."""
    from nilearn.datasets import load_mni152_template

    with tempfile.TemporaryDirectory(prefix="citab-t1-") as tmp:
        template_2mm = load_mni152_template(resolution=2)
        return _ants_image(Path(tmp), "t", np.asarray(template_2mm.dataobj, np.float32),
                           template_2mm.affine)  # fmt: skip


def n4(image, mask):
    """N4 bias-field correction inside the brain mask: shrink 4, N4_ITERATIONS."""
    convergence = {"iters": list(N4_ITERATIONS), "tol": 1e-7}
    return _deterministic_ants().n4_bias_field_correction(image, mask=mask,
                                                          convergence=convergence)  # fmt: skip


def crop_to_brain(image, mask: np.ndarray):
    """`image` (an ANTs image on the mask's voxel grid) cut to the mask's bounding box and
    CROP_MARGIN voxels around it; its physical position is kept."""
    found = np.nonzero(mask)
    lower = [max(0, int(axis.min()) - CROP_MARGIN) for axis in found]
    upper = [
        min(n, int(axis.max()) + CROP_MARGIN + 1) for axis, n in zip(found, mask.shape, strict=True)
    ]
    return _deterministic_ants().crop_indices(image, lower, upper)


def register(brain):
    """Affine registration of a masked brain (an ANTs image) to the 2 mm MNI152 template; the
    forward transforms, moving to template."""
    ants = _deterministic_ants()
    result = ants.registration(fixed=_mni_2mm(), moving=brain, type_of_transform="Affine",
                               **AFFINE_LEVELS)  # fmt: skip
    return result["fwdtransforms"]


def _register(folder: Path, head, mask: np.ndarray, settings: ImageSettings, seconds: dict):
    """N4, then affine registration of the brain to MNI; returns (brain, mask) on the grid."""
    ants = _deterministic_ants()
    image = _ants_image(folder, "h", np.asarray(head.dataobj, np.float32), head.affine)
    ants_mask = _ants_image(folder, "m", mask.astype(np.uint8), head.affine)
    start = time.perf_counter()
    corrected = n4(image, ants_mask)
    seconds["n4"] = time.perf_counter() - start
    start = time.perf_counter()
    brain = crop_to_brain(corrected * ants_mask, mask)
    brain_mask = crop_to_brain(ants_mask, mask)
    transforms = register(brain)
    seconds["registration"] = time.perf_counter() - start
    start = time.perf_counter()
    reference = _ants_image(folder, "g", np.zeros(settings.shape, np.float32),
                            settings.grid_affine())  # fmt: skip
    moved = ants.apply_transforms(reference, brain, transforms, interpolator="linear")
    moved_mask = ants.apply_transforms(reference, brain_mask, transforms,
                                       interpolator="nearestNeighbor")  # fmt: skip
    out, out_mask = _ras_array(folder, "out", moved), _ras_array(folder, "out_mask", moved_mask)
    seconds["resample"] = time.perf_counter() - start
    return out.astype(np.float32), out_mask > 0.5


def _ras_array(folder: Path, name: str, image) -> np.ndarray:
    """An ANTs image on the project grid as the RAS array nibabel reads."""
    import nibabel as nib

    path = folder / f"{name}.nii"
    _deterministic_ants().image_write(image, str(path))
    return np.asarray(nib.load(path).get_fdata(), np.float32)


def t1_linear(volume: Volume, path: Path, settings: ImageSettings) -> T1Result:
    """The pipeline on one decoded scan; every failure is a CitabError naming `path`."""
    import nibabel as nib

    seconds: dict = {}
    canonical = nib.as_closest_canonical(nib.Nifti1Image(volume.data, volume.affine))
    start = time.perf_counter()
    mask = _brain_mask(canonical, path)
    seconds["brain_extraction"] = time.perf_counter() - start
    voxel_ml = float(np.prod(canonical.header.get_zooms()[:3])) / 1000.0
    brain_ml = float(mask.sum() * voxel_ml)
    if not BRAIN_ML[0] <= brain_ml <= BRAIN_ML[1]:
        raise CitabError(
            f"{path}: brain extraction found {brain_ml:.0f} ml of brain (a brain is "
            f"{BRAIN_ML[0]:.0f}-{BRAIN_ML[1]:.0f} ml); check that the file is a whole T1 "
            "head scan, or use --on-bad-scan skip"
        )
    with tempfile.TemporaryDirectory(prefix="citab-t1-") as tmp:
        brain, grid_mask = _register(Path(tmp), canonical, mask, settings, seconds)
    if grid_mask.sum() < 8:
        raise CitabError(f"{path}: registration to MNI152 moved the brain off the grid; "
                         "check the scan's orientation, or use --on-bad-scan skip")  # fmt: skip
    correlation = correlation_with_template(np.where(grid_mask, brain, 0.0), settings)
    if correlation < MIN_TEMPLATE_CORRELATION:
        raise CitabError(
            f"{path}: registration to MNI152 failed (correlation {correlation:.2f} with the "
            "template); check the scan, or use --on-bad-scan skip"
        )
    stored = _normalise(brain, grid_mask, settings)
    qc = {
        "brain_ml": round(brain_ml, 1),
        "template_correlation": round(correlation, 4),
        "brain_fraction": round(float(grid_mask.mean()), 4),
    }
    return T1Result(stored, mask, canonical.affine, qc, seconds)


def _normalise(brain: np.ndarray, mask: np.ndarray, settings: ImageSettings) -> np.ndarray:
    inside = brain[mask]
    lo, hi = np.percentile(inside, settings.clip_percentiles)
    clipped = np.clip(inside, lo, hi)
    mean, std = float(clipped.mean()), float(clipped.std()) or 1.0
    out = np.full(brain.shape, (lo - mean) / std, np.float32)  # background: below the brain
    out[mask] = (clipped - mean) / std
    return out.astype(np.float16)
