"""Running a preprocessing pipeline over a cohort's scans: DICOM conversion, the pipeline of
choice, a cache keyed by the source's content, QC figures per scan, and the worker pool."""

from __future__ import annotations

import hashlib
import json
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
    converted DICOM series and finished scans are cached (None: no cache). Finished scans are
    read from the cache whenever it holds them, and written to it when `store` is set (by
    t1-linear, and by every cluster or shard run: the cache is where workers meet)."""

    pipeline: str
    settings: ImageSettings
    cache: Path | None = None
    series: str | int | None = None  # the T1 series of DICOM folders
    store: bool = True

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
    peak_mb: float = 0.0  # the peak resident memory of the process that ran it, MB


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


def load_cached(folder: Path | None, digest: str) -> Preprocessed | None:
    """The finished scan stored under `digest` in `folder`, or None (a damaged entry too)."""
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
    """Write a finished scan to the cache, atomically: a worker killed while writing leaves no
    entry, and two workers finishing the same scan leave one whole one (the last rename)."""
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
        cached = load_cached(job.result_folder(), digest)
        if cached is not None:
            return cached
        volume = preprocess.load_volume(_readable(path, job))
        zooms = np.sqrt((volume.affine[:3, :3] ** 2).sum(axis=0))
        done = _run(volume, path, job, zooms)
        done.sha256, done.source_spacing = digest, tuple(float(z) for z in zooms)
        if job.store:
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


def describe_failures(failures: dict[int, str], origins: list[str]) -> str:
    """One message: the first failure (with its CSV line), and how many more there are."""
    index = min(failures)
    more = f" (and {len(failures) - 1} more unreadable image(s))" if len(failures) > 1 else ""
    return f"{origins[index]}: {failures[index]}{more}"
