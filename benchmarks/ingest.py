"""Image preprocessing throughput of `citab ingest`. Prints JSON.

`--pipeline minimal` (default): writes N scans shaped like the paper's input (1 mm, 160x208x176,
int16 .nii.gz, built from the MNI152 template with noise) and times the preprocessing onto a
128^3 project grid (1.5 mm) with each --workers value: reading, decoding and preprocessing
included, and for --workers > 1 the start-up of the worker processes.

`--pipeline t1-linear`: writes N synthetic whole-head scans (skull, neck, random pose, `--raw-size`
voxels a side) and reports seconds per scan for each step (brain extraction, N4, registration,
resampling) on the CPU and, where PyTorch sees one, with brain extraction on CUDA.

    python benchmarks/ingest.py --volumes 48 --workers 1 2
    python benchmarks/ingest.py --pipeline t1-linear --volumes 4 --target 48
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _write_scans(folder: Path, count: int, shape: tuple[int, int, int]) -> list[Path]:
    import nibabel as nib
    from nilearn.datasets import load_mni152_template

    template = np.asarray(load_mni152_template(resolution=1).get_fdata(), dtype=np.float32)
    canvas = np.zeros(shape, dtype=np.float32)
    src = tuple(
        slice(max(0, (t - s) // 2), max(0, (t - s) // 2) + min(t, s))
        for t, s in zip(template.shape, shape, strict=True)
    )
    dst = tuple(
        slice(max(0, (s - t) // 2), max(0, (s - t) // 2) + min(t, s))
        for t, s in zip(template.shape, shape, strict=True)
    )
    canvas[dst] = template[src]
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -np.array(shape) / 2
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        noisy = canvas * 900 + np.abs(rng.normal(0, 20, shape))
        path = folder / f"scan{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(noisy.astype(np.int16), affine), path)
        paths.append(path)
    return paths


def write_heads(folder: Path, count: int, size: int) -> list[Path]:
    """`count` synthetic whole-head scans (skull, neck, random pose), `size` voxels a side."""
    from citab_cli.core.synth import anatomy, head
    from citab_cli.core.synth.cohorts import COHORTS

    paths = []
    for i in range(count):
        scan = head.raw_scan(anatomy.Grid(size), np.random.default_rng(i), 1.0, 72.0,
                             bool(i % 2), COHORTS["adni"].scanner)  # fmt: skip
        paths.append(folder / f"head{i}.nii.gz")
        paths[-1].write_bytes(anatomy.nifti_gz_bytes(scan.data, scan.affine))
    return paths


def mni_settings(target: int):
    """A project grid of `target`^3 voxels over the MNI box, as t1-linear projects have."""
    from citab_cli.core.settings import ImageSettings, mni_grid

    spacing, affine = mni_grid((target,) * 3)
    return ImageSettings(shape=(target,) * 3, spacing=spacing, affine=affine, space="mni152")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--target", type=int, default=128, help="project grid edge (voxels)")
    parser.add_argument("--pipeline", choices=["minimal", "t1-linear"], default="minimal")
    parser.add_argument("--raw-size", type=int, default=128, help="t1-linear: scan edge")
    args = parser.parse_args(argv)
    if args.pipeline == "t1-linear":
        return _t1_linear(args)

    from citab_cli.core.scans.engines import preprocess_all
    from citab_cli.core.scans.pipelines import Job
    from citab_cli.core.settings import ImageSettings, default_spacing

    source_shape = (160, 208, 176)
    grid = (args.target,) * 3
    settings = ImageSettings(shape=grid, spacing=default_spacing(grid))
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": sys.version.split()[0],
        },
        "source": "1 mm 160x208x176 int16 .nii.gz",
        "target": f"{args.target}^3 at {settings.spacing[0]} mm, float16",
        "volumes": args.volumes,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_scans(Path(tmp), args.volumes, source_shape)
        import torchio  # noqa: F401  (warm: the in-process run should not time its import)

        report["source_file_mb"] = round(paths[0].stat().st_size / 2**20, 2)
        for workers in args.workers:
            store = np.zeros((len(paths), *grid), dtype=np.float16)

            def sink(index: int, done, store=store) -> None:
                store[index] = done.volume

            start = time.perf_counter()
            preprocess_all(paths, Job("minimal", settings), workers, sink)
            seconds = time.perf_counter() - start
            report["runs"].append(
                {
                    "workers": workers,
                    "seconds": round(seconds, 2),
                    "volumes_per_s": round(len(paths) / seconds, 2),
                }
            )
    base = report["runs"][0]["volumes_per_s"]
    for run in report["runs"]:
        run["speedup_vs_first"] = round(run["volumes_per_s"] / base, 2)
    json.dump(report, sys.stdout, indent=2)
    print()
    return report


def _t1_linear(args) -> dict:
    """Seconds per scan of each t1-linear step, on the CPU and (if present) on CUDA."""
    import torch

    from citab_cli.core.scans import brain_extraction, t1_linear
    from citab_cli.core.scans.preprocess import load_volume

    settings = mni_settings(args.target)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report = {"pipeline": "t1-linear", "scans": args.volumes,
              "scan": f"{args.raw_size} voxels a side, {240 / args.raw_size:.2f} mm",
              "grid": f"{args.target}^3 MNI box", "threads": torch.get_num_threads(),
              "cuda": torch.cuda.get_device_name(0) if "cuda" in devices else None,
              "seconds_per_scan": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_heads(Path(tmp), args.volumes, args.raw_size)
        for device in devices:
            brain_extraction.extractor.cache_clear()
            original = torch.cuda.is_available
            torch.cuda.is_available = lambda device=device: device == "cuda"  # type: ignore
            try:
                t1_linear.t1_linear(load_volume(paths[0]), paths[0], settings)  # warm-up
                steps: dict[str, list[float]] = {}
                for path in paths:
                    done = t1_linear.t1_linear(load_volume(path), path, settings)
                    for step, seconds in done.seconds.items():
                        steps.setdefault(step, []).append(seconds)
            finally:
                torch.cuda.is_available = original  # type: ignore
            per = {k: round(float(np.mean(v)), 2) for k, v in steps.items()}
            per["total"] = round(sum(per.values()), 2)
            report["seconds_per_scan"][device] = per
    json.dump(report, sys.stdout, indent=2)
    print()
    return report


if __name__ == "__main__":
    main()
