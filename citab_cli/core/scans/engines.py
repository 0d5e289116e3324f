"""Where scans are preprocessed. One scan is one task, the same function whichever way it runs:
in this process, in a local process pool (`--workers`, the embedded default), or on a Dask
cluster (`--scheduler ADDRESS`, the optional `distributed` package). On a cluster the workers
write finished scans into the project's cache and the client reads them back from there: the
cache is where they meet, and a scan never travels through the scheduler."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from citab_cli.core.errors import CitabError
from citab_cli.core.scans import pipelines
from citab_cli.core.scans.pipelines import Job, Preprocessed, load_cached

#: How long the client waits for a Dask scheduler to answer.
CONNECT_TIMEOUT = "20s"
#: What a missing `distributed` costs the user.
INSTALL_HINT = "pip install 'citab-cli[cluster]' (Dask's distributed and dask-jobqueue)"


def peak_memory_mb() -> float:
    """The peak resident memory of this process (since `reset_peak_memory`), in MB. On Linux
    the kernel's high-water mark of this program (VmHWM; getrusage's figure would include the
    parent's peak, which a spawned worker inherits)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def reset_peak_memory() -> None:
    """Start the high-water mark afresh from the current resident memory (Linux >= 4.0; else
    the peak stays the process's own so far)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def pin_threads() -> None:
    """One thread per task: the processes (or Dask workers) are the parallelism."""
    import SimpleITK
    import torch

    torch.set_num_threads(1)
    SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _init_worker(counter=None) -> None:
    """A pool worker: one thread, and with `counter` (a shared integer) the next number: worker k
    uses CUDA device k for brain extraction when there is one, the CPU otherwise."""
    import torch
    import torchio  # noqa: F401  (imported once per worker, not per volume)

    from citab_cli.core.scans import t1_linear

    pin_threads()
    if counter is not None:
        with counter.get_lock():
            worker = counter.value
            counter.value += 1
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device = t1_linear.extraction_device(worker, gpus)
        if device is not None:
            torch.cuda.set_device(device)
        t1_linear.use_gpu_for_extraction(device is not None)


def scan_task(index: int, path: Path, job: Job):
    """The task: one scan through the pipeline (or out of the cache). Returns (index, result,
    None), or (index, None, message) for a scan the pipeline cannot use."""
    from citab_cli.core.scans.t1_linear import DeviceFailure

    reset_peak_memory()  # the peak of this task: a worker runs many
    try:
        done = pipelines.preprocess_file(path, job)
    except DeviceFailure:
        raise  # the device failed, not the scan: stop rather than skip subjects
    except CitabError as exc:
        return index, None, str(exc)
    done.peak_mb = peak_memory_mb()
    return index, done, None


def cluster_task(index: int, path: Path, job: Job):
    """`scan_task` on a Dask worker: one thread, brain extraction on the CPU (so a cluster
    mixing GPU and CPU nodes still gives every scan the same bytes), and the volume left in
    the cache it was written to rather than sent back."""
    from citab_cli.core.scans import t1_linear

    pin_threads()
    t1_linear.use_gpu_for_extraction(False)
    index, done, error = scan_task(index, path, job)
    if done is not None:
        done.volume = np.empty(0, np.float16)
    return index, done, error


def preprocess_all(
    paths: list[Path],
    job: Job,
    workers: int,
    sink: Callable[[int, Preprocessed], None],
    advance: Callable[[], None] | None = None,
    scheduler: str | None = None,
) -> dict[int, str]:
    """Preprocess every file, handing each result to `sink` as it finishes: on the Dask cluster
    at `scheduler`, else in `workers` local processes. Returns {index: message} of the files
    that failed (the caller decides: stop, or skip them)."""
    failures: dict[int, str] = {}

    def accept(result) -> None:
        index, done, error = result
        if error is not None:
            failures[index] = error
        else:
            sink(index, done)
        if advance is not None:
            advance()

    if scheduler is not None:
        _on_cluster(scheduler, paths, job, accept)
    elif workers <= 1 or len(paths) <= 1:
        for index, path in enumerate(paths):
            accept(scan_task(index, path, job))
    else:
        _in_pool(workers, paths, job, accept)
    return failures


def _in_pool(workers: int, paths: list[Path], job: Job, accept: Callable) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(counter,)
    ) as pool:
        futures = [pool.submit(scan_task, i, p, job) for i, p in enumerate(paths)]
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


def connect(address: str):
    """A Dask client of the scheduler at `address`, or a CitabError saying why there is none."""
    try:
        from distributed import Client
    except ImportError:
        raise CitabError(
            f"--scheduler needs Dask's distributed, an optional part of citab: {INSTALL_HINT}"
        ) from None
    from distributed.comm import registry
    from distributed.comm.addressing import parse_address

    scheme, location = parse_address(address)
    if scheme not in registry.backends or not location:
        raise CitabError(
            f"--scheduler '{address}' is not a Dask scheduler's address; give the one "
            "`dask scheduler` printed, e.g. tcp://HOST:8786"
        )
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise CitabError(
            f"--scheduler {address}: no Dask scheduler answered within {CONNECT_TIMEOUT} "
            f"({reason}); give the address `dask scheduler` printed (tcp://HOST:8786) and check "
            "that this machine can reach it"
        ) from None


def _on_cluster(address: str, paths: list[Path], job: Job, accept: Callable) -> None:
    """One Dask task per scan; Dask reschedules the tasks of a worker that dies."""
    folder = job.result_folder()
    if folder is None or not job.store:
        raise ValueError("a cluster run writes finished scans into the cache")
    run = uuid.uuid4().hex[:8]
    keys = [f"citab-scan-{run}-{i}" for i in range(len(paths))]
    with connect(address) as client:
        from distributed import KilledWorker, as_completed

        absolute = [path.resolve() for path in paths]  # workers have their own cwd
        futures = client.map(cluster_task, range(len(paths)), absolute, job=job, key=keys)
        try:
            for future in as_completed(futures, loop=client.loop):
                index, done, error = future.result()
                future.release()
                if done is not None:
                    stored = load_cached(folder, done.sha256)
                    if stored is None:
                        raise CitabError(
                            f"{paths[index]}: a worker finished this scan but {folder} does "
                            "not hold it here: the project must lie on a file system that "
                            "the workers and this machine share (docs/scale.md)"
                        )
                    done.volume = stored.volume
                accept((index, done, error))
        except KilledWorker as exc:
            index = keys.index(exc.task) if exc.task in keys else 0
            raise CitabError(
                f"{paths[index]}: the Dask workers running this scan died, "
                f"{exc.allowed_failures + 1} of them (out of memory?); give each worker more "
                "memory (docs/scale.md lists each step's peak) and re-run: finished scans are "
                "kept in the cache"
            ) from None
        except BaseException:
            client.cancel(futures)
            raise
