"""`citab probe`: linear probes of frozen embeddings, with baselines run the same way."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from citab_cli.core import atomic
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation import metrics
from citab_cli.core.evaluation.checkpoints import (
    LoadedCheckpoint,
    check_fractions,
    classifier_figures,
    label_layout,
    load_checkpoint,
    prepare_cohorts,
    stratified_subset,
)
from citab_cli.core.model.citab import CITab, build_model
from citab_cli.core.training.dataset import CohortData, Collator
from citab_cli.core.training.loop import embed_subjects

#: Inverse regularisation strengths tried on the validation split.
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
FEATURES = ("citab", "citab_tabular", "citab_image", "raw_table", "random_init")
FEATURE_TITLES = {
    "citab": "CITab multimodal embedding",
    "citab_tabular": "CITab tabular CLS",
    "citab_image": "CITab image pooled",
    "raw_table": "raw table (standardised + missing indicators)",
    "random_init": "same architecture, random weights",
}


def raw_table_features(cohort: CohortData) -> np.ndarray:
    """Normalised numeric values, missing indicators and one-hot levels: (N, F)."""
    parts = []
    for j in range(cohort.z.shape[1]):
        if cohort.categorical[j]:
            parts.append(
                np.eye(max(cohort.level_count[j], 1))[np.maximum(cohort.level[:, j], 0)]
                * (cohort.level[:, j] >= 0)[:, None]
            )
        else:
            parts.append(cohort.z[:, j : j + 1])
        if cohort.missing[:, j].any():
            parts.append(cohort.missing[:, j : j + 1].astype(np.float32))
    return np.concatenate(parts, axis=1).astype(np.float32)


def _fit_predict(x_train, y_train, x_val, y_val, x_test, classes: int):
    """Standardised logistic regression, C chosen by validation balanced accuracy."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best, best_score = None, -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in C_GRID:
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
            model.fit(x_train, y_train)
            score = (
                metrics.balanced_accuracy(y_val, _full_proba(model, x_val, classes))
                if len(y_val)
                else 0.0
            )
            if score > best_score:
                best, best_score = (model, c), score
    model, chosen = best
    return _full_proba(model, x_test, classes), chosen


def _full_proba(model, x: np.ndarray, classes: int) -> np.ndarray:
    """Probabilities over all `classes`, zero for classes the training subset lacked."""
    out = np.zeros((len(x), classes))
    out[:, model.classes_] = model.predict_proba(x)
    return out


@dataclass
class ProbeReport:
    cohort: str
    folder: Path
    summary: dict  # feature -> fraction -> metric -> {"mean", "std", "ci95"}


def probe(
    project: Project,
    ckpt: str,
    cohorts: list[str] | None = None,
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0),
    seeds: int = 5,
    device: str = "cpu",
    resamples: int = 500,
    message: Callable[[str], None] = lambda text: None,
) -> list[ProbeReport]:
    check_fractions(fractions)
    if seeds < 1:
        raise CitabError("--seeds must be at least 1")
    loaded = load_checkpoint(project, ckpt)
    names = cohorts or list(loaded.config.cohorts) or project.cohorts()
    data = prepare_cohorts(project, loaded, names, message, "probe")

    target = torch.device(device)
    trained = loaded.model().to(target)
    torch.manual_seed(0)
    random = build_model(loaded.config.model).to(target).eval()
    reports = []
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    for cohort in data:
        message(f"probing {cohort.name}")
        reports.append(
            _probe_cohort(
                project, loaded, cohort, trained, random, fractions, seeds, target, resamples, stamp
            )
        )
    return reports


