"""Bad input to every command: exit 1, one `Error:` line, no traceback, project unchanged.

(The ingest-specific corpus is in test_ingest_errors.py; this one covers the other commands,
their options and checkpoint files.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import assert_user_error, run, tree_hash


@pytest.fixture()
def base(pretrained_copy: Path, tmp_path: Path) -> Path:
    """A private copy of a project with a pretrained run, plus some bad files beside it."""
    root = pretrained_copy
    torch.save({"w": torch.zeros(2)}, tmp_path / "pickled.pt")
    data = (root / "runs/base/best.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    (tmp_path / "bad.yaml").write_text("train:\n  epochs: [1\n")
    (tmp_path / "unknown.yaml").write_text("train:\n  epocs: 3\n")
    return root


CASES = [
    (["probe", "--ckpt", "{tmp}/pickled.pt"], "pickle"),
    (["probe", "--ckpt", "{tmp}/cut.safetensors"], "truncated or corrupt"),
    (["probe", "--ckpt", "{tmp}/noise.safetensors"], "safetensors"),
    (["probe", "--ckpt", "{tmp}/missing.safetensors"], "checkpoint not found"),
    (["probe", "--ckpt", "best.safetensors", "--label-fractions", "0"], "outside (0, 1]"),
    (["probe", "--ckpt", "best.safetensors", "--label-fractions", "x"], "must be numbers"),
    (["probe", "--ckpt", "best.safetensors", "--seeds", "0"], "at least 1"),
    (["probe", "--ckpt", "best.safetensors", "--cohorts", "oasis"], "not ingested"),
    (["finetune", "--ckpt", "{tmp}/pickled.pt", "--cohort", "adni"], "pickle"),
    (
        ["finetune", "--ckpt", "best.safetensors", "--cohort", "adni", "--label-fraction", "1.5"],
        "outside (0, 1]",
    ),
    (["finetune", "--ckpt", "best.safetensors", "--cohort", "nope"], "not ingested"),
    (
        ["explain", "--ckpt", "best.safetensors", "--cohort", "adni", "--subjects", "X1,X2"],
        "is not in cohort",
    ),
    (["explain", "--ckpt", "{tmp}/cut.safetensors", "--cohort", "adni"], "truncated or corrupt"),
    (["pretrain", "--cohorts", "oasis", "--preset", "tiny"], "not ingested"),
    (["pretrain", "--preset", "tiny"], "name the cohorts"),
    (["pretrain", "--cohorts", "adni", "--config", "{tmp}/bad.yaml"], "malformed YAML"),
    (["pretrain", "--cohorts", "adni", "--config", "{tmp}/unknown.yaml"], "unknown key 'epocs'"),
    (["pretrain", "--cohorts", "adni", "--run", "../escape"], "not a valid run name"),
    (["pretrain", "--resume", "--run", "ghost"], "no run to resume"),
    (["embed-headers", "--model", "{tmp}/no-such-model"], "does not exist"),
    (["embed-headers", "--model", "{tmp}/bad.yaml"], "does not exist or is not a folder"),
    (["schema", "check", "{tmp}/bad.yaml"], "malformed YAML"),
    (["schema", "infer", "{tmp}/pickled.pt"], "binary file"),
    (["info", "--project", "{tmp}"], "not a citab project"),
]


@pytest.mark.parametrize(
    "args, fragment", CASES, ids=[" ".join(c[0][:2]) + f" #{i}" for i, c in enumerate(CASES)]
)
def test_bad_input_leaves_the_project_alone(base: Path, args: list[str], fragment: str):
    tmp = base.parent
    before = tree_hash(base)
    argv = [a.replace("{tmp}", str(tmp)) for a in args]
    if "--project" not in argv and argv[0] != "schema":  # schema commands take no project
        argv += ["--project", str(base)]
    assert_user_error(run(*argv), fragment)
    assert tree_hash(base) == before
