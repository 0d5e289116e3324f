"""Helpers the tests share: CLI runs, small files, hand-made model inputs, the stand-in header
encoder. Test modules import them from here; fixtures live in conftest.py."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from citab_cli.app import app

SHAPE = 24
SUBJECTS = 16
#: The synthetic cohorts every shared project holds.
COHORTS = "adni,nacc,aibl"
#: Header-vector size of the hand-made model inputs.
E = 12


class FakeEncoder:
    """Deterministic stand-in: a vector from the text's hash; counts what it embeds."""

    def __init__(self, dim: int = 8):
        self.dim = dim
        self.seen: list[str] = []

    def encode(self, texts, **_):
        self.seen.extend(texts)
        out = []
        for text in texts:
            rng = np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))
            v = rng.normal(size=self.dim)
            out.append(v / np.linalg.norm(v))
        return np.array(out, dtype=np.float32)


def embedded_copy(source: Path, target: Path) -> Path:
    """Copy the project `source` to `target` and fill its header cache with FakeEncoder."""
    from citab_cli.core import headers
    from citab_cli.core.data.project import Project

    shutil.copytree(source, target)
    original = headers.load_encoder
    headers.load_encoder = lambda model: FakeEncoder()
    try:
        headers.encode_headers(Project(target))
    finally:
        headers.load_encoder = original
    return target


def run(*args: str):
    """Invoke the CLI in-process; returns click's Result."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)


def torchrun(*args: str, timeout: int = 300):
    """`torchrun --standalone --nproc_per_node=2 ARGS` in a subprocess (one thread a rank).

    A launch that exits with an error is tried once more, and the second result returned with
    the first one's output before it. `test_data_parallel_ranks_keep_identical_weights` failed
    in 2 of 7 full-suite runs and in none of 25 launches on their own (deterministic weights
    every time); a launch-level cause such as the standalone rendezvous's free port is the
    likeliest. A failure of the job itself fails twice, and both outputs are shown."""
    import os
    import subprocess
    import sys

    launcher = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [str(launcher), "--standalone", "--nproc_per_node=2", *args]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if first.returncode == 0:
        return first
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    second.stderr = f"{first.stderr}\n--- tried again ---\n{second.stderr}"
    return second


def tree_hash(root: Path) -> str:
    """A digest of every path, file mode and file content under `root` ("" if absent)."""
    if not root.exists():
        return ""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def ingest(raw: Path, cohort: str, project: Path, *extra):
    """`citab ingest` of a synthetic cohort of `raw` into `project`, serially."""
    return run(
        "ingest",
        raw / f"{cohort}.csv",
        "--images",
        raw / f"{cohort}_mri",
        "--project",
        project,
        "--workers",
        1,
        *extra,
    )


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) * [4, 4, 4, 1] if affine is None else affine), path)
    return path


def raw_subject(tmp_path: Path, seed: int, raw: bool = True, size: int = 96) -> tuple[Path, object]:
    """A synthetic whole-head scan as a scanner writes it (or with raw=False the brain only) in
    `tmp_path`, `size` voxels a side over 240 mm, and its true brain mask as a NIfTI image (None
    for a brain-only scan)."""
    from citab_cli.core.synth import anatomy, head
    from citab_cli.core.synth.cohorts import COHORTS

    grid = anatomy.Grid(size)
    rng = np.random.default_rng(seed)
    scanner = COHORTS["adni"].scanner
    if raw:
        scan = head.raw_scan(grid, rng, 1.0, 74.0, True, scanner)
        path = tmp_path / f"head{seed}.nii.gz"
        path.write_bytes(anatomy.nifti_gz_bytes(scan.data, scan.affine))
        return path, nib.Nifti1Image(scan.brain_mask.astype(np.uint8), scan.affine)
    brain = anatomy.scan(anatomy.brain(grid, rng, 1.0, 74.0, True), grid, scanner, rng)
    path = tmp_path / f"brain{seed}.nii.gz"
    path.write_bytes(anatomy.nifti_gz_bytes(brain, grid.affine(scanner.flip)))
    return path, None


def assert_user_error(result, *fragments: str) -> str:
    """Exit 1, a one-line 'Error:' message (no traceback) containing every fragment."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    text = result.stderr if result.stderr else result.output
    assert "Traceback" not in result.output
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, text
    message = errors[0]
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def tiny(cohorts: str = COHORTS, objective: str | None = None, **train):
    """The tiny preset on `cohorts`, shortened for tests; `train` overrides TrainConfig keys,
    `objective` the loss's objective."""
    from citab_cli.core.runtime.run_config import pretrain_preset

    config = pretrain_preset("tiny")
    settings = {"epochs": 2, "batch_size": 4, "checkpoint_every": 3, "log_every": 2, **train}
    model = config.model if objective is None else tiny_model(objective, config.model.header_dim)
    return config.model_copy(
        update={
            "cohorts": cohorts.split(","),
            "train": config.train.model_copy(update=settings),
            "model": model,
        }  # fmt: skip
    )


def tiny_model(objective: str = "citab", header_dim: int = E):
    """The tiny preset's network with `objective` and `header_dim`-wide header vectors."""
    from citab_cli.core.model.config import preset

    config = preset("tiny")
    loss = config.loss.model_copy(update={"objective": objective})
    return config.model_copy(update={"header_dim": header_dim, "loss": loss})


def make_batch(b: int = 3, c: int = 5, seed: int = 0, levels: int = 3):
    """A TabularBatch of `b` rows and `c` columns by hand: column 1 categorical, one missing
    cell, and row 1 from a cohort without the last column."""
    import torch

    from citab_cli.core.layers.tabular_batch import TabularBatch

    g = torch.Generator().manual_seed(seed)
    categorical = torch.zeros(b, c, dtype=torch.bool)
    categorical[:, 1] = True
    missing = torch.zeros(b, c, dtype=torch.bool)
    missing[0, 2] = True
    present = torch.ones(b, c, dtype=torch.bool)
    present[1, -1] = False  # row 1 comes from a cohort without the last column
    values = torch.randn(b, c, generator=g) * (~categorical & ~missing)
    candidates = torch.randn(b, c, levels, E, generator=g)
    index = torch.randint(0, levels, (b, c), generator=g)
    level_vectors = torch.gather(candidates, 2, index[..., None, None].expand(-1, -1, 1, E))[
        :, :, 0
    ]
    return TabularBatch(
        column_vectors=torch.randn(b, c, E, generator=g),
        level_vectors=level_vectors * categorical[..., None],
        values=values,
        categorical=categorical,
        missing=missing,
        present=present,
        level_index=torch.where(categorical, index, torch.full_like(index, -1)),
        level_candidates=candidates,
        candidate_mask=torch.ones(b, c, levels, dtype=torch.bool),
    )
