"""Which run `citab pretrain` starts or resumes, and with what configuration (no training)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from citab_cli.core import atomic, yaml_io
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.runtime.run_config import pretrain_preset
from citab_cli.core.training.run_setup import RunRequest, load_config, resolve_run

NOW = datetime(2026, 11, 30, 9, 15, 0)


def _saved_run(project: Project, name: str, epochs: int = 4, mtime: float | None = None):
    """A run folder with a config.yaml, as a started run leaves it."""
    config = pretrain_preset("tiny")
    config = config.model_copy(
        update={"cohorts": ["adni"], "train": config.train.model_copy(update={"epochs": epochs})}
    )
    files = project.run_files(name)
    files.directory.mkdir(parents=True)
    atomic.write_text(files.config, yaml_io.dump(config.model_dump(mode="json")))
    if mtime is not None:
        os.utime(files.directory, (mtime, mtime))
    return config


def test_a_new_run_takes_the_preset_then_the_options(tmp_path: Path):
    request = RunRequest(cohorts=["adni", "nacc"], preset="tiny", epochs=7, seed=None)
    name, config = resolve_run(Project(tmp_path), request, now=NOW)
    assert name == "tiny-20261130-091500"
    assert config.cohorts == ["adni", "nacc"]
    assert config.train.epochs == 7
    assert config.train.seed == pretrain_preset("tiny").train.seed  # None: not given
    assert config.model == pretrain_preset("tiny").model


def test_a_new_run_without_a_preset_is_small_and_merges_the_config_file(tmp_path: Path):
    override = tmp_path / "override.yaml"
    override.write_text("train:\n  learning_rate: 0.002\n")
    request = RunRequest(cohorts=["adni"], config_file=override, run="mine")
    name, config = resolve_run(Project(tmp_path), request, now=NOW)
    assert name == "mine"
    assert config.train.learning_rate == 0.002
    assert config.train.epochs == pretrain_preset("small").train.epochs
    assert load_config("small", override) == config.model_copy(update={"cohorts": []})


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (RunRequest(preset="tiny"), "name the cohorts to pretrain on: --cohorts"),
        (RunRequest(cohorts=["adni"], run="../elsewhere"), "is not a valid run name"),
        (RunRequest(cohorts=["adni"], run=".hidden"), "is not a valid run name"),
        (RunRequest(resume=True), "has no runs to resume; start one with `citab pretrain`"),
        (RunRequest(resume=True, run="absent"), "no run to resume; start it without --resume"),
    ],
)
def test_requests_that_name_no_usable_run_are_refused(tmp_path: Path, request_, message):
    with pytest.raises(CitabError, match=message.replace("(", r"\(").replace(".", r"\.")):
        resolve_run(Project(tmp_path), request_, now=NOW)


def test_resume_takes_the_newest_run_and_its_own_configuration(tmp_path: Path):
    project = Project(tmp_path)
    _saved_run(project, "older", epochs=3, mtime=1_000_000)
    saved = _saved_run(project, "newer", epochs=5, mtime=2_000_000)
    name, config = resolve_run(project, RunRequest(resume=True), now=NOW)
    assert (name, config) == ("newer", saved)
    name, config = resolve_run(project, RunRequest(resume=True, run="older"), now=NOW)
    assert name == "older" and config.train.epochs == 3


def test_resume_accepts_repeated_values_and_names_the_first_change(tmp_path: Path):
    project = Project(tmp_path)
    saved = _saved_run(project, "r", epochs=4)
    same = RunRequest(resume=True, run="r", cohorts=["adni"], epochs=4, seed=0)
    assert resolve_run(project, same, now=NOW) == ("r", saved)
    changed = RunRequest(resume=True, run="r", epochs=2, batch_size=2)
    with pytest.raises(CitabError) as caught:
        resolve_run(project, changed, now=NOW)
    assert "--batch-size changes train.batch_size of run 'r' from 8 to 2" in str(caught.value)
    assert "(and 1 more setting(s))" in str(caught.value)  # fewer epochs: a change
    longer = RunRequest(resume=True, run="r", epochs=9)  # more: an extension
    assert resolve_run(project, longer, now=NOW)[1].train.epochs == 9
    other_cohorts = RunRequest(resume=True, run="r", cohorts=["nacc"])
    with pytest.raises(CitabError, match="--cohorts changes cohorts"):
        resolve_run(project, other_cohorts, now=NOW)


def test_resume_with_another_preset_or_config_file_names_that_option(tmp_path: Path):
    project = Project(tmp_path)
    _saved_run(project, "r", epochs=2)
    with pytest.raises(CitabError, match="--preset changes .* drop --preset"):
        resolve_run(project, RunRequest(resume=True, run="r", preset="small"), now=NOW)
    override = tmp_path / "o.yaml"
    override.write_text("train:\n  weight_decay: 0.5\n")
    request = RunRequest(resume=True, run="r", preset="tiny", config_file=override)
    with pytest.raises(CitabError, match="--config changes train.weight_decay"):
        resolve_run(project, request, now=NOW)


def test_exclude_criteria_is_part_of_the_run_and_kept_on_resume(tmp_path: Path):
    project = Project(tmp_path)
    name, config = resolve_run(project, RunRequest(cohorts=["adni"], exclude_criteria=True))
    assert config.exclude_criteria is True
    _saved_run(project, "r")  # saved with criteria
    with pytest.raises(CitabError, match="--exclude-criteria changes exclude_criteria"):
        resolve_run(project, RunRequest(resume=True, run="r", exclude_criteria=True))
