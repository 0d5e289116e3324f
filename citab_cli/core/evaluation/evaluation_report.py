"""What every evaluation report shares: metric summaries with bootstrap intervals, markdown
tables, the report folder, and the classifier figures."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from citab_cli.core import atomic, figures
from citab_cli.core.data.project import Project, ReportFiles
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


def criteria_sentence(excluded: bool, pretrained_without: bool) -> str:
    """What a report says about the columns that define the diagnosis: whether this evaluation
    left them out (`excluded`), and whether pretraining did (`pretrained_without`)."""
    if excluded and pretrained_without:
        return (
            "Columns that define the diagnosis (schema `criterion: true`) were **excluded** "
            "from every feature set and from pretraining."
        )
    if excluded:
        return (
            "Columns that define the diagnosis (schema `criterion: true`) were **excluded** "
            "from every feature set here, but the model was **pretrained with them** (pretrain "
            "with `--exclude-criteria` to keep them out of pretraining too)."
        )
    if pretrained_without:
        return (
            "Every column was used here, including those that define the diagnosis; the model "
            "was pretrained without them (`--exclude-criteria`)."
        )
    return (
        "Every column was used, including those that define the diagnosis (run with "
        "`--exclude-criteria` to leave them out)."
    )


def fraction_key(fraction: float) -> str:
    """How a label fraction names its entries in reports: 0.1 -> "0.1", 1.0 -> "1"."""
    return f"{fraction:g}"


def compare(
    y_test: np.ndarray,
    runs: dict,
    pairs: list[tuple[str, str]],
    key: str,
    resamples: int,
) -> list[dict]:
    """Paired comparisons on the same test subjects and label subsets: for each (method,
    baseline) of `pairs`, the mean difference in each of `metrics.PAIRED` with a
    paired-bootstrap 95% interval and a verdict. runs: name -> key -> probabilities per seed."""
    out = []
    for method, baseline in pairs:
        entry = {"method": method, "baseline": baseline}
        for name in metrics.PAIRED:
            entry[name] = metrics.paired_difference(
                y_test, runs[method][key], runs[baseline][key], name, resamples
            )
        out.append(entry)
    return out


def comparison_table(entries: list[dict], titles: dict[str, str]) -> list[str]:
    """Markdown lines: one row per method-baseline pair."""
    lines = [
        "| method | baseline | Δ balanced accuracy [95% CI] | verdict | Δ macro AUC [95% CI] "
        "| verdict |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        cells = []
        for name in metrics.PAIRED:
            d = e[name]
            share = d.get("share")
            gained = f" ({share:.0%} of the available gain)" if share == share and share else ""
            cells += [f"{d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]{gained}"]
            cells += [metrics.verdict_words(d)]
        lines.append(
            f"| {titles[e['method']]} | {titles[e['baseline']]} | " + " | ".join(cells) + " |"
        )
    return lines


#: Axis titles of the forest plot's panels.
FOREST_AXES = {"balanced_accuracy": "Δ balanced accuracy", "macro_auc": "Δ macro AUC"}


def forest_figure(
    path: Path,
    comparisons: dict[str, list[dict]],
    titles: dict[str, str],
    detectable: str = "mde",
    subjects: str = "the same test subjects",
) -> None:
    """Paired differences with their 95% intervals, one row per method-baseline pair in table
    order from the top, one colour per label fraction, one panel per metric; zero marked, and
    behind each row a grey band of ± its smallest detectable effect (`detectable`: the entry's
    key), so a difference inside the band is one the comparison could not tell from 0."""
    plt = figures.pyplot()
    keys = list(comparisons)
    pairs = [(e["method"], e["baseline"]) for e in comparisons[keys[0]]]
    fig, axes = plt.subplots(
        1,
        len(metrics.PAIRED),
        figsize=(5.2 * len(metrics.PAIRED), 0.42 * len(pairs) * max(1, len(keys)) ** 0.5 + 1.8),
        sharey=True,
        layout="constrained",
    )
    for ax, name in zip(np.atleast_1d(axes), metrics.PAIRED, strict=True):
        for n, key in enumerate(keys):
            offset = (n - (len(keys) - 1) / 2) * 0.8 / max(len(keys), 1)
            for row, e in enumerate(comparisons[key]):
                d = e[name]
                low, high = d["ci95"]
                band = d.get(detectable)
                if band is not None and band == band:
                    first = row == 0 and n == 0
                    ax.plot([-band, band], [row + offset] * 2, color="0.85", linewidth=6,
                            solid_capstyle="butt", zorder=0,
                            label="± smallest detectable" if first else None)  # fmt: skip
                ax.errorbar(
                    d["difference"],
                    row + offset,
                    xerr=[[max(d["difference"] - low, 0)], [max(high - d["difference"], 0)]],
                    fmt="o",
                    color=f"C{n}",
                    markersize=4,
                    capsize=2,
                    label=f"{float(key):.0%} of labels" if row == 0 else None,
                )
        ax.axvline(0, color="grey", linestyle=":")
        ax.set_xlabel(f"{FOREST_AXES.get(name, name)} (method − baseline)")
        labels = [f"{titles[m]}\n vs {titles[b]}" if b else titles[m] for m, b in pairs]
        ax.set_yticks(range(len(pairs)), labels)
        ax.tick_params(axis="y", labelsize=7)
    np.atleast_1d(axes)[0].set_ylim(len(pairs) - 0.5, -0.5)  # shared: the first row on top
    last = np.atleast_1d(axes)[-1]
    if last.get_legend_handles_labels()[0]:
        fig.legend(*last.get_legend_handles_labels(), fontsize=7, loc="outside lower center",
                   ncols=4)  # fmt: skip
    fig.suptitle(f"Paired differences on {subjects} (95% bootstrap intervals)")
    figures.save(fig, path, dpi=120)


def metrics_table(
    rows: list[tuple[str, dict]], first: str, chance: dict[str, float] | None = None
) -> list[str]:
    """Markdown lines: one row per (title, summary) with mean ± sd [95% interval] cells; with
    `chance` (metric -> the score of one answer for everyone), a chance row, and a mean below
    it marked ▼."""
    chance = chance or {}
    lines = [
        f"| {first} | " + " | ".join(METRIC_TITLES) + " |",
        "|---" * (len(METRIC_TITLES) + 1) + "|",
    ]
    for title, summary in rows:
        cells = [
            f"{summary[n]['mean']:.3f} ± {summary[n]['std']:.3f} "
            f"[{summary[n]['ci95'][0]:.3f}, {summary[n]['ci95'][1]:.3f}]"
            + (" ▼" if n in chance and below_chance(summary[n]["mean"], chance[n]) else "")
            for n in metrics.NAMES
        ]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    if chance:
        cells = [f"{chance[n]:.3f}" if n in chance else "" for n in metrics.NAMES]
        lines.append("| chance (one answer for everyone) | " + " | ".join(cells) + " |")
    return lines


def chance_levels(classes: int) -> dict[str, float]:
    """The balanced accuracy and macro AUC of a classifier that ignores its input."""
    return {"balanced_accuracy": 1.0 / classes, "macro_auc": 0.5}


def below_chance(mean: float, chance: float) -> bool:
    """Whether a mean score is below chance (a mean equal to it, up to rounding, is not)."""
    return mean < chance - 1e-9


def gap_lines(document: dict) -> list[str]:
    """Markdown lines naming the classes a split lacks (none when every split has them all)."""
    return [
        f"**The {split} split has no labelled subject of class {', '.join(missing)}.**"
        for split, missing in document.get("split_gaps", {}).items()
    ]


def created() -> str:
    """The current UTC time, as reports record it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def evaluation_folder(project: Project, kind: str, run: str, cohort: str) -> Path:
    """reports/<kind>-<run>-<cohort>-<UTC time>/"""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return project.reports_dir / f"{kind}-{run}-{cohort}-{stamp}"


