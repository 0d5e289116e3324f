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
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from citab_cli.core import atomic
from citab_cli.core.data.project import Project, StudyFiles
from citab_cli.core.evaluation import finetune, probe
from citab_cli.core.runtime.device import pick_device
from citab_cli.core.runtime.stopwatch import Stopwatch
from citab_cli.core.training import loop
from citab_cli.core.workflows.study_plan import PlannedRun, plan_study
from citab_cli.core.workflows.study_report import write_study_report
from citab_cli.core.workflows.study_scores import plan_rows, save_scores, score_path
from citab_cli.core.workflows.study_spec import StudySpec

#: Processes a study's probes fit their heads in (each fit is deterministic: the same numbers
#: whatever the count).
PROBE_WORKERS = max(1, min(os.cpu_count() or 1, 4))
#: Bootstrap resamples of the ordinary probe reports a study writes along the way (its own
#: report resamples `spec.resamples` times).
PROBE_RESAMPLES = 200


@dataclass
class StudyResult:
    """What a study run did: its plan, its working folder, and the report it wrote."""

    runs: list[PlannedRun]
    folder: Path
    report: Path | None
    seconds: float = 0.0
    #: Where the time went: every run's parts over all invocations, the report's of this one.
    stopwatch: Stopwatch | None = None


@dataclass
class StudyHooks:
    """How a study reports; all optional. `stage(number, run, what)` says which run (1-based)
    is at which stage ("pretraining", "probing aibl", ...); `finished(number)` that a run is
    done (pretrained and scored)."""

    message: Callable[[str], None] = lambda text: None
    stage: Callable[[int, PlannedRun, str], None] = lambda number, run, what: None
    finished: Callable[[int], None] = lambda number: None


def run_study(
    project: Project, spec: StudySpec, device: str = "auto", hooks: StudyHooks | None = None
) -> StudyResult:
    """Pretrain and score every run of the study that is not done yet, then write its report."""
    hooks = hooks or StudyHooks()
    started = time.perf_counter()
    runs = plan_study(spec, project)
    folder = project.study_dir(spec.study)
    StudyFiles(folder).scores.mkdir(parents=True, exist_ok=True)
    atomic.write_text(StudyFiles(folder).copy, spec.model_dump_json(indent=2) + "\n")
    write_plan(folder, runs)
    target = str(pick_device(device))
    watch = read_timings(folder)
    fits = probe.FitCache()  # every run's baselines of a cohort are fitted once
    for number, run in enumerate(runs, 1):
        hooks.stage(number, run, f"pretraining ({run.steps} steps)")
        with watch.part(PRETRAINING):
            _pretrain(project, run, target, hooks.message)
        for checkpoint in spec.checkpoints:
            _score(project, spec, run, checkpoint, folder, target, hooks, number, watch, fits)
        write_timings(folder, watch)
        hooks.finished(number)
    hooks.stage(len(runs), runs[-1], "writing the report")
    everything = Stopwatch(watch.seconds)  # the report's parts are this invocation's alone
    report = write_study_report(project, spec, runs, folder, everything)
    return StudyResult(runs, folder, report, time.perf_counter() - started, everything)


#: The stopwatch's parts a study adds to a probe's (evaluation.probe.PARTS).
PRETRAINING = "pretraining"
FINETUNING = "fine-tuning against scratch"


def read_timings(folder: Path) -> Stopwatch:
    """The seconds earlier invocations of the study spent on its runs (none at first)."""
    path = StudyFiles(folder).timings
    if not path.is_file():
        return Stopwatch()
    try:
        return Stopwatch({str(k): float(v) for k, v in json.loads(path.read_text()).items()})
    except (ValueError, AttributeError):  # unreadable: the times restart, nothing else depends
        return Stopwatch()


def write_timings(folder: Path, watch: Stopwatch) -> None:
    """Keep the seconds of the study's runs so far (studies/<study>/timings.json)."""
    atomic.write_text(StudyFiles(folder).timings, json.dumps(watch.seconds, indent=2) + "\n")


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


#: What the runs that do not fit every feature set are probed through: their own embeddings.
OWN_EMBEDDINGS = ("citab", "citab_tabular", "citab_image")


def fits_everything(spec: StudySpec, run: PlannedRun) -> bool:
    """Whether a run's probes fit every feature set (baselines, random twins, the oracle): the
    reference's cross-cohort runs, and its cross-fitted leave-one-out runs; every other run is
    probed through its own embeddings alone (multimodal, tabular CLS, image)."""
    if run.arm != spec.reference:
        return False
    return run.regime == "cross-cohort" or (run.regime == "leave-one-out" and spec.cross_fit > 0)


def _score(project, spec: StudySpec, run, checkpoint: str, folder, device, hooks, number: int,
           watch: Stopwatch, fits: probe.FitCache):  # fmt: skip
    """Probe (and for leave-one-out, fine-tune) the run's checkpoint on its cohorts, unless
    its scores are already kept. A held-out cohort is cross-fitted over all its labelled
    subjects (`spec.cross_fit` folds)."""
    files = project.run_files(run.name)
    path = files.best if checkpoint == "best" else files.last
    todo = [c for c in run.probe_on if not score_path(folder, run.name, checkpoint, c).is_file()]
    if todo:  # one call: the checkpoint is read and the networks built once for every cohort
        hooks.stage(number, run, f"probing {', '.join(todo)} ({checkpoint} checkpoint)")
        reports = probe.probe(
            project,
            str(path),
            todo,
            tuple(spec.label_fractions),
            spec.probe_seeds,
            device=device,
            resamples=PROBE_RESAMPLES,
            message=hooks.message,
            exclude_criteria=spec.exclude_criteria,
            features=None if fits_everything(spec, run) else OWN_EMBEDDINGS,
            cross_fit=spec.cross_fit if run.regime == "leave-one-out" else 0,
            stopwatch=watch,
            fits=fits,
            workers=PROBE_WORKERS,
        )
        for report in reports:
            target = score_path(folder, run.name, checkpoint, report.cohort)
            save_scores(target, report.y_test, report.classes, report.probabilities, report.rows)
    if not spec.finetune or run.held_out is None:
        return
    tuned = score_path(folder, run.name, checkpoint, run.held_out, "finetune")
    if not tuned.is_file():
        hooks.stage(number, run, f"fine-tuning on {run.held_out} ({checkpoint} checkpoint)")
        with watch.part(FINETUNING):
            y, classes, rows, runs = _finetuned(project, spec, str(path), run.held_out, device,
                                                hooks)  # fmt: skip
        save_scores(tuned, y, classes, runs, rows)


def _finetuned(project, spec: StudySpec, checkpoint: str, cohort: str, device, hooks):
    """Trainable fine-tuning against the same network from scratch and DAFT-style supervised
    fusion from scratch, with the same steps, at
    each of the study's label fractions, on the cohort's test split: (y, classes, rows, name ->
    fraction key -> probabilities per seed)."""
    from citab_cli.core.evaluation.evaluation_report import fraction_key

    out: dict = {"finetuned": {}, "scratch": {}, "daft": {}}
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
            message=hooks.message,
            exclude_criteria=spec.exclude_criteria,
        )
        for kind in out:
            out[kind][fraction_key(fraction)] = report.probabilities[kind]
    return report.y_test, report.classes, report.rows, out


def write_plan(folder: Path, runs: list[PlannedRun]) -> None:
    """studies/<study>/plan.json."""
    atomic.write_text(StudyFiles(folder).plan, json.dumps(plan_rows(runs), indent=2) + "\n")
