"""What the project page shows of the project itself: cohorts, QC, header semantics and runs.

Each collector returns plain data for the page's template (or None when its data do not exist)
and registers the figures it shows with a `Gallery`, which copies them beside the page.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from citab_cli.core import figures, headers
from citab_cli.core.data.project import QC_FILE, SUBJECTS_FILE, Project
from citab_cli.core.runtime import checkpoint_file
from citab_cli.core.training.records import read_metrics

#: A column "has a confident counterpart" in another cohort when its nearest header there has at
#: least this cosine and wins by at least MARGIN over the runner-up (a reading aid; the model
#: uses no threshold).
CONFIDENT_COSINE = 0.5
CONFIDENT_MARGIN = 0.05
#: Recall@k the page puts next to its chance level.
RECALL_K = 5
#: Fewer validation subjects a cohort than this, and recall@5 says little.
FEW_VALIDATION = 20
#: How the page names the validation metrics of a best checkpoint.
METRIC_NAMES = {
    "val_loss": "validation SSL loss",
    "val_recall_at_1": "retrieval recall@1",
    "val_recall_at_5": "retrieval recall@5",
    "val_itm_auc": "matching AUC",
    "val_probe_bacc": "validation probe balanced accuracy (uses labels)",
}
#: What picks best.safetensors, by `train.select`.
SELECTION = {
    "ssl_loss": "lowest validation SSL loss (label-free)",
    "retrieval": "highest retrieval recall@5 (label-free)",
    "probe": "highest validation probe balanced accuracy (uses labels)",
}


class Gallery:
    """Copies (or draws) the page's figures into its `figures/` folder under safe names."""

    def __init__(self, folder: Path):
        """`folder`: where the figures go (created on first use)."""
        self.folder = folder
        self.count = 0

    def _name(self, hint: str) -> str:
        self.count += 1
        safe = re.sub(r"[^A-Za-z0-9]+", "-", hint).strip("-")[:60] or "figure"
        return f"{self.count:03d}-{safe}.png"

    def add(self, source: Path, alt: str) -> dict | None:
        """Copy the PNG `source` beside the page: {"src", "alt"}, or None when it is absent."""
        if not source.is_file():
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        name = self._name(f"{source.parent.name}-{source.stem}")
        shutil.copyfile(source, self.folder / name)
        return self._item(name, alt)

    def _item(self, name: str, alt: str) -> dict:
        """A figure of the page: its file, its alt text and the width that keeps its smallest
        text legible (None: the figure's own size is fine)."""
        return {"src": f"{self.folder.name}/{name}", "alt": alt,
                "width": figures.readable_width(self.folder / name)}  # fmt: skip

    def draw(self, fig, hint: str, alt: str) -> dict:
        """Save a matplotlib figure beside the page: {"src", "alt"}."""
        name = self._name(hint)
        figures.save(fig, self.folder / name)
        return self._item(name, alt)


def _split_label_counts(project: Project, cohort: str, classes: list[str]) -> list[dict]:
    with open(project.cohort_file(cohort, SUBJECTS_FILE), newline="") as handle:
        rows = list(csv.DictReader(handle))
    counts = Counter((r["split"], r["label"] or "") for r in rows)
    return [
        {"split": split, "counts": [counts[(split, c)] for c in [*classes, ""]],
         "total": sum(counts[(split, c)] for c in [*classes, ""])}
        for split in ("train", "val", "test")
    ]  # fmt: skip


def cohorts_section(project: Project) -> list[dict]:
    """Per cohort: subjects per split and label, pipeline, rows dropped, absent columns and
    ingest warnings. Split counts are laid out over every cohort's classes (`table_classes`)."""
    names = project.cohorts()
    manifests = {name: project.manifest(name) for name in names}
    every = list(dict.fromkeys(c for m in manifests.values() for c in m["classes"]))
    out = []
    for name in names:
        manifest = manifests[name]
        classes = list(manifest["classes"])
        preprocessing = manifest.get("preprocessing", {})
        out.append(
            {
                "name": name,
                "subjects": manifest["subjects"],
                "classes": classes,
                "table_classes": every,
                "splits": _split_label_counts(project, name, every),
                "pipeline": preprocessing.get("pipeline", "minimal"),
                "space": preprocessing.get("space", ""),
                "columns": [c["name"] for c in manifest["columns"]],
                "absent": manifest.get("absent_columns", []),
                "rows": manifest.get("rows", {}),
                "warnings": manifest.get("warnings", []),
            }
        )
    return out