def write_evaluation_report(
    folder: Path, report: dict, markdown: str, extra: Callable[[Path], None] | None = None
) -> None:
    """report.json, report.md and whatever `extra` writes (figures, models), all or nothing."""
    with atomic.staged_directory(folder) as stage:
        ReportFiles(stage).document.write_text(json.dumps(report, indent=2))
        if extra is not None:
            extra(stage)
        ReportFiles(stage).markdown.write_text(markdown)


def classifier_figures(
    folder: Path, classes: list[str], y_test: np.ndarray, proba: np.ndarray, title: str
) -> None:
    """confusion_matrix.png and roc.png for one set of test predictions."""
    _confusion_matrix(folder / "confusion_matrix.png", classes, y_test, proba, title)
    _roc(folder / "roc.png", classes, y_test, proba, title)


def _confusion_matrix(
    path: Path, classes: list[str], y_test: np.ndarray, proba: np.ndarray, title: str
) -> None:
    plt = figures.pyplot()
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
    figures.save(fig, path, dpi=120)


def _roc(path: Path, classes: list[str], y_test: np.ndarray, proba: np.ndarray, title: str) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    styles = ("-", "--", ":", "-.")
    for c, name in enumerate(classes):
        positive = y_test == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, proba[:, c])
        auc = roc_auc_score(positive, proba[:, c])
        # a line style, a marker and a width per class: curves that coincide stay visible
        ax.plot(fpr, tpr, linestyle=styles[c % len(styles)], marker="os^dv"[c % 5], markersize=4,
                linewidth=2.6 - 0.6 * (c % 3), alpha=0.85,
                label=f"{name} vs rest (AUC {auc:.2f})")  # fmt: skip
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC: {title}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    figures.save(fig, path, dpi=120)


