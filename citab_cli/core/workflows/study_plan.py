"""A study's runs, before anything runs: one ordinary pretraining run per (arm, regime, cohort
set, seed), each with its full configuration, the cohorts it is probed on, and its optimiser
steps. Single-cohort and leave-one-out runs get exactly the optimiser steps, warm-up and
validation interval of the cross-cohort run of their seed, counted in steps (their cohorts have
fewer subjects per epoch, so they run more epochs)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from pydantic import ValidationError

from citab_cli.core import yaml_io
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.runtime.run_config import PretrainConfig, differences, pretrain_preset
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
) -> PlannedRun:
    """One run: the arm's configuration with the seed, cohorts and criteria set, named."""
    config = arm_config(spec, arm)
    train = config.train.model_copy(update={"seed": seed})
    config = config.model_copy(
        update={"cohorts": list(cohorts), "train": train, "exclude_criteria": spec.exclude_criteria}
    )
    where = f"-{held_out or cohorts[0]}" if regime != "cross-cohort" else ""
    name = f"{spec.study}-{arm}-{REGIME_TAGS[regime]}{where}-s{seed}"
    return PlannedRun(name, arm, regime, seed, config, tuple(probe_on), 0, held_out)


@dataclass(frozen=True)
class StepBudget:
    """A cross-cohort run's schedule in optimiser steps, given to the runs of other regimes."""

    steps: int
    warmup: int
    validate_every: int

    @classmethod
    def of(cls, project: Project, config: PretrainConfig) -> StepBudget:
        """The schedule `config` has on its cohorts, counted in steps."""
        train = config.train
        per_epoch = steps_per_epoch(project, config)
        return cls(
            steps=train.steps or per_epoch * train.epochs,
            warmup=train.warmup_steps
            if train.warmup_steps is not None
            else int(round(train.warmup_epochs * per_epoch)),
            validate_every=train.validate_every_steps or train.validate_every * per_epoch,
        )

    def apply(self, project: Project, run: PlannedRun) -> PlannedRun:
        """`run` with this many steps, this warm-up and validation interval (its epochs: as
        many as the steps begin, for display)."""
        per_epoch = steps_per_epoch(project, run.config)
        if per_epoch == 0:
            raise CitabError(
                f"run {run.name}: its cohorts have fewer train subjects than a batch of "
                f"{run.config.train.batch_size}; lower the study's batch size"
            )
        train = run.config.train.model_copy(
            update={
                "steps": self.steps,
                "epochs": max(1, math.ceil(self.steps / per_epoch)),
                "warmup_steps": self.warmup,
                "validate_every_steps": self.validate_every,
            }
        )
        return replace(run, config=run.config.model_copy(update={"train": train}), steps=self.steps)


def plan_study(spec: StudySpec, project: Project) -> list[PlannedRun]:
    """Every run of the study, in the order they run: cross-cohort first (arm by arm, seed by
    seed), then single-cohort, then leave-one-out. Single-cohort and leave-one-out runs get
    the cross-cohort run's optimiser steps, warm-up and validation interval, counted in steps
    (their cohorts have fewer subjects an epoch, so they run more epochs)."""
    known = project.cohorts()
    missing = [c for c in spec.cohorts if c not in known]
    if missing:
        raise CitabError(
            f"study '{spec.study}' names cohort(s) not ingested in {project.root}: "
            f"{', '.join(missing)} (ingested: {', '.join(known) or 'none'})"
        )
    runs: list[PlannedRun] = []
    budgets: dict[tuple[str, int], StepBudget] = {}
    for arm in spec.arms_in("cross-cohort"):
        for seed in spec.seeds:
            run = _run(spec, arm, "cross-cohort", seed, spec.cohorts, spec.scored)
            budgets[(arm, seed)] = StepBudget.of(project, run.config)
            runs.append(replace(run, steps=budgets[(arm, seed)].steps))

    def budget(arm: str, seed: int) -> StepBudget:
        return budgets.get((arm, seed)) or budgets[(spec.reference, seed)]

    for arm in spec.arms_in("single-cohort"):
        for seed in spec.seeds:
            for cohort in spec.scored:
                run = _run(spec, arm, "single-cohort", seed, [cohort], [cohort])
                runs.append(budget(arm, seed).apply(project, run))
    for arm in spec.arms_in("leave-one-out"):
        for seed in spec.seeds:
            for held in spec.scored:
                rest = [c for c in spec.cohorts if c != held]
                run = _run(spec, arm, "leave-one-out", seed, rest, [held], held_out=held)
                runs.append(budget(arm, seed).apply(project, run))
    for run in runs:
        _refuse_changed_run(spec, project, run)
    return runs


#: Settings a run takes from the project when it starts, not from the study.
FROM_THE_PROJECT = ("model.header_dim", "model.image.shape", "model.tabular.vocabulary")


def _refuse_changed_run(spec: StudySpec, project: Project, run: PlannedRun) -> None:
    """A run the project already holds must have been started with the configuration the study
    plans for it: a study file edited since (more epochs, another arm setting) would otherwise
    extend or keep the old run and report its old scores under the new design."""
    path = project.run_files(run.name).config
    if not path.is_file():
        return
    saved = yaml_io.load_model(path, PretrainConfig, "run config")
    changed = [d for d in differences(saved, run.config) if not d[0].startswith(FROM_THE_PROJECT)]
    if changed:
        key, was, now = changed[0]
        raise CitabError(
            f"study '{spec.study}': run '{run.name}' in {project.runs_dir} was started with "
            f"{key} {was}, the study now asks for {now}; remove that run and the study's "
            f"scores/{run.name}* files to train it anew, or give the study another name"
        )
