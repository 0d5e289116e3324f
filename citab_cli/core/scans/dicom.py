"""DICOM series in: a folder of DICOM files is converted once with dcm2niix (the binary ships in
its PyPI wheel), the T1 series chosen when the folder holds several, the result cached by the
series' content hash."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from citab_cli.core import atomic, hashing
from citab_cli.core.errors import CitabError

#: Series descriptions that name a T1-weighted structural scan, when the schema says nothing.
T1_WORDS = re.compile(r"t1|mprage|mp-rage|mp_rage|spgr|bravo|tfe|ir-fspgr", re.IGNORECASE)
#: Seconds dcm2niix may take for one series.
CONVERT_TIMEOUT = 300


@dataclass(frozen=True)
class Series:
    """One DICOM series of a folder: its uid, number, description and files."""

    uid: str
    number: int | None
    description: str
    files: tuple[Path, ...]


def read_series(folder: Path) -> list[Series]:
    """The DICOM series under `folder` (files that are not DICOM are ignored)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    groups: dict[str, list] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, AttributeError):
            continue
        uid = str(getattr(header, "SeriesInstanceUID", "") or "")
        if not uid:
            continue
        groups.setdefault(uid, []).append((path, header))
    out = []
    for uid, members in groups.items():
        first = members[0][1]
        number = getattr(first, "SeriesNumber", None)
        out.append(
            Series(
                uid,
                int(number) if number not in (None, "") else None,
                str(getattr(first, "SeriesDescription", "") or ""),
                tuple(p for p, _ in members),
            )
        )
    return sorted(out, key=lambda s: (s.number is None, s.number or 0, s.uid))


def choose(series: list[Series], wanted: str | int | None, folder: Path) -> Series:
    """The series the schema names (description regex or number), or the one T1 series."""
    described = ", ".join(f"{s.number}: '{s.description}'" for s in series) or "none"
    if not series:
        raise CitabError(f"{folder}: no readable DICOM series in this folder; check the files")
    if wanted is not None:
        if isinstance(wanted, int) or str(wanted).isdigit():
            picks = [s for s in series if s.number == int(wanted)]
        else:
            picks = [s for s in series if re.search(str(wanted), s.description, re.IGNORECASE)]
    elif len(series) == 1:
        picks = series
    else:
        picks = [s for s in series if T1_WORDS.search(s.description)]
    if len(picks) == 1:
        return picks[0]
    what = f"series '{wanted}'" if wanted is not None else "one T1 series"
    raise CitabError(
        f"{folder}: expected {what}, found {len(picks)} among {len(series)} series "
        f"({described}); name the T1 series in the schema's image: {{series: ...}}"
    )


def content_hash(files: tuple[Path, ...]) -> str:
    """sha256 of a series: every file's name and bytes, in name order."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.name.encode() + b"\0")
        hashing.feed_file(digest, path)
    return digest.hexdigest()


def to_nifti(folder: Path, cache: Path, wanted: str | int | None = None) -> Path:
    """The chosen series as NIfTI, converted once: cache/<content sha256>.nii.gz."""
    import dcm2niix

    series = choose(read_series(folder), wanted, folder)
    target = cache / f"{content_hash(series.files)}.nii.gz"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="citab-dicom-") as tmp:
        source, out = Path(tmp) / "in", Path(tmp) / "out"
        source.mkdir()
        out.mkdir()
        for i, path in enumerate(series.files):
            shutil.copy(path, source / f"{i:05d}.dcm")
        try:
            done = subprocess.run(
                [dcm2niix.bin, "-z", "y", "-b", "n", "-f", "series", "-o", str(out), str(source)],
                capture_output=True,
                text=True,
                timeout=CONVERT_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CitabError(f"{folder}: dcm2niix could not convert the series ({exc})") from None
        made = sorted(out.glob("*.nii.gz"), key=lambda p: p.stat().st_size)
        if done.returncode != 0 or not made:
            reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise CitabError(
                f"{folder}: dcm2niix could not convert series {series.number} "
                f"'{series.description}' ({reason[0][:120]}); check the DICOM files"
            )
        # atomic, and safe when two workers convert the same series: both write a whole file
        atomic.write_bytes(target, made[-1].read_bytes())
    return target
