"""Shared fixtures: small synthetic cohorts, a project built from them, a pretrained project
and private copies of it; tests run on the CPU unless marked gpu. Helpers are in helpers.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import (
    SHAPE,
    SUBJECTS,
    FakeEncoder,
    embedded_copy,
    ingest,
    run,
    tiny,
)


@pytest.fixture(autouse=True)
def _cpu_unless_marked_gpu(request, monkeypatch):
    """Tests not marked `gpu` run on the CPU even where a GPU is present: every `--device auto`
    then resolves to the CPU, in this process and in the processes a test starts, so a GPU
    machine runs the suite CI runs. Tests marked `gpu` see the device."""
    if request.node.get_closest_marker("gpu") is None:
        import torch

        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def pytest_runtest_setup(item):
    """Tests marked `gpu` skip cleanly on a machine without CUDA (run them with -m gpu)."""
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device")


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    """Three synthetic cohorts written once per test session (read-only for tests)."""
    out = tmp_path_factory.mktemp("synth") / "raw"
    result = run("synth", out, "--subjects", SUBJECTS, "--shape", SHAPE, "--seed", 3)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture()
def raw(raw_dir: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the synthetic cohorts."""
    copy = tmp_path / "raw"
    shutil.copytree(raw_dir, copy)
    return copy


@pytest.fixture(scope="session")
def ingested_dir(raw_dir: Path, tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("proj") / "p"
    for cohort in ("adni", "nacc", "aibl"):
        result = ingest(raw_dir, cohort, project, "--shape", SHAPE)
        assert result.exit_code == 0, result.output
    return project


@pytest.fixture()
def project(ingested_dir: Path, tmp_path: Path) -> Path:
    """A private copy of a project holding adni, nacc and aibl."""
    copy = tmp_path / "project"
    shutil.copytree(ingested_dir, copy)
    return copy


@pytest.fixture()
def embedded(project: Path, monkeypatch) -> Path:
    """A private project whose header cache is filled by the stand-in encoder (8 dimensions)."""
    from citab_cli.core import headers

    monkeypatch.setattr(headers, "load_encoder", lambda model: FakeEncoder())
    assert run("embed-headers", "--project", project).exit_code == 0
    return project


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, ingested_dir: Path) -> Path:
    """A project copy with a one-epoch tiny run (header vectors from the stand-in encoder),
    shared by the whole session: tests add reports to it, never runs or cohorts (those that
    change it take `pretrained_copy`)."""
    from citab_cli.core.data.project import Project
    from citab_cli.core.training import loop as pretraining

    root = embedded_copy(ingested_dir, tmp_path_factory.mktemp("probe") / "project")
    pretraining.pretrain(Project(root), tiny(epochs=1), "base")
    return root


@pytest.fixture()
def pretrained_copy(pretrained: Path, tmp_path: Path) -> Path:
    """A private copy of the pretrained project, free to change."""
    copy = tmp_path / "project"
    shutil.copytree(pretrained, copy)
    return copy
