"""`citab study`: run a study's pretraining runs and their probes, then one report.

Every pretraining is an ordinary run under runs/ (`citab pretrain` would make the same one), and
every probe an ordinary probe report under reports/; nothing of either is written again here.
What a study adds is its working folder, studies/<study>/: a copy of the study file, the plan,
and each scored run's test probabilities (scores/). A re-run skips what is finished (a finished
run resumes to its end at once; a scored run is not probed again) and resumes a killed run, so
a study cut short still reports what it has.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from citab_cli.core import atomic
from citab_cli.core.data.project import Project
from citab_cli.core.evaluation import finetune, probe
from citab_cli.core.runtime.device import pick_device
from citab_cli.core.training import loop
from citab_cli.core.workflows.study_plan import PlannedRun, plan_study
from citab_cli.core.workflows.study_report import write_study_report
from citab_cli.core.workflows.study_scores import plan_rows, save_scores, score_path
from citab_cli.core.workflows.study_spec import StudySpec

#: Bootstrap resamples of the ordinary probe reports a study writes along the way (its own
#: report resamples `spec.resamples` times).
PROBE_RESAMPLES = 200


@dataclass
class StudyResult:
    """What a study run did: its plan, its working folder, and the report it wrote."""

    runs: list[PlannedRun]
    folder: Path
    report: Path | None


def run_study(
    project: Project,
    spec: StudySpec,
    device: str = "auto",
    message: Callable[[str], None] = lambda text: None,
) -> StudyResult:
    """Pretrain and score every run of the study that is not done yet, then write its report."""
    runs = plan_study(spec, project)
    folder = project.study_dir(spec.study)
    (folder / "scores").mkdir(parents=True, exist_ok=True)
    atomic.write_text(folder / "study.json", spec.model_dump_json(indent=2) + "\n")
    write_plan(folder, runs)
    target = str(pick_device(device))
    for number, run in enumerate(runs, 1):
        message(f"run {number}/{len(runs)}: {run.name} ({run.steps} steps)")
        _pretrain(project, run, target, message)
        for checkpoint in spec.checkpoints:
            _score(project, spec, run, checkpoint, folder, target, message)
    report = write_study_report(project, spec, runs, folder)
    return StudyResult(runs, folder, report)


def _pretrain(project: Project, run: PlannedRun, device: str, message) -> None:
    """The run, started, resumed after a kill, or (finished) resumed to its end at once."""
    files = project.run_files(run.name)
    resume = files.config.is_file()
    loop.pretrain(
        project,
        run.config,
        run.name,
        resume=resume,
        device=device,
        hooks=loop.Hooks(message=message),
    )


def _score(project, spec: StudySpec, run: PlannedRun, checkpoint: str, folder, device, message):
    """Probe (and for leave-one-out, fine-tune) the run's checkpoint on its cohorts, unless
    its scores are already kept."""
    files = project.run_files(run.name)
    path = files.best if checkpoint == "best" else files.last
    todo = [c for c in run.probe_on if not score_path(folder, run.name, checkpoint, c).is_file()]
    if todo:
        # the reference's cross-cohort runs fit every feature set (baselines, random twins);
        # every other run is compared through its multimodal embedding alone
        everything = run.arm == spec.reference and run.regime == "cross-cohort"
        reports = probe.probe(
            project,
            str(path),
            todo,
            tuple(spec.label_fractions),
            spec.probe_seeds,
            device=device,
            resamples=PROBE_RESAMPLES,
            message=message,
            exclude_criteria=spec.exclude_criteria,
            features=None if everything else ("citab",),
        )
        for report in reports:
            runs = dict(report.probabilities)
            if spec.finetune and run.held_out == report.cohort:
                runs.update(_finetuned(project, spec, str(path), report.cohort, device, message))
            save_scores(
                score_path(folder, run.name, checkpoint, report.cohort),
                report.y_test,
                report.classes,
                runs,
            )


def _finetuned(project, spec: StudySpec, checkpoint: str, cohort: str, device, message) -> dict:
    """Trainable fine-tuning against the same network from scratch with the same steps, at
    each of the study's label fractions: name -> fraction key -> probabilities per seed."""
    from citab_cli.core.evaluation.report import fraction_key

    out: dict = {"finetuned": {}, "scratch": {}}
    for fraction in spec.label_fractions:
        report = finetune.finetune(
            project,
            checkpoint,
            cohort,
            "trainable",
            fraction,
            spec.probe_seeds,
            device=device,
            resamples=PROBE_RESAMPLES,
            message=message,
            exclude_criteria=spec.exclude_criteria,
        )
        for kind in out:
            out[kind][fraction_key(fraction)] = report.probabilities[kind]
    return out


def write_plan(folder: Path, runs: list[PlannedRun]) -> None:
    """studies/<study>/plan.json."""
    atomic.write_text(folder / "plan.json", json.dumps(plan_rows(runs), indent=2) + "\n")
