"""The probe report: `report.md` and its figures, from the `report.json` document."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from citab_cli.core.evaluation import evaluation_report, verdicts
from citab_cli.core.evaluation.features import FEATURE_TITLES, METHODS


def write(folder: Path, document: dict, text: str, runs: dict, y_test: np.ndarray) -> None:
    """report.json, report.md, confusion matrix and ROC (CITab, most labels, seed 0), the
    label-fraction curve and the forest plot of paired differences, all or nothing."""
    fractions = document["label_fractions"]
    most = evaluation_report.fraction_key(max(fractions))

    shown = next((m for m in METHODS if m in runs), None)  # the tabular CLS without scans

    def figures(stage: Path) -> None:
        if shown is not None:
            evaluation_report.classifier_figures(
                stage,
                document["classes"],
                y_test,
                runs[shown][most][0],
                f"{FEATURE_TITLES[shown]} probe, {max(fractions):.0%} of labels (seed 0)",
            )
        evaluation_report.label_fraction_figure(
            stage / "label_fraction_curve.png",
            fractions,
            document["results"],
            document["classes"],
            evaluation_report.fraction_key,
            FEATURE_TITLES,
        )
        if compared(document):  # a probe of a run's own embeddings alone compares nothing
            evaluation_report.forest_figure(
                stage / "paired_differences.png", document["comparisons"], FEATURE_TITLES
            )

    evaluation_report.write_evaluation_report(folder, document, text, figures)


def compared(document: dict) -> bool:
    """Whether the probe holds any paired comparison (one of a run's own embeddings alone,
    as a study fits for its non-reference runs, holds none)."""
    return any(document["comparisons"].values())


def _header(document: dict) -> list[str]:
    seen = "seen" if document["cohort_seen_in_pretraining"] else "not seen"
    if document["transfer"]:
        where = (
            f"Heads fitted on **{document['train_cohort']}** (its labelled train subjects), "
            f"scored on **{document['cohort']}**'s test subjects ({seen} in pretraining)."
        )
    else:
        where = f"Cohort {document['cohort']}, {seen} in pretraining."
    criteria = evaluation_report.criteria_sentence(
        document["exclude_criteria"], document.get("pretrained_without_criteria", False)
    )
    counts = ", ".join(f"{k} {v}" for k, v in document["subjects"].items())
    return [
        f"# Linear probe: {document['cohort']}",
        "",
        f"Checkpoint `{document['checkpoint']}` (run {document['run']}, step "
        f"{document['step']}). {where}",
        f"Classes: {', '.join(document['classes'])}. Labelled subjects: {counts}. {criteria}",
        "Class-balanced logistic regression on standardised features, C chosen by stratified "
        f"cross-validation inside each labelled training subset, scored on {_scored(document)}; "
        f"{document['seeds']} seed(s); mean ± sd over seeds, 95% bootstrap interval over the "
        f"scored subjects ({document['bootstrap_resamples']} resamples). {_networks(document)}",
        *(
            [f"Note: {document['cross_validation_note']}."]
            if document["cross_validation_note"]
            else []
        ),
        *evaluation_report.gap_lines(document),
        "",
    ]


#: Whose subjects a probe scored, in words (evaluation.probe.SUBJECTS).
SCANS_WORDS = {
    "with-scan": "",
    "without-scan": " kept without a scan (the feature sets that read only the table)",
    "all": " with and without a scan (the feature sets that read only the table)",
}


def _scored(document: dict) -> str:
    scored = document.get("scored", {"design": "test split"})
    whose = SCANS_WORDS[scored.get("scans", "with-scan")]
    if scored["design"] == "test split":
        return f"the test subjects{whose}"
    return (
        f"every labelled subject{whose} once, {scored['design']}: each fold's heads learn from "
        "the other folds only, the label fraction drawn inside them"
    )


def _networks(document: dict) -> str:
    seed = document.get("random_init_seed", 0)
    if document.get("batchnorm", "stored") == "cohort":
        norm = (
            "Before embedding, the BatchNorm statistics of both networks were re-estimated on "
            "this cohort's train split (the same way for both)."
        )
    else:
        norm = "Both networks kept their stored BatchNorm statistics."
    return (
        f"The random-weights twin is the run's own initialisation (seed {seed}). {norm} "
        '"Not detected" comes with the smallest difference the comparison would detect 80% of '
        "the time (two-sided 5%)."
    )


def _columns(document: dict) -> list[str]:
    lines = ["## What each method saw", ""]
    for feature, seen in document["columns_seen"].items():
        parts = []
        for side, names in seen.items():
            text = names if isinstance(names, str) else ", ".join(names) or "nothing"
            parts.append(f"{side}: {text}")
        lines.append(f"- {FEATURE_TITLES[feature]}: " + "; ".join(parts))
    return [*lines, ""]


def markdown(document: dict) -> str:
    """report.md of a probe: per label fraction the metric table and the paired comparisons in
    words."""
    lines = _header(document)
    for fraction in document["label_fractions"]:
        key = evaluation_report.fraction_key(fraction)
        rows = [
            (document["features"][feature], results[key])
            for feature, results in document["results"].items()
        ]
        lines += [f"## {fraction:.0%} of the labelled train subjects", ""]
        chance = evaluation_report.chance_levels(len(document["classes"]))
        lines += evaluation_report.metrics_table(rows, "features", chance)
        lines += ["", "▼: below chance (what one answer for everyone scores).", ""]
        if not document["comparisons"].get(key):
            continue
        lines += [
            "Paired differences (same test subjects, same label subsets and seeds); "
            "'better' needs the whole interval above 0:",
            "",
        ]
        lines += evaluation_report.comparison_table(
            document["comparisons"][key], FEATURE_TITLES
        ) + [""]
        headline = verdicts.headline(document, key)
        if headline:
            lines += [f"**{headline}** {verdicts.multiplicity(document, key)}", ""]
    lines += _columns(document)
    if compared(document):
        lines.append("![paired differences](paired_differences.png)")
    lines += [
        "![confusion matrix](confusion_matrix.png)",
        "![ROC curves](roc.png)",
        "![balanced accuracy by label fraction](label_fraction_curve.png)",
        "",
    ]
    return "\n".join(lines)
