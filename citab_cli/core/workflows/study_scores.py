"""What a study keeps of its runs: each scored run's test probabilities (studies/<study>/
scores/) and its plan as rows."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citab_cli.core import atomic
from citab_cli.core.data.project import StudyFiles
from citab_cli.core.workflows.study_plan import PlannedRun

#: The file name of a scored (run, checkpoint, cohort) under studies/<study>/scores/: its
#: probes, or (kind "finetune") its fine-tuning against training from scratch.
SCORE_FILE = "{run}--{checkpoint}--{cohort}{kind}.npz"


def score_path(folder: Path, run: str, checkpoint: str, cohort: str, kind: str = "probe") -> Path:
    """Where the scores of one (run, checkpoint, cohort) are kept."""
    suffix = "" if kind == "probe" else f"--{kind}"
    name = SCORE_FILE.format(run=run, checkpoint=checkpoint, cohort=cohort, kind=suffix)
    return StudyFiles(folder).scores / name


def save_scores(
    path: Path, y_test: np.ndarray, classes: list[str], runs: dict, rows: np.ndarray
) -> None:
    """Write `runs` (name -> fraction key -> probabilities per probe seed) atomically, with the
    class index `y_test` and cohort row `rows` of each scored subject."""
    arrays = {"y_test": np.asarray(y_test), "rows": np.asarray(rows, np.int64)}
    for name, per_fraction in runs.items():
        for fraction, seeds in per_fraction.items():
            for k, probabilities in enumerate(seeds):
                arrays[f"{name}|{fraction}|{k}"] = np.asarray(probabilities, np.float32)
    arrays["classes"] = np.array(classes)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic.write_bytes(path, buffer.getvalue())


@dataclass(frozen=True)
class Scores:
    """One scores file: the scored subjects and every feature set's probabilities."""

    y: np.ndarray  # (N,) class index
    rows: np.ndarray  # (N,) cohort row
    runs: dict  # name -> fraction key -> probabilities (N, K) per probe seed

    def on(self, rows: np.ndarray) -> Scores:
        """The scores of the subjects `rows` (cohort rows, all scored here), in that order."""
        where = {int(r): i for i, r in enumerate(self.rows)}
        keep = np.array([where[int(r)] for r in rows], np.int64)
        runs = {n: {f: [p[keep] for p in s] for f, s in fr.items()} for n, fr in self.runs.items()}
        return Scores(self.y[keep], np.asarray(rows), runs)


def load_scores(path: Path) -> Scores:
    """A scores file read back."""
    with np.load(path) as data:
        y = data["y_test"]
        rows = data["rows"] if "rows" in data.files else np.arange(len(y))
        runs: dict = {}
        for key in data.files:
            if "|" not in key:  # y_test, rows, classes
                continue
            name, fraction, k = key.split("|")
            runs.setdefault(name, {}).setdefault(fraction, {})[int(k)] = data[key]
    ordered = {n: {f: [s[k] for k in sorted(s)] for f, s in fr.items()} for n, fr in runs.items()}
    return Scores(y, rows, ordered)


def plan_rows(runs: list[PlannedRun]) -> list[dict]:
    """The plan as rows (for --dry-run and the report)."""
    return [
        {
            "run": r.name,
            "arm": r.arm,
            "regime": r.regime,
            "seed": r.seed,
            "pretrains_on": list(r.config.cohorts),
            "probed_on": list(r.probe_on),
            "epochs": r.config.train.epochs,
            "steps": r.steps,
        }
        for r in runs
    ]
