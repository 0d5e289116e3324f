"""`citab probe`: linear probes of frozen embeddings, with baselines run the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation import metrics, report
from citab_cli.core.evaluation.checkpoints import LoadedCheckpoint, load_checkpoint, prepare_cohorts
from citab_cli.core.evaluation.labels import (
    LabelLayout,
    check_fractions,
    label_layout,
    stratified_subset,
)
from citab_cli.core.model.citab import CITab, build_model
from citab_cli.core.training.dataset import CohortData, Collator
from citab_cli.core.training.embedding import cohort_items, embed_subjects
from citab_cli.core.training.precision import describe_device, model_layout, pick_device

#: Seed of the randomly initialised baseline model.
RANDOM_INIT_SEED = 0
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
    device: str = "auto",
    resamples: int = 500,
    message: Callable[[str], None] = lambda text: None,
) -> list[ProbeReport]:
    check_fractions(fractions)
    if seeds < 1:
        raise CitabError("--seeds must be at least 1")
    loaded = load_checkpoint(project, ckpt)
    names = cohorts or list(loaded.config.cohorts) or project.cohorts()
    data = prepare_cohorts(project, loaded, names, message, "probe")

    target = pick_device(device)
    message(f"embedding on {describe_device(target)}")
    trained = model_layout(loaded.model(), target)
    torch.manual_seed(RANDOM_INIT_SEED)
    random = model_layout(build_model(loaded.config.model), target).eval()
    reports = []
    for cohort in data:
        message(f"probing {cohort.name}")
        layout = label_layout(cohort, "probe")
        for line in layout.describe_gaps(cohort.name):
            message(line)
        features = _feature_sets(loaded, cohort, trained, random, target)
        reports.append(
            _probe_cohort(project, loaded, cohort, layout, features, fractions, seeds, resamples)
        )
    return reports


def _feature_sets(
    loaded: LoadedCheckpoint, cohort: CohortData, trained: CITab, random: CITab, device
) -> dict[str, np.ndarray]:
    """feature set -> (N, F) features of every labelled subject of `cohort`, rows in cohort
    order; unlabelled subjects' rows are zeros (never read)."""
    labelled = np.array([label is not None for label in cohort.labels])
    every = np.nonzero(labelled)[0]
    collator = Collator([cohort], loaded.config.model.tabular.categorical == "levels")
    batch = loaded.config.train.batch_size
    embedded = embed_subjects(trained, collator, cohort_items(every), batch, device)
    baseline = embed_subjects(random, collator, cohort_items(every), batch, device)
    sets = {
        "citab": embedded["multimodal"],
        "citab_tabular": embedded["tabular"],
        "citab_image": embedded["image"],
        "raw_table": raw_table_features(cohort)[every],
        "random_init": baseline["multimodal"],
    }
    out = {}
    for name, x in sets.items():
        full = np.zeros((cohort.size, x.shape[1]), x.dtype)
        full[every] = x
        out[name] = full
    return out


def _fit_fractions(x, y, rows, fractions, seeds: int, classes: int, resamples: int):
    """For one feature set (N, F): fraction key -> summary, the test probabilities of each
    fraction's seeds, and the C chosen for each fraction's seeds."""
    summary, probabilities, chosen = {}, {}, {}
    for fraction in fractions:
        runs, cs = [], []
        for seed in range(seeds):
            subset = rows["train"][stratified_subset(y[rows["train"]], fraction, seed)]
            proba, c = _fit_predict(
                x[subset], y[subset], x[rows["val"]], y[rows["val"]], x[rows["test"]], classes
            )
            runs.append(proba)
            cs.append(c)
        key = _key(fraction)
        summary[key] = report.summarize(y[rows["test"]], runs, resamples)
        summary[key]["n_train"] = int(len(stratified_subset(y[rows["train"]], fraction, 0)))
        probabilities[fraction] = runs
        chosen[key] = cs
    return summary, probabilities, chosen


def _probe_cohort(
    project: Project,
    loaded: LoadedCheckpoint,
    cohort: CohortData,
    layout: LabelLayout,
    feature_sets: dict[str, np.ndarray],
    fractions,
    seeds: int,
    resamples: int,
) -> ProbeReport:
    classes, y, rows = layout.classes, layout.y, layout.rows
    summary: dict = {}
    predictions: dict = {}
    chosen_c: dict = {}
    for feature, x in feature_sets.items():
        summary[feature], runs, cs = _fit_fractions(
            x, y, rows, fractions, seeds, len(classes), resamples
        )
        predictions.update({(feature, f): r[0] for f, r in runs.items()})
        chosen_c.update({f"{feature}@{key}": c for key, c in cs.items()})
    folder = report.report_folder(project, "probe", loaded.run, cohort.name)
    document = {
        "kind": "probe",
        "checkpoint": str(loaded.path),
        "run": loaded.run,
        "step": loaded.document.get("step"),
        "cohort": cohort.name,
        "cohort_seen_in_pretraining": loaded.seen(cohort.name),
        "classes": classes,
        "subjects": {s: int(len(rows[s])) for s in rows},
        "split_gaps": layout.gaps,
        "label_fractions": list(fractions),
        "seeds": seeds,
        "bootstrap_resamples": resamples,
        "features": {k: FEATURE_TITLES[k] for k in feature_sets},
        "results": summary,
        "chosen_c": chosen_c,
        "created": report.created(),
    }
    best_fraction = max(fractions)
    y_test = y[rows["test"]]

    def figures(stage: Path) -> None:
        report.classifier_figures(
            stage,
            classes,
            y_test,
            predictions[("citab", best_fraction)],
            f"CITab probe, {best_fraction:.0%} of labels (seed 0)",
        )
        report.label_fraction_figure(
            stage / "label_fraction_curve.png", fractions, summary, classes, _key
        )

    report.write_report(folder, document, _markdown(document, best_fraction), figures)
    return ProbeReport(cohort.name, folder, summary)


def _key(fraction: float) -> str:
    return f"{fraction:g}"


def _markdown(document: dict, fraction: float) -> str:
    lines = [
        f"# Linear probe: {document['cohort']}",
        "",
        f"Checkpoint `{document['checkpoint']}` (run {document['run']}, step "
        f"{document['step']}); cohort "
        f"{'seen' if document['cohort_seen_in_pretraining'] else 'not seen'} in pretraining.",
        f"Classes: {', '.join(document['classes'])}. Labelled subjects: "
        + ", ".join(f"{k} {v}" for k, v in document["subjects"].items())
        + ".",
        f"Logistic regression on standardised features, C chosen on the validation split, scored "
        f"on the test split; {document['seeds']} seed(s); mean ± sd over seeds, 95% bootstrap "
        f"interval over test subjects ({document['bootstrap_resamples']} resamples).",
        *report.gap_lines(document),
        "",
    ]
    for f in document["label_fractions"]:
        rows = [
            (document["features"][feature], results[_key(f)])
            for feature, results in document["results"].items()
        ]
        lines += [f"## {f:.0%} of the labelled train subjects", ""]
        lines += report.metrics_table(rows, "features") + [""]
    lines += [
        f"![confusion matrix, {fraction:.0%} of labels](confusion_matrix.png)",
        f"![ROC curves, {fraction:.0%} of labels](roc.png)",
        "![balanced accuracy by label fraction](label_fraction_curve.png)",
        "",
    ]
    return "\n".join(lines)
