"""Which pipeline a drafted schema proposes for a cohort's scans, and why: `minimal` for scans
already skull-stripped or registered to one grid, `t1-linear` for scans as scanners write
them. Read from a few NIfTI files when the draft is given the scans' folder."""

from __future__ import annotations

from pathlib import Path

#: Scans looked at (headers of all of them; voxels of the first few).
SAMPLED = 5
VOXELS_READ = 3
#: A share of voxels at exactly the scan's minimum above this reads as a background removed
#: by brain extraction (scanners write noise there).
STRIPPED_SHARE = 0.3


def _stripped(path: Path) -> float:
    """The share of voxels exactly at the scan's minimum."""
    import nibabel as nib
    import numpy as np

    data = np.asanyarray(nib.load(str(path)).dataobj)
    return float((data <= data.min()).mean()) if data.size else 0.0


def propose(folder: Path | None, files: list[str] | None) -> tuple[str, str]:
    """(pipeline, the reason in words) for the scans `files` under `folder`."""
    import nibabel as nib

    nifti = [f for f in files or [] if f.lower().endswith((".nii", ".nii.gz"))][:SAMPLED]
    if folder is None or not nifti:
        return "t1-linear", (
            "assumed: whole-head scans as scanners write them; draft with --images to check, "
            "minimal if they are skull-stripped and registered"
        )
    try:
        headers = [nib.load(str(folder / f)) for f in nifti]
        shares = [_stripped(folder / f) for f in nifti[:VOXELS_READ]]
    except Exception:  # nibabel raises many types for unreadable files; ingest reports them
        return "t1-linear", "the sampled scans could not be read; check them before ingesting"
    same_grid = len({(h.shape, h.affine.round(3).tobytes()) for h in headers}) == 1
    ras = all(nib.aff2axcodes(h.affine) == ("R", "A", "S") for h in headers)
    stripped = min(shares) >= STRIPPED_SHARE
    n = len(headers)
    if stripped:
        return "minimal", (
            f"{len(shares)} sampled scans look skull-stripped (at least "
            f"{min(shares):.0%} of voxels at their minimum)"
        )
    if same_grid and ras and n > 1:
        return "minimal", f"{n} sampled scans share one RAS grid: already registered"
    return "t1-linear", (
        f"{n} sampled scans differ in grid or orientation and keep their background: as "
        "scanners write them"
    )