def _probe_cohort(
    project: Project,
    loaded: LoadedCheckpoint,
    cohort: CohortData,
    trained: CITab,
    random: CITab,
    fractions,
    seeds: int,
    device: torch.device,
    resamples: int,
    stamp: str,
) -> ProbeReport:
    layout = label_layout(cohort, "probe")
    classes, y_all, rows = layout.classes, layout.y, layout.rows
    labelled = y_all >= 0
    collator = Collator([cohort], loaded.config.model.tabular.categorical == "levels")
    every = np.nonzero(labelled)[0]
    pairs = np.stack([np.zeros(len(every), np.int64), every], 1)
    batch = loaded.config.train.batch_size
    embedded = embed_subjects(trained, collator, pairs, batch, device)
    baseline = embed_subjects(random, collator, pairs, batch, device)
    position = {row: i for i, row in enumerate(every)}
    raw = raw_table_features(cohort)
    feature_sets = {
        "citab": embedded["multimodal"],
        "citab_tabular": embedded["tabular"],
        "citab_image": embedded["image"],
        "raw_table": raw[every],
        "random_init": baseline["multimodal"],
    }

    def take(x: np.ndarray, split: str) -> np.ndarray:
        return x[[position[r] for r in rows[split]]]

    y = {s: y_all[rows[s]] for s in rows}
    summary: dict = {}
    predictions: dict = {}
    chosen_c: dict = {}
    for feature, x in feature_sets.items():
        summary[feature] = {}
        for fraction in fractions:
            runs, per_seed, cs = [], [], []
            for seed in range(seeds):
                subset = stratified_subset(y["train"], fraction, seed)
                proba, c = _fit_predict(
                    take(x, "train")[subset],
                    y["train"][subset],
                    take(x, "val"),
                    y["val"],
                    take(x, "test"),
                    len(classes),
                )
                runs.append(proba)
                per_seed.append(metrics.score(y["test"], proba))
                cs.append(c)
            intervals = metrics.bootstrap(y["test"], runs, resamples=resamples, seed=0)
            summary[feature][_key(fraction)] = {
                name: {
                    "mean": float(np.mean([s[name] for s in per_seed])),
                    "std": float(np.std([s[name] for s in per_seed])),
                    "ci95": list(intervals[name]),
                }
                for name in metrics.NAMES
            }
            summary[feature][_key(fraction)]["n_train"] = int(
                len(stratified_subset(y["train"], fraction, 0))
            )
            predictions[(feature, fraction)] = runs[0]
            chosen_c[f"{feature}@{_key(fraction)}"] = cs
    folder = project.reports_dir / f"probe-{loaded.run}-{cohort.name}-{stamp}"
    report = {
        "kind": "probe",
        "checkpoint": str(loaded.path),
        "run": loaded.run,
        "step": loaded.document.get("step"),
        "cohort": cohort.name,
        "cohort_seen_in_pretraining": cohort.name in loaded.document.get("cohorts", {}),
        "classes": classes,
        "subjects": {s: int(len(rows[s])) for s in rows},
        "label_fractions": list(fractions),
        "seeds": seeds,
        "bootstrap_resamples": resamples,
        "features": {k: FEATURE_TITLES[k] for k in feature_sets},
        "results": summary,
        "chosen_c": chosen_c,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic.staged_directory(folder) as stage:
        (stage / "report.json").write_text(json.dumps(report, indent=2))
        best_fraction = max(fractions)
        _figures(stage, classes, y["test"], predictions, fractions, summary, best_fraction)
        (stage / "report.md").write_text(_markdown(report, best_fraction))
    return ProbeReport(cohort.name, folder, summary)


def _key(fraction: float) -> str:
    return f"{fraction:g}"


def _figures(folder: Path, classes, y_test, predictions, fractions, summary, fraction) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classifier_figures(
        folder,
        classes,
        y_test,
        predictions[("citab", fraction)],
        f"CITab probe, {fraction:.0%} of labels (seed 0)",
    )
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for feature, results in summary.items():
        means = [results[_key(f)]["balanced_accuracy"]["mean"] for f in fractions]
        stds = [results[_key(f)]["balanced_accuracy"]["std"] for f in fractions]
        ax.errorbar(fractions, means, yerr=stds, marker="o", capsize=3, label=feature)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of labelled train subjects")
    ax.set_ylabel("test balanced accuracy (mean ± sd over seeds)")
    ax.axhline(1 / len(classes), color="grey", linestyle=":", label="chance")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "label_fraction_curve.png", dpi=120)
    plt.close(fig)


def _markdown(report: dict, fraction: float) -> str:
    lines = [
        f"# Linear probe: {report['cohort']}",
        "",
        f"Checkpoint `{report['checkpoint']}` (run {report['run']}, step {report['step']}); "
        f"cohort {'seen' if report['cohort_seen_in_pretraining'] else 'not seen'} in pretraining.",
        f"Classes: {', '.join(report['classes'])}. Labelled subjects: "
        + ", ".join(f"{k} {v}" for k, v in report["subjects"].items())
        + ".",
        f"Logistic regression on standardised features, C chosen on the validation split, scored "
        f"on the test split; {report['seeds']} seed(s); mean ± sd over seeds, 95% bootstrap "
        f"interval over test subjects ({report['bootstrap_resamples']} resamples).",
        "",
    ]
    for f in report["label_fractions"]:
        lines += [
            f"## {f:.0%} of the labelled train subjects",
            "",
            "| features | accuracy | balanced accuracy | macro AUC | macro F1 | ECE |",
            "|---|---|---|---|---|---|",
        ]
        for feature, results in report["results"].items():
            cells = []
            for name in metrics.NAMES:
                m = results[_key(f)][name]
                cells.append(
                    f"{m['mean']:.3f} ± {m['std']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"
                )
            lines.append(f"| {report['features'][feature]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        f"![confusion matrix, {fraction:.0%} of labels](confusion_matrix.png)",
        f"![ROC curves, {fraction:.0%} of labels](roc.png)",
        "![balanced accuracy by label fraction](label_fraction_curve.png)",
        "",
    ]
    return "\n".join(lines)
