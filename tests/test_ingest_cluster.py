"""Ingest at scale: scans preprocessed on a Dask cluster (a LocalCluster of worker processes),
a worker killed in the middle of a task, shards filling one cache at once, a scheduler that
does not answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (
    SHAPE,
    assert_user_error,
    ingest,
    raw_subject,
    run,
    tree_hash,
    write_rows,
)

pytest.importorskip("distributed")

IMAGES = "cohorts/adni/images.npy"


@pytest.fixture()
def cluster():
    """Two worker processes of one thread each, as `dask worker --nworkers 2 --nthreads 1`."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as local:  # fmt: skip
        yield local


def _leftovers(project: Path) -> list[Path]:
    """Anything half-written: temporary cache entries, staged cohorts."""
    return [p for p in project.rglob("*") if p.name.endswith(".tmp") or ".staging-" in p.name]


def _raw_cohort(root: Path, n: int) -> tuple[Path, Path]:
    """`n` whole-head scans as scanners write them (random pose, skull, neck), for t1-linear."""
    images = root / "mri"
    images.mkdir(parents=True)
    rows = []
    for i in range(n):
        path, _ = raw_subject(images, 10 + i, size=64)  # 3.75 mm: quicker, still a head
        rows.append({"ID": f"s{i}", "AGE": str(70 + i), "DX": "CN" if i % 2 else "AD",
                     "IMG": path.name})  # fmt: skip
    write_rows(root / "heads.csv", rows)
    schema = root / "heads.yaml"
    schema.write_text(
        "cohort: heads\nsubject: ID\nimage: {column: IMG, preprocess: t1-linear}\n"
        "label: {column: DX, classes: {CN: CN, AD: AD}}\n"
        "columns:\n  AGE: {type: numeric, description: Age in years, range: [40, 100]}\n"
    )
    return root / "heads.csv", schema


def test_a_local_cluster_gives_the_local_ingest_bit_for_bit(tmp_path: Path, cluster):
    """Whole-head scans through t1-linear on two Dask worker processes give the same
    images.npy, byte for byte, as the same ingest in this one process; the manifest says the
    pipeline is deterministic."""
    import json

    csv_path, schema = _raw_cohort(tmp_path / "raw", 2)
    common = ("ingest", csv_path, "--images", csv_path.parent / "mri", "--schema", schema,
              "--shape", 24)  # fmt: skip
    local = run(*common, "--workers", 1, "--project", tmp_path / "local")
    assert local.exit_code == 0, local.output
    remote = run(*common, "--scheduler", cluster.scheduler_address,
                 "--project", tmp_path / "cluster")  # fmt: skip
    assert remote.exit_code == 0, remote.output
    a = (tmp_path / "local/cohorts/heads/images.npy").read_bytes()
    b = (tmp_path / "cluster/cohorts/heads/images.npy").read_bytes()
    assert a == b
    assert "peak memory of a worker" in remote.output
    manifest = json.loads((tmp_path / "cluster/cohorts/heads/manifest.json").read_text())
    preprocessing = manifest["preprocessing"]
    assert preprocessing["determinism"]["bit_identical"] is True
    assert "seed 1" in preprocessing["determinism"]["registration"]
    assert preprocessing["peak_memory_mb_per_process"] > 100
    assert len(list((tmp_path / "cluster/cache/scans").rglob("*.npz"))) == 2


def test_a_worker_killed_during_a_task_the_ingest_still_completes(
    raw_dir: Path, ingested_dir: Path, tmp_path: Path, cluster
):
    """The first task to start kills its worker process (SIGKILL, as the out-of-memory killer
    would): Dask runs it again elsewhere, the ingest completes with the same volumes as the
    local path, and nothing half-written is left."""
    import signal

    from distributed import Client, WorkerPlugin

    marker = tmp_path / "killed"

    class KillOnce(WorkerPlugin):
        def __init__(self, marker: str):
            self.marker = marker

        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and not os.path.exists(self.marker):
                open(self.marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)

    with Client(cluster.scheduler_address) as client:
        client.register_plugin(KillOnce(str(marker)))
    project = tmp_path / "p"
    result = run("ingest", raw_dir / "adni.csv", "--images", raw_dir / "adni_mri", "--shape",
                 SHAPE, "--scheduler", cluster.scheduler_address, "--project", project)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert marker.exists()  # a worker was killed
    assert (project / IMAGES).read_bytes() == (ingested_dir / IMAGES).read_bytes()
    assert not _leftovers(project)


