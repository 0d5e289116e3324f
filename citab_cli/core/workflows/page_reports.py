"""What the project page shows of the reports: probes, fine-tunes, studies and explanations, each
with its tables, its figures and its verdicts in words."""

from __future__ import annotations

import json
from pathlib import Path

from citab_cli.core.data.project import REPORT_DOCUMENT, Project
from citab_cli.core.evaluation import verdicts
from citab_cli.core.evaluation.evaluation_report import below_chance, chance_levels
from citab_cli.core.evaluation.features import FEATURE_TITLES
from citab_cli.core.evaluation.finetune import TITLES as FINETUNE_TITLES
from citab_cli.core.evaluation.metrics import verdict_words
from citab_cli.core.explain.markdown import routing_lines
from citab_cli.core.workflows.page_data import Gallery

#: Figures of each report kind, in page order, with what they show.
FIGURES = {
    "probe": [
        ("paired_differences.png", "Forest plot of paired differences in balanced accuracy"),
        ("label_fraction_curve.png", "Balanced accuracy against the fraction of labels"),
        ("roc.png", "ROC curves of the pretrained model's probe"),
        ("confusion_matrix.png", "Confusion matrix of the pretrained model's probe"),
    ],
    "finetune": [
        ("paired_differences.png", "Forest plot of paired differences in balanced accuracy"),
        ("validation_curve.png", "Validation balanced accuracy per epoch"),
        ("roc.png", "ROC curves of the fine-tuned classifier"),
        ("confusion_matrix.png", "Confusion matrix of the fine-tuned classifier"),
    ],
    "explain": [
        ("tabular_attributions.png", "Column attributions by header text"),
        ("prototype_routing.png", "Prototype routing: mean gate of each column per prototype"),
    ],
}
#: Where a verdict's wording comes from.
VERDICT_CLASS = {"better": "better", "worse": "worse"}


def _interval(entry: dict) -> str:
    low, high = entry["ci95"]
    return f"{entry['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def _verdicts(comparisons: list[dict], titles: dict[str, str]) -> list[dict]:
    """Paired comparisons as sentences: method − baseline, interval, verdict."""
    out = []
    for entry in comparisons:
        score = entry["balanced_accuracy"]
        out.append(
            {
                "method": titles.get(entry["method"], entry["method"]),
                "baseline": titles.get(entry["baseline"], entry["baseline"]),
                "interval": _interval(score),
                "verdict": verdict_words(score),
                "tone": VERDICT_CLASS.get(score["verdict"], "neutral"),
            }
        )
    return out


def _metric(summary: dict, name: str) -> str:
    entry = summary.get(name)
    if not entry:
        return ""
    return f"{entry['mean']:.3f} ± {entry['std']:.3f}"


def _cell(score: dict | None, chance: float) -> dict | str:
    """A balanced accuracy cell, marked below chance."""
    if not score:
        return ""
    text = f"{score['mean']:.3f} ± {score['std']:.3f}"
    if below_chance(score["mean"], chance):
        return {"text": f"{text} ▼", "tone": "worse", "title": "below chance"}
    return text


def _probe(document: dict) -> dict:
    titles = {**FEATURE_TITLES, **document.get("features", {})}
    fractions = [f"{f:g}" for f in document["label_fractions"]]
    chance = chance_levels(len(document["classes"]))["balanced_accuracy"]
    rows = [
        {"name": titles.get(feature, feature),
         "cells": [_cell(results.get(f, {}).get("balanced_accuracy"), chance) for f in fractions]}
        for feature, results in document["results"].items()
    ]  # fmt: skip
    rows.append({"name": "chance (one answer for everyone)",
                 "cells": [f"{chance:.3f}" for _ in fractions]})  # fmt: skip
    where = document["cohort"]
    if document.get("transfer"):
        where = f"{document['train_cohort']} → {document['cohort']}"
    return {
        "title": f"Probe: {where} (run {document['run']})",
        "columns": [f"{float(f):.0%} of labels" for f in fractions],
        "rows": rows,
        "fractions": [
            {
                "title": f"paired differences in balanced accuracy, {float(f):.0%} of labels",
                "headline": verdicts.headline(document, f),
                "multiplicity": verdicts.multiplicity(document, f),
                "verdicts": _verdicts(document["comparisons"].get(f, []), titles),
            }
            for f in fractions
        ],
        "note": f"{document['seeds']} label subsets per fraction; mean ± sd of test balanced "
        f"accuracy; ▼ below chance. Test subjects: {document['subjects']['test']}.",
    }


