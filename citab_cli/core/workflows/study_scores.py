"""What a study keeps of its runs: each scored run's test probabilities (studies/<study>/
scores/) and its plan as rows."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from citab_cli.core import atomic
from citab_cli.core.workflows.study_plan import PlannedRun

#: The file name of a scored (run, checkpoint, cohort) under studies/<study>/scores/.
SCORE_FILE = "{run}--{checkpoint}--{cohort}.npz"


def score_path(folder: Path, run: str, checkpoint: str, cohort: str) -> Path:
    """Where the test probabilities of one (run, checkpoint, cohort) are kept."""
    return folder / "scores" / SCORE_FILE.format(run=run, checkpoint=checkpoint, cohort=cohort)


def save_scores(path: Path, y_test: np.ndarray, classes: list[str], runs: dict) -> None:
    """Write `runs` (name -> fraction key -> probabilities per probe seed) atomically."""
    arrays = {"y_test": np.asarray(y_test)}
    for name, per_fraction in runs.items():
        for fraction, seeds in per_fraction.items():
            for k, probabilities in enumerate(seeds):
                arrays[f"{name}|{fraction}|{k}"] = np.asarray(probabilities, np.float32)
    arrays["classes"] = np.array(classes)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic.write_bytes(path, buffer.getvalue())


def load_scores(path: Path) -> tuple[np.ndarray, dict]:
    """(y_test, name -> fraction key -> probabilities per probe seed) of a scores file."""
    with np.load(path) as data:
        y = data["y_test"]
        runs: dict = {}
        for key in data.files:
            if "|" not in key:
                continue
            name, fraction, k = key.split("|")
            runs.setdefault(name, {}).setdefault(fraction, {})[int(k)] = data[key]
    return y, {n: {f: [s[k] for k in sorted(s)] for f, s in fr.items()} for n, fr in runs.items()}


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
