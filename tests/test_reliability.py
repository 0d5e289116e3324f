"""Guarantees across commands: locks, no network, identifying columns never shown or stored."""

from __future__ import annotations

import csv
import socket
from pathlib import Path

import pytest

from citab_cli.core import locks
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.training import loop as pretraining
from tests.helpers import (
    assert_user_error,
    ingest,
    read_rows,
    run,
    tiny,
    tree_hash,
    write_rows,
)


def test_a_second_ingest_into_a_busy_project_is_refused(project: Path, raw_dir: Path):
    before = tree_hash(project)
    with locks.hold(project, "writing to this project"):  # another ingest is running
        assert_user_error(ingest(raw_dir, "adni", project), "another citab command is writing")
    assert tree_hash(project) == before
    assert ingest(raw_dir, "adni", project).exit_code == 0  # and goes through afterwards


def test_a_second_pretrain_of_the_same_run_is_refused(project: Path, monkeypatch):
    from citab_cli.core import headers
    from tests.helpers import FakeEncoder

    monkeypatch.setattr(headers, "load_encoder", lambda model: FakeEncoder())
    store = Project(project)
    pretraining.pretrain(store, tiny(), "busy", hooks=pretraining.Hooks(stop=lambda s: s == 2))
    with (
        locks.hold(project / "runs" / "busy", "training"),
        pytest.raises(CitabError, match="another citab command is training run 'busy'"),
    ):
        pretraining.pretrain(store, tiny(), "busy", resume=True)
    assert pretraining.pretrain(store, tiny(), "busy", resume=True).steps == 16


def test_a_failed_new_run_leaves_no_folder(project: Path):
    store = Project(project)
    with pytest.raises(CitabError):  # no header cache and no encoder in reach: fails early
        pretraining.pretrain(
            store,
            tiny()
            .model_copy(update={"cohorts": ["adni"]})
            .model_copy(update={"train": tiny().train.model_copy(update={"batch_size": 500})}),
            "too-big",
        )
    assert not (project / "runs" / "too-big").exists()


def test_no_network_from_ingest_to_probe(raw_dir: Path, tmp_path: Path, monkeypatch):
    """Real header encoder included: everything runs with sockets refused."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    target = tmp_path / "p"
    for cohort in ("adni", "nacc"):
        assert ingest(raw_dir, cohort, target, "--shape", 24).exit_code == 0
    assert run("embed-headers", "--project", target).exit_code == 0
    assert (
        run(
            "pretrain",
            "--cohorts",
            "adni,nacc",
            "--preset",
            "tiny",
            "--epochs",
            1,
            "--batch-size",
            4,
            "--run",
            "offline",
            "--project",
            target,
        ).exit_code
        == 0
    )
    result = run(
        "probe",
        "--ckpt",
        "best.safetensors",
        "--cohorts",
        "adni",
        "--label-fractions",
        "1",
        "--seeds",
        1,
        "--project",
        target,
    )
    assert result.exit_code == 0, result.output


def test_dropped_values_never_appear_in_output_or_files(raw: Path, tmp_path: Path):
    rows = read_rows(raw / "aibl.csv")
    secret = "/1901"  # a planted date of birth in a dropped column
    for row in rows:
        row["PTDOB"] = secret
    first = next(i for i, r in enumerate(rows) if r["VISCODE"] == "bl")
    rows[first]["MMSCORE"] = "99"  # and a bad cell on a baseline row, so an error is printed
    write_rows(raw / "aibl.csv", rows)
    target = tmp_path / "p"
    failed = ingest(raw, "aibl", target, "--shape", 24)
    assert failed.exit_code == 1 and secret not in failed.output
    rows[first]["MMSCORE"] = "25"
    write_rows(raw / "aibl.csv", rows)
    done = ingest(raw, "aibl", target, "--shape", 24)
    assert done.exit_code == 0 and secret not in done.output
    blob = b"".join(p.read_bytes() for p in target.rglob("*") if p.is_file())
    assert secret.encode() not in blob
    for path in target.rglob("*"):
        if path.suffix in {".csv", ".json", ".yaml"}:
            assert secret not in path.read_text()


def test_image_paths_in_subjects_csv_stay_relative(project: Path):
    with open(project / "cohorts/adni/subjects.csv") as handle:
        for row in csv.DictReader(handle):
            assert not row["image"].startswith("/") and ".." not in Path(row["image"]).parts
