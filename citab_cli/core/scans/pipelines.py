"""Running a preprocessing pipeline over a cohort's scans: DICOM conversion, the pipeline of
choice, a cache keyed by the source's content, QC figures per scan, and the worker pool."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from citab_cli.core import hashing
from citab_cli.core.errors import CitabError
from citab_cli.core.scans import preprocess
from citab_cli.core.settings import ImageSettings

PIPELINES = ("minimal", "t1-linear")
#: A scan narrower than this (mm) along an axis is a localiser or a slab, not a head.
MIN_FIELD_OF_VIEW_MM = 60.0


@dataclass(frozen=True)
class Job:
    """What every scan of a cohort goes through: the pipeline on the project grid, and where
    converted DICOM series and finished scans are cached (None: no cache)."""

    pipeline: str
    settings: ImageSettings
    cache: Path | None = None
    series: str | int | None = None  # the T1 series of DICOM folders

    @property
    def version(self) -> str:
        """The version of the pipeline the job runs (a new version redoes cached scans)."""
        from citab_cli.core.scans import t1_linear

        return t1_linear.VERSION if self.pipeline == "t1-linear" else preprocess.VERSION

    def result_folder(self) -> Path | None:
        """cache/<pipeline version>-<grid digest>: a result depends on both."""
        if self.cache is None:
            return None
        grid = json.dumps(self.settings.model_dump(mode="json"), sort_keys=True)
        digest = hashlib.sha256(grid.encode()).hexdigest()[:12]
        return self.cache / "scans" / f"{self.version}-{digest}"


@dataclass
class Preprocessed:
    """One scan on the project grid, with what ingest records about its source."""

    volume: np.ndarray  # (D, H, W) float16
    sha256: str  # of the source file (of a DICOM series: of its files)
    source_spacing: tuple[float, float, float]  # mm, as stored in the source header
    qc: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)  # per pipeline step
    cached: bool = False


def source_digest(path: Path, job: Job) -> str:
    """The content hash a scan is cached by: the file's sha256, or a DICOM series' hash."""
    if path.is_dir():
        from citab_cli.core.scans import dicom

        return dicom.content_hash(dicom.choose(dicom.read_series(path), job.series, path).files)
    return hashing.file_sha256(path)


def _readable(path: Path, job: Job) -> Path:
    """A NIfTI file for `path`: itself, or its DICOM series converted (once) by dcm2niix."""
    if not path.is_dir():
        return path
    from citab_cli.core.scans import dicom

    cache = job.cache / "dicom" if job.cache is not None else Path(path) / ".citab-dicom"
    return dicom.to_nifti(path, cache, job.series)


def _load_cached(folder: Path | None, digest: str) -> Preprocessed | None:
    if folder is None or not (folder / f"{digest}.npz").is_file():
        return None
    try:
        with np.load(folder / f"{digest}.npz") as stored:
            meta = json.loads(str(stored["meta"]))
            return Preprocessed(
                stored["volume"], digest, tuple(meta["spacing"]), meta["qc"], {}, cached=True
            )
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache entry is simply redone


def _store_cached(folder: Path | None, done: Preprocessed) -> None:
    if folder is None:
        return
    import io

    from citab_cli.core import atomic

    meta = json.dumps({"spacing": list(done.source_spacing), "qc": done.qc})
    buffer = io.BytesIO()
    np.savez(buffer, volume=done.volume, meta=np.array(meta))
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(folder / f"{done.sha256}.npz", buffer.getvalue())


def preprocess_file(path: Path, job: Job) -> Preprocessed:
    """Load, check and preprocess one scan (or reuse its cached result)."""
    try:
        digest = source_digest(path, job)
        cached = _load_cached(job.result_folder(), digest)
        if cached is not None:
            return cached
        volume = preprocess.load_volume(_readable(path, job))
        zooms = np.sqrt((volume.affine[:3, :3] ** 2).sum(axis=0))
        done = _run(volume, path, job, zooms)
        done.sha256, done.source_spacing = digest, tuple(float(z) for z in zooms)
        _store_cached(job.result_folder(), done)
        return done
    except CitabError as exc:
        message = str(exc)
        if not message.startswith(str(path)):
            message = f"{path}: {message}"
        raise CitabError(message) from None


def _run(volume: preprocess.Volume, path: Path, job: Job, zooms) -> Preprocessed:
    if job.pipeline == "minimal":
        grid = preprocess.to_grid(volume, job.settings)
        fraction = float((grid > grid.min()).mean())
        return Preprocessed(grid, "", (0, 0, 0), {"brain_fraction": round(fraction, 4)})
    from citab_cli.core.scans.t1_linear import t1_linear

    view = np.array(volume.data.shape) * zooms
    if view.min() < MIN_FIELD_OF_VIEW_MM:
        raise CitabError(
            f"covers only {view.min():.0f} mm along one axis (shape {volume.data.shape}): a "
            "localiser or a slab, not a 3D head scan; use the subject's 3D T1, or "
            "--on-bad-scan skip"
        )
    result = t1_linear(volume, path, job.settings)
    return Preprocessed(result.volume, "", (0, 0, 0), result.qc, result.seconds)


def _init_worker(counter=None) -> None:
    """One thread per worker process: the processes are the parallelism. With `counter` (a
    shared integer), each worker takes the next number: worker k uses CUDA device k for brain
    extraction when there is one, the CPU otherwise."""
    import SimpleITK
    import torch
    import torchio  # noqa: F401  (imported once per worker, not per volume)

    from citab_cli.core.scans import t1_linear

    torch.set_num_threads(1)
    SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    if counter is not None:
        with counter.get_lock():
            worker = counter.value
            counter.value += 1
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device = t1_linear.extraction_device(worker, gpus)
        if device is not None:
            torch.cuda.set_device(device)
        t1_linear.use_gpu_for_extraction(device is not None)


def _job(index: int, path: Path, job: Job):
    from citab_cli.core.scans.t1_linear import DeviceFailure

    try:
        return index, preprocess_file(path, job), None
    except DeviceFailure:
        raise  # the device failed, not the scan: stop rather than skip subjects
    except CitabError as exc:
        return index, None, str(exc)


def preprocess_all(
    paths: list[Path],
    job: Job,
    workers: int,
    sink: Callable[[int, Preprocessed], None],
    advance: Callable[[], None] | None = None,
) -> dict[int, str]:
    """Preprocess every file, in `workers` processes, handing each result to `sink`; returns
    {index: message} of the files that failed (the caller decides: stop, or skip them)."""
    failures: dict[int, str] = {}

    def accept(result) -> None:
        index, done, error = result
        if error is not None:
            failures[index] = error
        else:
            sink(index, done)
        if advance is not None:
            advance()

    if workers <= 1 or len(paths) <= 1:
        for index, path in enumerate(paths):
            accept(_job(index, path, job))
        return failures
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(counter,)
    ) as pool:
        futures = [pool.submit(_job, i, p, job) for i, p in enumerate(paths)]
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
    return failures


def describe_failures(failures: dict[int, str], origins: list[str]) -> str:
    """One message: the first failure (with its CSV line), and how many more there are."""
    index = min(failures)
    more = f" (and {len(failures) - 1} more unreadable image(s))" if len(failures) > 1 else ""
    return f"{origins[index]}: {failures[index]}{more}"
