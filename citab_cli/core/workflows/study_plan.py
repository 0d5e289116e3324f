"""A study's runs, before anything runs: one ordinary pretraining run per (arm, regime, cohort
set, seed), each with its full configuration, the cohorts it is probed on, and its optimiser
steps. Single-cohort runs get as many steps as the cross-cohort run of their seed (a cohort
alone has fewer subjects per epoch, so it gets more epochs)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from pydantic import ValidationError

from citab_cli.core import yaml_io
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.runtime.run_config import PretrainConfig, pretrain_preset
from citab_cli.core.workflows.study_spec import StudySpec

#: How run names spell each regime.
REGIME_TAGS = {"cross-cohort": "cross", "single-cohort": "single", "leave-one-out": "loo"}


@dataclass(frozen=True)
class PlannedRun:
    """One pretraining run of a study and what it is probed on."""

    name: str  # its folder under runs/
    arm: str
    regime: str
    seed: int
    config: PretrainConfig  # cohorts included
    probe_on: tuple[str, ...]  # cohorts whose test subjects score it
    steps: int  # optimiser steps (one process)
    held_out: str | None = None  # leave-one-out: the cohort left out of pretraining


def _train_subjects(project: Project, cohort: str, include_val: bool) -> int:
    splits = project.manifest(cohort)["splits"]
    return int(splits.get("train", 0) + (splits.get("val", 0) if include_val else 0))


def steps_per_epoch(project: Project, config: PretrainConfig) -> int:
    """Optimiser steps of one epoch of `config` on its cohorts (one process)."""
    train = config.train
    subjects = sum(_train_subjects(project, c, train.include_val) for c in config.cohorts)
    return subjects // train.batch_size


def arm_config(spec: StudySpec, arm: str) -> PretrainConfig:
    """The preset, the study's `config`, then the arm's overrides: one validated config."""
    base = pretrain_preset(spec.preset).model_dump(mode="json")
    merged = yaml_io.merge(yaml_io.merge(base, spec.config), spec.arms[arm])
    try:
        return PretrainConfig.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CitabError(
            f"study '{spec.study}', arm '{arm}': {where}: {first['msg']}; fix the arm's "
            "overrides (keys as in a run's config.yaml)"
        ) from None


def _run(
    spec: StudySpec,
    arm: str,
    regime: str,
    seed: int,
    cohorts: list[str],
    probe_on: list[str],
    held_out: str | None = None,
    epochs: int | None = None,
) -> PlannedRun:
    """One run: the arm's configuration with the seed, cohorts and criteria set, named."""
    config = arm_config(spec, arm)
    train = config.train.model_copy(
        update={"seed": seed, **({"epochs": epochs} if epochs is not None else {})}
    )
    config = config.model_copy(
        update={"cohorts": list(cohorts), "train": train, "exclude_criteria": spec.exclude_criteria}
    )
    where = f"-{held_out or cohorts[0]}" if regime != "cross-cohort" else ""
    name = f"{spec.study}-{arm}-{REGIME_TAGS[regime]}{where}-s{seed}"
    return PlannedRun(name, arm, regime, seed, config, tuple(probe_on), 0, held_out)


def plan_study(spec: StudySpec, project: Project) -> list[PlannedRun]:
    """Every run of the study, in the order they run: cross-cohort first (arm by arm, seed by
    seed), then single-cohort, then leave-one-out."""
    known = project.cohorts()
    missing = [c for c in spec.cohorts if c not in known]
    if missing:
        raise CitabError(
            f"study '{spec.study}' names cohort(s) not ingested in {project.root}: "
            f"{', '.join(missing)} (ingested: {', '.join(known) or 'none'})"
        )
    runs: list[PlannedRun] = []
    cross_steps: dict[tuple[str, int], int] = {}
    for arm in spec.arms_in("cross-cohort"):
        for seed in spec.seeds:
            run = _run(spec, arm, "cross-cohort", seed, spec.cohorts, spec.scored)
            steps = steps_per_epoch(project, run.config) * run.config.train.epochs
            cross_steps[(arm, seed)] = steps
            runs.append(_with_steps(run, steps))
    for arm in spec.arms_in("single-cohort"):
        for seed in spec.seeds:
            target = cross_steps.get((arm, seed)) or cross_steps[(spec.reference, seed)]
            for cohort in spec.scored:
                run = _run(spec, arm, "single-cohort", seed, [cohort], [cohort])
                per_epoch = steps_per_epoch(project, run.config)
                if per_epoch == 0:
                    raise CitabError(
                        f"cohort '{cohort}' has fewer train subjects than a batch of "
                        f"{run.config.train.batch_size}; lower the study's batch size"
                    )
                epochs = max(1, math.ceil(target / per_epoch))
                run = _run(spec, arm, "single-cohort", seed, [cohort], [cohort], epochs=epochs)
                runs.append(_with_steps(run, per_epoch * epochs))
    for arm in spec.arms_in("leave-one-out"):
        for seed in spec.seeds:
            for held in spec.scored:
                rest = [c for c in spec.cohorts if c != held]
                run = _run(spec, arm, "leave-one-out", seed, rest, [held], held_out=held)
                steps = steps_per_epoch(project, run.config) * run.config.train.epochs
                runs.append(_with_steps(run, steps))
    return runs


def _with_steps(run: PlannedRun, steps: int) -> PlannedRun:
    return replace(run, steps=steps)