#: One colour and one marker per method of a figure (the thirteen feature sets of a probe and
#: then some): no two methods look alike.
COLOURS = (*(f"C{i}" for i in range(10)), "black", "gold", "teal", "navy")
MARKERS = "os^dvP*X<>hpH8"


def label_fraction_figure(
    path: Path,
    fractions,
    summary: dict,
    classes: list[str],
    key: Callable[[float], str],
    titles: dict[str, str],
) -> None:
    """Balanced accuracy (mean ± sd over label subsets) against the fraction of labels, per
    method, named as the report names them, each its own colour and marker; the legend beside
    the axes, never over a point."""
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 4.2), layout="constrained")
    for n, (feature, results) in enumerate(summary.items()):
        means = [results[key(f)]["balanced_accuracy"]["mean"] for f in fractions]
        stds = [results[key(f)]["balanced_accuracy"]["std"] for f in fractions]
        ax.errorbar(fractions, means, yerr=stds, marker=MARKERS[n % len(MARKERS)], capsize=3,
                    color=COLOURS[n % len(COLOURS)], linestyle="-" if n < 10 else "--",
                    label=titles.get(feature, feature))  # fmt: skip
    ax.set_xscale("log")
    ax.set_xticks(list(fractions), [f"{f:.0%}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("fraction of labelled train subjects")
    ax.set_ylabel("test balanced accuracy\n(mean ± sd over label subsets)")
    ax.axhline(1 / len(classes), color="grey", linestyle=":", label="chance")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figures.save(fig, path, dpi=120)


def curve_figure(
    path: Path,
    curves: dict[str, list[list[float]]],
    ylabel: str,
    titles: dict[str, str] | None = None,
) -> None:
    """One line per (method, seed) of a per-epoch score, a colour per method (named by
    `titles`), whole epochs on the axis, the legend beside the axes."""
    from matplotlib.ticker import MaxNLocator

    titles = titles or {}
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 3.8), layout="constrained")
    for n, (kind, per_seed) in enumerate(curves.items()):
        for i, curve in enumerate(per_seed):
            ax.plot(
                range(1, len(curve) + 1),
                curve,
                color=f"C{n}",
                alpha=0.8,
                marker=".",
                label=titles.get(kind, kind) if i == 0 else None,
            )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figures.save(fig, path, dpi=120)
