"""What every evaluation report shares: metric summaries with bootstrap intervals, markdown
tables, the report folder, and the classifier figures."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from citab_cli.core import atomic
from citab_cli.core.data.project import Project
from citab_cli.core.evaluation import metrics

#: Column titles of a metrics table, in `metrics.NAMES` order.
METRIC_TITLES = ("accuracy", "balanced accuracy", "macro AUC", "macro F1", "ECE")


def summarize(
    y_test: np.ndarray, runs: list[np.ndarray], resamples: int, seed: int = 0
) -> dict[str, dict]:
    """metric -> {"mean", "std" over runs (seeds), "ci95" bootstrap over test subjects} for
    class probabilities `runs` (each (N, K)) of the same N test subjects."""
    per_run = [metrics.score(y_test, p) for p in runs]
    intervals = metrics.bootstrap(y_test, runs, resamples=resamples, seed=seed)
    return {
        name: {
            "mean": float(np.mean([s[name] for s in per_run])),
            "std": float(np.std([s[name] for s in per_run])),
            "ci95": list(intervals[name]),
        }
        for name in metrics.NAMES
    }


def metrics_table(rows: list[tuple[str, dict]], first: str) -> list[str]:
    """Markdown lines: one row per (title, summary) with mean ± sd [95% interval] cells."""
    lines = [
        f"| {first} | " + " | ".join(METRIC_TITLES) + " |",
        "|---" * (len(METRIC_TITLES) + 1) + "|",
    ]
    for title, summary in rows:
        cells = [
            f"{summary[n]['mean']:.3f} ± {summary[n]['std']:.3f} "
            f"[{summary[n]['ci95'][0]:.3f}, {summary[n]['ci95'][1]:.3f}]"
            for n in metrics.NAMES
        ]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return lines


def gap_lines(document: dict) -> list[str]:
    """Markdown lines naming the classes a split lacks (none when every split has them all)."""
    return [
        f"**The {split} split has no labelled subject of class {', '.join(missing)}.**"
        for split, missing in document.get("split_gaps", {}).items()
    ]


def created() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def report_folder(project: Project, kind: str, run: str, cohort: str) -> Path:
    """reports/<kind>-<run>-<cohort>-<UTC time>/"""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return project.reports_dir / f"{kind}-{run}-{cohort}-{stamp}"


def write_report(
    folder: Path, report: dict, markdown: str, extra: Callable[[Path], None] | None = None
) -> None:
    """report.json, report.md and whatever `extra` writes (figures, models), all or nothing."""
    with atomic.staged_directory(folder) as stage:
        (stage / "report.json").write_text(json.dumps(report, indent=2))
        if extra is not None:
            extra(stage)
        (stage / "report.md").write_text(markdown)


def pyplot():
    """matplotlib's pyplot on the file-only backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def classifier_figures(
    folder: Path, classes: list[str], y_test: np.ndarray, proba: np.ndarray, title: str
) -> None:
    """confusion_matrix.png and roc.png for one set of test predictions."""
    _confusion_matrix(folder / "confusion_matrix.png", classes, y_test, proba, title)
    _roc(folder / "roc.png", classes, y_test, proba, title)


def _confusion_matrix(
    path: Path, classes: list[str], y_test: np.ndarray, proba: np.ndarray, title: str
) -> None:
    plt = pyplot()
    k = len(classes)
    matrix = np.zeros((k, k), dtype=int)
    for t, p in zip(y_test, proba.argmax(1), strict=True):
        matrix[t, p] += 1
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), classes)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            colour = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _roc(path: Path, classes: list[str], y_test: np.ndarray, proba: np.ndarray, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for c, name in enumerate(classes):
        positive = y_test == c
        if positive.all() or not positive.any():
            continue
        scores = proba[:, c]
        thresholds = np.unique(scores)[::-1]
        tpr = [0.0] + [float((scores[positive] >= t).mean()) for t in thresholds]
        fpr = [0.0] + [float((scores[~positive] >= t).mean()) for t in thresholds]
        auc = metrics.binary_auc(positive, scores)
        ax.plot(fpr, tpr, label=f"{name} vs rest (AUC {auc:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC: {title}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def label_fraction_figure(
    path: Path, fractions, summary: dict, classes: list[str], key: Callable[[float], str]
) -> None:
    """Balanced accuracy (mean ± sd over seeds) against the fraction of labels, per method."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for feature, results in summary.items():
        means = [results[key(f)]["balanced_accuracy"]["mean"] for f in fractions]
        stds = [results[key(f)]["balanced_accuracy"]["std"] for f in fractions]
        ax.errorbar(fractions, means, yerr=stds, marker="o", capsize=3, label=feature)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of labelled train subjects")
    ax.set_ylabel("test balanced accuracy (mean ± sd over seeds)")
    ax.axhline(1 / len(classes), color="grey", linestyle=":", label="chance")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curve_figure(path: Path, curves: dict[str, list[list[float]]], ylabel: str) -> None:
    """One line per (method, seed) of a per-epoch score, a colour per method."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for n, (kind, per_seed) in enumerate(curves.items()):
        for i, curve in enumerate(per_seed):
            ax.plot(
                range(1, len(curve) + 1),
                curve,
                color=f"C{n}",
                alpha=0.8,
                label=kind if i == 0 else None,
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
