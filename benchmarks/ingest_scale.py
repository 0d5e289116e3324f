"""Ingest at scale: t1-linear scans per second through each engine, in one run. Prints JSON.

Writes N synthetic whole-head scans (skull, neck, random pose; `--raw-size` voxels a side over
240 mm) and preprocesses them onto a `--target`^3 MNI grid, each engine starting from an empty
cache:

- `serial`: this process, one scan after another (`--workers 1`);
- `pool-K`: the local process pool (`--workers K`), its start-up included;
- `dask-K`: a Dask LocalCluster of K one-thread worker processes (`--scheduler`), the cluster's
  start-up reported apart (a real cluster is started once, for many ingests).

Ratios are scans/s over the serial run's. It also measures the scheduler's overhead per task
(`--overhead-tasks` empty tasks through the 2-worker cluster) and, for each step of t1-linear,
the peak resident memory of a fresh process that runs only that step (its libraries and input
loaded first, reported as the baseline).

    python benchmarks/ingest_scale.py --scans 8 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, for its head writer
from ingest import mni_settings, write_heads  # noqa: E402

STEPS = ("brain_extraction", "n4", "registration")


def _timed(paths: list[Path], settings, cache: Path, workers: int, scheduler=None) -> dict:
    from citab_cli.core.scans.engines import preprocess_all
    from citab_cli.core.scans.pipelines import Job

    peaks: list[float] = []
    job = Job("t1-linear", settings, cache=cache, store=True)
    start = time.perf_counter()
    failures = preprocess_all(paths, job, workers, lambda i, done: peaks.append(done.peak_mb),
                              scheduler=scheduler)  # fmt: skip
    seconds = time.perf_counter() - start
    if failures:
        raise SystemExit(f"scans failed: {failures}")
    return {"seconds": round(seconds, 2), "scans_per_s": round(len(paths) / seconds, 4),
            "peak_memory_mb_per_process": max(peaks)}  # fmt: skip


def _overhead(address: str, tasks: int) -> dict:
    """Seconds per empty task submitted, run and gathered through the scheduler."""
    from distributed import Client, as_completed

    with Client(address, set_as_default=False) as client:
        client.submit(int, 0, pure=False).result()  # connected and warm
        start = time.perf_counter()
        futures = client.map(int, range(tasks), pure=False)
        for future in as_completed(futures, loop=client.loop):
            future.result()
        seconds = time.perf_counter() - start
    return {"tasks": tasks, "ms_per_task": round(1000 * seconds / tasks, 3)}


def _dask_runs(paths, settings, root: Path, counts: list[int], tasks: int) -> list[dict]:
    from distributed import LocalCluster

    runs = []
    for count in counts:
        start = time.perf_counter()
        with LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster:  # fmt: skip
            started = time.perf_counter() - start
            run = _timed(paths, settings, root / f"dask-{count}", 1, cluster.scheduler_address)
            run.update(engine=f"dask-{count}", cluster_start_seconds=round(started, 2))
            if count == max(counts) and tasks:
                run["scheduler_overhead"] = _overhead(cluster.scheduler_address, tasks)
            runs.append(run)
    return runs


def _prepare_step_inputs(path: Path, folder: Path) -> None:
    """Each step's input on disk: the RAS head and its brain mask; N4's output brain."""
    import nibabel as nib

    from citab_cli.core.scans import t1_linear
    from citab_cli.core.scans.preprocess import load_volume

    volume = load_volume(path)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(volume.data, volume.affine))
    nib.save(canonical, folder / "head.nii.gz")
    mask = t1_linear._brain_mask(canonical, path)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), canonical.affine), folder / "mask.nii.gz")
    ants = t1_linear._deterministic_ants()
    image = ants.image_read(str(folder / "head.nii.gz"))
    ants_mask = ants.image_read(str(folder / "mask.nii.gz"))
    brain = t1_linear.crop_to_brain(t1_linear.n4(image, ants_mask) * ants_mask, mask)
    ants.image_write(brain, str(folder / "brain.nii.gz"))


def _run_step(step: str, folder: Path) -> dict:
    """In a fresh process: load the libraries and the step's input, then run only the step."""
    import nibabel as nib

    from citab_cli.core.scans import t1_linear
    from citab_cli.core.scans.engines import peak_memory_mb, reset_peak_memory

    ants = t1_linear._deterministic_ants()
    head = nib.load(folder / "head.nii.gz")
    head = nib.Nifti1Image(np.asarray(head.dataobj, np.float32), head.affine)
    image, mask = (ants.image_read(str(folder / n)) for n in ("head.nii.gz", "mask.nii.gz"))
    brain = ants.image_read(str(folder / "brain.nii.gz"))
    t1_linear._mni_2mm()  # the template read before the baseline
    t1_linear._extractor(False)  # the network loaded before the baseline
    reset_peak_memory()
    baseline = peak_memory_mb()
    start = time.perf_counter()
    if step == "brain_extraction":
        t1_linear._brain_mask(head, folder / "head.nii.gz")
    elif step == "n4":
        t1_linear.n4(image, mask)
    else:
        t1_linear.register(brain)
    return {"baseline_mb": round(baseline), "peak_mb": round(peak_memory_mb()),
            "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip


def _step_memory(path: Path, folder: Path) -> dict:
    _prepare_step_inputs(path, folder)
    out = {}
    for step in STEPS:
        done = subprocess.run([sys.executable, __file__, "--step", step, "--folder", str(folder)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        out[step] = json.loads(done.stdout)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--raw-size", type=int, default=128, help="scan edge (voxels)")
    parser.add_argument("--target", type=int, default=64, help="project grid edge (voxels)")
    parser.add_argument("--overhead-tasks", type=int, default=500)
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:  # the child process of the memory measurement
        print(json.dumps(_run_step(args.step, args.folder)))
        return {}
    settings = mni_settings(args.target)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.machine(),
            "python": sys.version.split()[0],
        },  # fmt: skip
        "scans": args.scans,
        "scan": f"synthetic whole head, {args.raw_size} voxels a side "
        f"({240 / args.raw_size:.2f} mm)",
        "grid": f"{args.target}^3 MNI box",
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = write_heads(root, args.scans, args.raw_size)
        serial = _timed(paths, settings, root / "serial", 1)
        report["runs"].append({"engine": "serial", **serial})
        for count in [k for k in args.workers if k > 1]:
            run = _timed(paths, settings, root / f"pool-{count}", count)
            report["runs"].append({"engine": f"pool-{count}", **run})
        report["runs"] += _dask_runs(paths, settings, root, args.workers, args.overhead_tasks)
        for run in report["runs"]:
            run["ratio_vs_serial"] = round(run["scans_per_s"] / serial["scans_per_s"], 2)
        steps = root / "steps"
        steps.mkdir()
        report["step_memory"] = _step_memory(paths[0], steps)
    json.dump(report, sys.stdout, indent=2)
    print()
    return report


if __name__ == "__main__":
    main()
