"""`citab demo`: the whole path on synthetic cohorts, small enough for a laptop CPU."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from citab_cli.core import headers, synth
from citab_cli.core.data import ingest, ingest_execute
from citab_cli.core.data.project import BEST_CHECKPOINT, Project
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation import probe
from citab_cli.core.explain import explanation as explain
from citab_cli.core.runtime.run_config import pretrain_preset
from citab_cli.core.training import loop as pretraining
from citab_cli.core.training.records import read_metrics
from citab_cli.core.workflows import project_page

COHORTS = ("adni", "nacc", "aibl")
DEMO_RUN = "demo"


@dataclass
class DemoResult:
    """What the demo made: folders, the run and its probes and explanation."""

    folder: Path
    project: Path
    run_dir: Path
    probes: list[probe.ProbeReport]
    explanation: explain.Explanation
    fractions: tuple[float, ...]
    seeds: int = 3
    page: Path | None = None  # page/index.html
    matching_auc: list[float] = field(default_factory=list)  # validation, epoch by epoch


def synthetic_project(
    folder: Path,
    cohorts: list[str],
    subjects: int,
    shape: int,
    workers: int = 1,
    image_signal: float = 1.0,
    message: Callable[[str], None] = lambda text: None,
) -> Project:
    """folder/raw: synthetic cohorts as users' files; folder/project: them ingested, headers
    embedded. What the demo, the studies and the benchmarks start from."""
    raw, root = folder / "raw", folder / "project"
    message(f"writing {len(cohorts)} synthetic cohorts of {subjects} subjects to {raw}")
    synth.generate(raw, cohorts, subjects, shape, seed=0, image_signal=image_signal)
    for name in cohorts:
        message(f"ingesting {name}")
        plan = ingest.plan(raw / f"{name}.csv", raw / f"{name}_mri", root, shape=(shape,) * 3)
        ingest_execute.execute(plan, workers=workers)
    project = Project(root)
    message("embedding column headers")
    headers.encode_headers(project)
    return project


def run(
    folder: Path,
    subjects: int = 60,
    shape: int = 48,
    epochs: int = 45,
    fractions: tuple[float, ...] = (0.1, 1.0),
    seeds: int = 3,
    workers: int = 1,
    message: Callable[[str], None] = lambda text: None,
) -> DemoResult:
    """synth -> ingest -> embed-headers -> pretrain (small) -> probe -> explain, in `folder`."""
    if folder.exists() and any(folder.iterdir()):
        raise CitabError(
            f"{folder} already exists and is not empty; choose a new --dir "
            "(the demo never overwrites files)"
        )
    project = synthetic_project(folder, list(COHORTS), subjects, shape, workers, message=message)
    root = project.root
    config = pretrain_preset("small")
    config = config.model_copy(
        update={
            "cohorts": list(COHORTS),
            "train": config.train.model_copy(update={"epochs": epochs}),
        }
    )
    message(f"pretraining the small preset on {', '.join(COHORTS)} for {epochs} epochs")
    pretraining.pretrain(project, config, DEMO_RUN, hooks=pretraining.Hooks(message=message))
    message("probing every cohort")
    reports = probe.probe(project, BEST_CHECKPOINT, list(COHORTS), fractions, seeds, resamples=200)
    message("explaining one ADNI subject")
    explanation = explain.explain(project, BEST_CHECKPOINT, "adni", "1", steps=16)
    message("writing the project page")
    page = project_page.write_page(project)
    run_dir = project.run_files(DEMO_RUN).directory
    result = DemoResult(folder, root, run_dir, reports, explanation, fractions, seeds, page)
    records = read_metrics(project.run_files(DEMO_RUN).metrics)
    result.matching_auc = [
        r["validation"]["val_itm_auc"] for r in records if "val_itm_auc" in r.get("validation", {})
    ]
    return result