def _qc_histogram(gallery: Gallery, cohort: str, qc: dict, outliers: dict) -> dict | None:
    metrics = sorted({k for figures_ in qc.values() for k in figures_})
    if not metrics:
        return None
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 2.8), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, metric in zip(axes[0], metrics, strict=True):
        values = np.array([f[metric] for f in qc.values() if metric in f], float)
        flagged = np.array([f[metric] for s, f in qc.items() if metric in outliers.get(s, [])])
        ax.hist(values, bins=min(20, max(5, len(values) // 3)), color="#7a9cc6")
        for value in flagged:
            ax.axvline(value, color="#c0392b", linewidth=1.2)
        ax.set_title(metric.replace("_", " "), fontsize=9)
        ax.set_ylabel("scans")
    fig.suptitle(f"{cohort}: QC figures of every stored scan (outliers in red)", fontsize=9)
    alt = f"Histograms of the QC figures ({', '.join(metrics)}) of cohort {cohort}"
    return gallery.draw(fig, f"qc-{cohort}", alt)


def qc_section(project: Project, gallery: Gallery) -> list[dict]:
    """Per cohort: the montage, the outliers with their QC figures, and each figure's
    distribution."""
    out = []
    for name in project.cohorts():
        manifest = project.manifest(name)
        qc, flagged = manifest.get("qc", {}), manifest.get("qc_outliers", {})
        if not qc:
            continue
        montage = gallery.add(
            project.cohort_file(name, QC_FILE),
            f"QC montage of cohort {name}: three mid-slices of every scan, outliers first",
        )
        outliers = [
            {"subject": s, "flagged": ", ".join(m), "figures": qc.get(s, {})}
            for s, m in flagged.items()
        ]
        out.append(
            {
                "name": name,
                "scans": len(qc),
                "montage": montage,
                "outliers": outliers,
                "distribution": _qc_histogram(gallery, name, qc, flagged),
            }
        )
    return out


def headers_section(project: Project) -> dict | None:
    """Each column's nearest header in the other cohorts, from the header cache alone (no
    encoder is loaded); None when the cache lacks texts or there is one cohort."""
    try:
        settings = project.load_settings()
        cache = headers.load_cache(project, settings.header_encoder)
    except Exception:  # an unreadable cache: the page says so instead of failing
        return None
    columns = headers.project_texts(project)
    if len({c.cohort for c in columns}) < 2 or headers.missing_texts(
        project, project.cohorts(), cache
    ):
        return None
    matches = headers.cache_matches(columns, cache)
    cohorts = sorted({m.cohort for m in matches})
    best = {(m.cohort, m.column, m.other_cohort): m for m in matches}
    rows, unmatched = [], []
    for c in columns:
        cells, confident = [], False
        for other in cohorts:
            m = best.get((c.cohort, c.column, other))
            if m is None:
                cells.append(None)
                continue
            back = best.get((other, m.best, c.cohort))
            sure = m.cosine >= CONFIDENT_COSINE and m.margin >= CONFIDENT_MARGIN
            confident |= sure
            mutual = back is not None and back.best == c.column
            cells.append({"best": m.best, "cosine": m.cosine, "margin": m.margin,
                          "mutual": mutual, "sure": sure})  # fmt: skip
        rows.append({"cohort": c.cohort, "column": c.column, "text": c.text, "cells": cells})
        if not confident:
            unmatched.append(f"{c.cohort}: {c.column}")
    return {
        "encoder": settings.header_encoder,
        "cohorts": cohorts,
        "rows": rows,
        "unmatched": unmatched,
        "cosine": CONFIDENT_COSINE,
        "margin": CONFIDENT_MARGIN,
    }


def _chance(project: Project, cohorts: list[str]) -> tuple[float | None, int]:
    """Chance level of within-cohort recall@k over the run's validation subjects, and the
    fewest validation subjects of any cohort."""
    sizes = [project.manifest(c)["splits"].get("val", 0) for c in cohorts if c in project.cohorts()]
    if not sizes or not sum(sizes):
        return None, 0
    return sum(min(RECALL_K, n) for n in sizes) / sum(sizes), min(sizes)


def _best(project: Project, run: str, config: dict) -> dict:
    best = checkpoint_file.read_metadata(project.run_files(run).best)
    metrics = best.get("metrics", {})
    cohorts = sorted(best.get("cohorts", {}))
    chance, fewest = _chance(project, cohorts)
    chance = metrics.get(f"val_recall_at_{RECALL_K}_chance", chance)  # as logged, when it was
    select = config.get("train", {}).get("select", "ssl_loss")
    shown = [{"name": METRIC_NAMES[k], "value": metrics[k]} for k in METRIC_NAMES if k in metrics]
    return {
        "step": best.get("step"),
        "epoch": best.get("epoch"),
        "why": SELECTION.get(select, select),
        "metrics": shown,
        "chance": chance,
        "few_validation": fewest < FEW_VALIDATION and chance is not None,
        "fewest": fewest,
        "cohorts": cohorts,
    }


def runs_section(project: Project, gallery: Gallery) -> list[dict]:
    """Per run: its curves, configuration, environment record and best checkpoint."""
    import yaml

    out = []
    for run in project.runs():
        files = project.run_files(run)
        config_text = files.config.read_text() if files.config.is_file() else ""
        config = yaml.safe_load(config_text) or {} if config_text else {}
        environment = (
            json.loads(files.environment.read_text()) if files.environment.is_file() else {}
        )
        records = read_metrics(files.metrics)
        curves = f"Training losses and validation scores against steps, run {run}"
        out.append(
            {
                "name": run,
                "config": config_text,
                "environment": environment,
                "steps": max((r.get("step", 0) for r in records if "step" in r), default=0),
                "curves": gallery.add(files.curves, curves),
                "best": _best(project, run, config) if files.best.is_file() else None,
            }
        )
    return out