def test_two_shards_filling_one_cache_at_once_then_an_assemble(
    raw_dir: Path, ingested_dir: Path, tmp_path: Path
):
    """Two `--preprocess-only --shard i/2` processes run at the same time; they write nothing
    but the cache; a plain ingest then takes every scan from it and stores what a
    single-process ingest stores."""
    project = tmp_path / "p"
    command = [sys.executable, "-m", "citab_cli", "ingest", str(raw_dir / "adni.csv"),
               "--images", str(raw_dir / "adni_mri"), "--shape", str(SHAPE), "--project",
               str(project), "--workers", "1", "--preprocess-only"]  # fmt: skip
    shards = [
        subprocess.Popen([*command, "--shard", f"{i}/2"], stdout=subprocess.PIPE, text=True,
                         stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
        for i in range(2)
    ]  # fmt: skip
    outputs = [shard.communicate(timeout=300)[0] for shard in shards]
    for i, (shard, output) in enumerate(zip(shards, outputs, strict=True)):
        assert shard.returncode == 0, output
        assert f"shard {i}/2: 8 of 16 scans: 8 preprocessed" in output
    assert sorted(p.name for p in project.iterdir()) == ["cache"]  # nothing but the cache
    assert len(list((project / "cache/scans").rglob("*.npz"))) == 16
    again = run(*command[3:], "--shard", "1/2")
    assert again.exit_code == 0 and "0 preprocessed, 8 already in the cache" in again.output
    result = ingest(raw_dir, "adni", project, "--shape", SHAPE)
    assert result.exit_code == 0, result.output
    assert "16 of 16 scans came from the cache" in " ".join(result.output.split())
    assert (project / IMAGES).read_bytes() == (ingested_dir / IMAGES).read_bytes()
    assert not _leftovers(project)


def test_a_scheduler_that_does_not_answer(project: Path, raw_dir: Path, monkeypatch):
    """A dead address, a malformed one, and no `distributed`: one line each, exit 1, the
    project unchanged."""
    import socket

    from citab_cli.core.scans import engines

    monkeypatch.setattr(engines, "CONNECT_TIMEOUT", "1s")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = tree_hash(project)
    common = ("ingest", raw_dir / "adni.csv", "--images", raw_dir / "adni_mri", "--cohort",
              "adni2", "--schema", raw_dir / "adni.yaml", "--project", project)  # fmt: skip
    dead = run(*common, "--scheduler", f"tcp://127.0.0.1:{port}")
    assert_user_error(dead, f"--scheduler tcp://127.0.0.1:{port}: no Dask scheduler answered")
    assert_user_error(run(*common, "--scheduler", "nonsense://"), "not a Dask scheduler")
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert_user_error(run(*common, "--scheduler", "tcp://127.0.0.1:1"),
                      "pip install 'citab-cli[cluster]'")  # fmt: skip
    assert tree_hash(project) == before


def test_engine_options_that_do_not_go_together(raw_dir: Path, tmp_path: Path):
    common = ("ingest", raw_dir / "adni.csv", "--images", raw_dir / "adni_mri",
              "--project", tmp_path / "p")  # fmt: skip
    assert_user_error(run(*common, "--shard", "0/2"), "--shard needs --preprocess-only")
    assert_user_error(run(*common, "--preprocess-only", "--shard", "2/2"), "0 <= I < N")
    assert_user_error(run(*common, "--preprocess-only", "--shard", "x"), "must be I/N")
    assert_user_error(run(*common, "--workers", 2, "--scheduler", "tcp://h:1"), "give one")
    assert_user_error(run(*common, "--preprocess-only", "--dry-run"), "exclude each other")
    assert not (tmp_path / "p").exists()


def test_shards_split_the_scans_evenly():
    from citab_cli.core.data.ingest_fill import shard_indices

    parts = [shard_indices(10, (i, 3)) for i in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    assert shard_indices(4, None) == [0, 1, 2, 3]


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_the_slurm_script_of_the_scale_page_builds_its_cluster(monkeypatch):
    """The dask-jobqueue script in docs/scale.md, run with SLURM's submission and the ingest
    recorded instead of done: one-thread workers, the memory per job, and the ingest sent to
    the cluster's scheduler."""
    import re
    import subprocess

    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    page = (Path(__file__).resolve().parents[1] / "docs" / "scale.md").read_text()
    block = re.search(r"```python\n(# ingest_on_slurm\.py.*?)```", page, re.S).group(1)
    calls: dict = {"scale": []}

    class Recording(dask_jobqueue.SLURMCluster):
        def scale(self, n=None, jobs=0, memory=None, cores=None):
            calls["scale"].append(jobs)
            calls["script"] = self.job_script()

    monkeypatch.setattr(dask_jobqueue, "SLURMCluster", Recording)
    monkeypatch.setattr(subprocess, "run", lambda args, check: calls.setdefault("command", args))
    exec(compile(block, "docs/scale.md", "exec"), {})
    script = calls["script"]
    assert "#SBATCH -p cpu" in script and "#SBATCH --mem=" in script
    assert "--nthreads 1" in script and "--nworkers 8" in script
    assert 10 in calls["scale"]
    command = calls["command"]
    assert command[:2] == ["citab", "ingest"] and command[-2] == "--scheduler"
    assert command[-1].startswith("tcp://")