def _finetune(document: dict) -> dict:
    titles = {**FINETUNE_TITLES, "finetuned": f"CITab fine-tuned ({document['strategy']})"}
    rows = [
        {"name": titles.get(kind, kind),
         "cells": [_metric(results, "balanced_accuracy"), _metric(results, "macro_auc")]}
        for kind, results in document["results"].items()
    ]  # fmt: skip
    return {
        "title": f"Fine-tune: {document['cohort']} (run {document['run']})",
        "columns": ["balanced accuracy", "macro AUC"],
        "rows": rows,
        "verdict_title": f"paired differences in balanced accuracy, "
        f"{document['label_fraction']:.0%} of labels",
        "verdicts": _verdicts(document["comparisons"], titles),
        "note": f"{document['seeds']} seed(s); mean ± sd over seeds. Test subjects: "
        f"{document['subjects'].get('test', 0)}.",
    }


def _study(document: dict) -> dict:
    tables = []
    for table in document["tables"]:
        arms = [
            {"name": f"{a['arm']} ({a['regime']})", "cells": [f"{a['mean']:.3f} ± {a['sd']:.3f}",
                                                           str(a["seeds"])]}
            for a in table["arms"]
        ]  # fmt: skip
        verdicts = [
            {"method": c["comparison"], "baseline": "", "interval": _interval(c),
             "verdict": verdict_words(c, "mde_holm"),
             "tone": VERDICT_CLASS.get(c["verdict"], "neutral")}
            for c in table["balanced_accuracy"]
        ]  # fmt: skip
        tables.append(
            {
                "title": f"{table['cohort']}, {table['fraction']:.0%} of labels, "
                f"{table['checkpoint']} checkpoint, {table.get('scope', 'test split')} "
                f"({table.get('subjects', '?')} subjects)",
                "rows": arms,
                "verdicts": verdicts,
            }
        )
    return {
        "title": f"Study: {document['study']['study']}",
        "description": document["study"].get("description", ""),
        "runs": len(document["plan"]),
        "tables": tables,
    }


def _explain(document: dict) -> dict:
    columns = document.get("cohort_attributions", {}).get("columns", [])
    return {
        "title": f"Explanation: {document['cohort']} ({document.get('model', '')})",
        "subjects_averaged": document.get("cohort_attributions", {}).get("subjects", 0),
        "columns": [
            {
                "column": c["column"],
                "header": c["header"],
                "mean_abs": c["mean_abs"],
                "sd_abs": c.get("sd_abs"),
                "mean": c["mean"],
            }
            for c in columns
        ],
        "subjects": [
            {
                "subject": s["subject"],
                "label": s.get("label"),
                "predicted": s.get("predicted"),
                "note": s.get("scan_note", ""),
            }
            for s in document.get("subjects", [])
        ],  # fmt: skip
        "method": "expected gradients"
        if document.get("baseline") == "sample"
        else "integrated gradients from the mean token",
        "routing": [
            line.replace("**", "").strip(" -")
            for line in routing_lines(document.get("routing_entropy", {}))
        ],  # fmt: skip
    }


BUILDERS = {"probe": _probe, "finetune": _finetune, "study": _study, "explain": _explain}


def _figures(folder: Path, kind: str, gallery: Gallery, title: str) -> list[dict]:
    shown = []
    for name, what in FIGURES.get(kind, []):
        figure = gallery.add(folder / name, f"{what} — {title}")
        if figure:
            shown.append(figure)
    if kind == "study":
        for path in sorted(folder.glob("*.png")):
            what = "Validation curves of the study's arms" if path.stem.startswith("validation") \
                else f"Forest plot {path.stem}"  # fmt: skip
            figure = gallery.add(path, f"{what} — {title}")
            if figure:
                shown.append(figure)
    if kind == "explain":
        for path in sorted(folder.glob("gradcam_*.png")):
            subject = path.stem.removeprefix("gradcam_")
            figure = gallery.add(path, f"Grad-CAM of subject {subject} in three planes — {title}")
            if figure:
                shown.append(figure)
    return shown


def reports_section(project: Project, gallery: Gallery) -> dict[str, list[dict]]:
    """kind -> the project's reports of that kind, in folder order, each with its figures; a
    folder whose report.json cannot be read (or is of a kind the page does not know) is left
    out."""
    out: dict[str, list[dict]] = {kind: [] for kind in BUILDERS}
    folder = project.reports_dir
    found = []
    for path in sorted(folder.glob(f"*/{REPORT_DOCUMENT}")) if folder.is_dir() else []:
        try:
            document = json.loads(path.read_text())
            kind = document["kind"]
            entry = BUILDERS[kind](document)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        found.append((str(document.get("created", "")), path, kind, entry))
    for _, path, kind, entry in sorted(found, key=lambda item: item[0]):
        entry["folder"] = path.parent.name
        entry["figures"] = _figures(path.parent, kind, gallery, entry["title"])
        out[kind].append(entry)
    return out
