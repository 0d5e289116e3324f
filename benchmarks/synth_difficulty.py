"""How hard are the synthetic cohorts? Prints JSON.

Synthesises cohorts, ingests them, then scores per-cohort logistic regression (5-fold stratified
cross-validation over the labelled subjects) on the table alone, on simple image features
alone (mean intensity of the 8 octants of the central half of the preprocessed volume), and on
both, next to the ceiling accuracy recorded in truth.json.

    python benchmarks/synth_difficulty.py --subjects 300 --shape 32
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def _tabular_features(values: np.ndarray, categorical: list[bool]) -> np.ndarray:
    parts = []
    for j in range(values.shape[1]):
        column = values[:, j]
        missing = np.isnan(column)
        if categorical[j]:
            levels = np.unique(column[~missing])
            parts.append(np.stack([(column == lv) for lv in levels], 1).astype(float))
        else:
            filled = np.where(missing, np.nanmean(column) if (~missing).any() else 0.0, column)
            parts.append(filled[:, None])
        if missing.any():
            parts.append(missing[:, None].astype(float))
    return np.concatenate(parts, 1)


def _image_features(images: np.ndarray) -> np.ndarray:
    """Mean intensity of the 8 octants of each volume's central half (ventricles, hippocampi)."""
    n, d, h, w = images.shape
    centre = images[:, d // 4 : d - d // 4, h // 4 : h - h // 4, w // 4 : w - w // 4]
    centre = centre.astype(np.float32)
    cd, ch, cw = (s // 2 for s in centre.shape[1:])
    octants = [
        centre[:, i * cd : (i + 1) * cd, j * ch : (j + 1) * ch, k * cw : (k + 1) * cw]
        for i in (0, 1)
        for j in (0, 1)
        for k in (0, 1)
    ]
    return np.stack([o.mean(axis=(1, 2, 3)) for o in octants], axis=1)


def _cv_scores(features: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    """Mean test scores over 5-fold stratified cross-validation repeated 4 times."""
    import warnings

    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    warnings.filterwarnings("ignore", category=FutureWarning)
    model = make_pipeline(
        StandardScaler(), LogisticRegressionCV(Cs=6, max_iter=2000, class_weight="balanced")
    )
    folds = RepeatedStratifiedKFold(n_splits=5, n_repeats=4, random_state=seed)
    scores = cross_validate(
        model, features, labels, cv=folds, n_jobs=2, scoring=("accuracy", "balanced_accuracy")
    )
    return {
        "accuracy": round(float(scores["test_accuracy"].mean()), 3),
        "balanced_accuracy": round(float(scores["test_balanced_accuracy"].mean()), 3),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--shape", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    from safetensors.numpy import load_file

    from citab_cli.core import synth
    from citab_cli.core.data import ingest, ingest_execute
    from citab_cli.core.data.project import Project

    cohorts = ["adni", "nacc", "aibl"]
    with tempfile.TemporaryDirectory() as tmp:
        raw, project = Path(tmp) / "raw", Path(tmp) / "project"
        synth.generate(raw, cohorts, args.subjects, args.shape, args.seed)
        truth = json.loads((raw / "truth.json").read_text())
        report = {
            "subjects_per_cohort": args.subjects,
            "shape": args.shape,
            "seed": args.seed,
            "cv": "5-fold stratified, repeated 4 times, labelled baseline subjects",
            "cohorts": {},
        }
        for name in cohorts:
            plan = ingest.plan(
                raw / f"{name}.csv", raw / f"{name}_mri", project, shape=(args.shape,) * 3
            )
            ingest_execute.execute(plan, workers=args.workers)
            store = Project(project)
            manifest = store.manifest(name)
            values = load_file(str(store.cohort_file(name, "tabular.safetensors")))["values"]
            images = np.load(store.cohort_file(name, "images.npy"))
            labels = np.array([lab or "" for lab in plan.table.labels])
            keep = labels != ""
            tab = _tabular_features(
                values, [c["type"] == "categorical" for c in manifest["columns"]]
            )[keep]
            img = _image_features(images)[keep]
            y = labels[keep]
            report["cohorts"][name] = {
                "labelled": int(keep.sum()),
                "ceiling_accuracy": truth["cohorts"][name]["ceiling_accuracy"],
                "tabular_only": _cv_scores(tab, y, args.seed),
                "image_only": _cv_scores(img, y, args.seed),
                "tabular_and_image": _cv_scores(np.concatenate([tab, img], 1), y, args.seed),
            }
    json.dump(report, sys.stdout, indent=2)
    print()
    return report


if __name__ == "__main__":
    main()
