"""`citab probe`: linear probes of frozen embeddings, with baselines run the same way and paired
comparisons against them.

Each evaluation fits heads on one cohort's labelled train subjects and scores one cohort's test
subjects: the same cohort by default, or other cohorts with `--train-on A --test-on B,C`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation import linear, report, trees
from citab_cli.core.evaluation.features import (
    BASELINES,
    FEATURE_TITLES,
    FEATURES,
    FLOOR_ROLES,
    IMAGE_BLOCKS,
    METHODS,
    TREE_FEATURES,
    comparison_pairs,
    image_block_means,
    layout,
    raw_table_features,
    table_features,
)
from citab_cli.core.evaluation.labels import (
    LabelLayout,
    check_fractions,
    label_layout,
    stratified_subset,
)
from citab_cli.core.evaluation.linear import describe_folds
from citab_cli.core.evaluation.probe_report import markdown, write
from citab_cli.core.model.citab import CITab, build_model
from citab_cli.core.runtime.dataset import CohortData, Collator
from citab_cli.core.runtime.device import describe_device, model_layout, pick_device
from citab_cli.core.runtime.embedding import cohort_items, embed_subjects
from citab_cli.core.runtime.pretrained import LoadedCheckpoint, load_checkpoint, prepare_cohorts

__all__ = [
    "BASELINES",
    "FEATURES",
    "FEATURE_TITLES",
    "METHODS",
    "ProbeReport",
    "probe",
    "raw_table_features",
]

#: Seed of the randomly initialised baseline model.
RANDOM_INIT_SEED = 0
#: What an embedding that reads the scan saw of it.
SCAN_SEEN = "the stored scan (image-encoder features; no table column)"
#: Blocks per axis of the image block means, as the report records them.
IMAGE_BLOCKS_SEEN = f"{IMAGE_BLOCKS}x{IMAGE_BLOCKS}x{IMAGE_BLOCKS}"


@dataclass
class ProbeReport:
    """Where a probe report was written, with its summaries and paired comparisons."""

    cohort: str  # the test cohort
    folder: Path
    summary: dict  # feature -> fraction -> metric -> {"mean", "std", "ci95"}
    comparisons: dict  # fraction -> list of paired comparisons
    train_cohort: str = ""
    #: feature -> fraction key -> test probabilities (N, K) per probe seed, for studies
    probabilities: dict = field(default_factory=dict)
    y_test: np.ndarray | None = None  # (N,) class index of each test subject
    classes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Side:
    """One cohort as the training or the test side of an evaluation."""

    cohort: CohortData
    labels: LabelLayout
    features: dict[str, np.ndarray]  # feature set -> (N, F), row i = subject i


def probe(
    project: Project,
    ckpt: str,
    cohorts: list[str] | None = None,
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0),
    seeds: int = 5,
    device: str = "auto",
    resamples: int = 500,
    message: Callable[[str], None] = lambda text: None,
    exclude_criteria: bool = False,
    train_on: str | None = None,
    test_on: list[str] | None = None,
    features: tuple[str, ...] | None = None,
) -> list[ProbeReport]:
    """One report per evaluation: each cohort on itself, or `train_on` on itself and on each
    of `test_on`. `features` limits the feature sets fitted (default: every one; a study asks
    for the multimodal embedding alone where the baselines are fitted elsewhere)."""
    check_fractions(fractions)
    unknown = sorted(set(features or ()) - set(FEATURES))
    if unknown:
        raise CitabError(f"unknown feature set(s) {', '.join(unknown)}; choose from {FEATURES}")
    if seeds < 1:
        raise CitabError("--seeds must be at least 1")
    if (train_on is None) != (test_on is None):
        raise CitabError("--train-on and --test-on go together: --train-on A --test-on B,C")
    loaded = load_checkpoint(project, ckpt)
    if train_on is not None:
        names = list(dict.fromkeys([train_on, *(test_on or [])]))
    else:
        names = cohorts or list(loaded.config.cohorts) or project.cohorts()
    data = prepare_cohorts(project, loaded, names, message, "probe")
    if exclude_criteria:
        data = [c.without_criteria() for c in data]
    target = pick_device(device)
    message(f"embedding on {describe_device(target)}")
    trained = model_layout(loaded.model(), target)
    torch.manual_seed(RANDOM_INIT_SEED)
    random = model_layout(build_model(loaded.config.model), target).eval()
    embedded = {c.name: _embeddings(loaded, c, trained, random, target) for c in data}
    pairs = [(data[0], c) for c in data] if train_on is not None else [(c, c) for c in data]
    settings = {
        "fractions": fractions,
        "seeds": seeds,
        "resamples": resamples,
        "exclude_criteria": exclude_criteria,
        "features": features,
    }
    reports = []
    for train, test in pairs:
        what = train.name if train is test else f"{train.name} -> {test.name}"
        message(f"probing {what}")
        sides = _sides(train, test, embedded, message)
        reports.append(_evaluate(project, loaded, sides, settings, message))
    return reports


def _embeddings(
    loaded: LoadedCheckpoint, cohort: CohortData, trained: CITab, random: CITab, device
) -> dict[str, np.ndarray]:
    """Frozen embeddings of every labelled subject, as (N, D) arrays in cohort row order
    (unlabelled rows are zeros and never read)."""
    every = np.nonzero(np.array([label is not None for label in cohort.labels]))[0]
    collator = Collator.for_model([cohort], loaded.config.model)
    batch = loaded.config.train.batch_size
    ours = embed_subjects(trained, collator, cohort_items(every), batch, device)
    theirs = embed_subjects(random, collator, cohort_items(every), batch, device)
    sets = {
        "citab": ours["multimodal"],
        "citab_tabular": ours["tabular"],
        "citab_image": ours["image"],
        "random_multimodal": theirs["multimodal"],
        "random_tabular": theirs["tabular"],
        "random_image": theirs["image"],
    }
    out = {}
    for name, x in sets.items():
        full = np.zeros((cohort.size, x.shape[1]), np.float32)
        full[every] = x
        out[name] = full
    return out


def _sides(
    train: CohortData,
    test: CohortData,
    embedded: dict[str, dict[str, np.ndarray]],
    message: Callable[[str], None],
) -> tuple[Side, Side, dict]:
    """Both sides' feature sets (the raw table and the floor laid out by meaning, so a head
    fitted on one cohort reads another), and which columns each feature set saw."""
    train_labels = label_layout(train, "probe")
    test_labels = train_labels if test is train else label_layout(test, "probe")
    if train_labels.classes != test_labels.classes:
        raise CitabError(
            f"cohorts '{train.name}' ({'/'.join(train_labels.classes)}) and '{test.name}' "
            f"({'/'.join(test_labels.classes)}) do not share one class set; map their labels "
            "to the same classes"
        )
    for line in train_labels.describe_gaps(train.name):
        message(line)
    raw = layout([train, test], "text")
    floor = layout([train, test], "role", FLOOR_ROLES)
    if not floor.columns:
        message(
            f"no age/sex/education columns marked (covariate:) in both {train.name} and "
            f"{test.name}: the report has no demographic floor"
        )
    sides = [
        Side(cohort, labels, _table_sets(cohort, embedded[cohort.name], raw, floor))
        for cohort, labels in ((train, train_labels), (test, test_labels))
    ]
    model_columns = {"train": train.columns, "test": test.columns}
    scan = {"image": SCAN_SEEN}
    with_scan = {**model_columns, **scan}
    seen = {"citab": with_scan, "citab_tabular": model_columns, "citab_image": scan}
    seen.update(random_multimodal=with_scan, random_tabular=model_columns, random_image=scan)
    seen["raw_table"] = seen["raw_table_gbdt"] = {"headers": raw.names()}
    seen["raw_image"] = {"headers": raw.names(), "image_blocks": IMAGE_BLOCKS_SEEN}
    seen["citab_raw"] = seen["random_raw"] = {**with_scan, "raw_headers": raw.names()}
    if floor.columns:
        seen["floor"] = {"roles": floor.names()}
    return sides[0], sides[1], seen


def _table_sets(cohort: CohortData, embedded: dict, raw, floor) -> dict[str, np.ndarray]:
    """Every feature set of one cohort, in report order: its embeddings, and the baselines
    that read the raw table (and the scan's block means) laid out by meaning."""
    features = dict(embedded)
    features["raw_table"] = table_features(cohort, raw)
    features["raw_table_gbdt"] = table_features(cohort, raw, native_missing=True)
    features["raw_image"] = np.concatenate([features["raw_table"], image_block_means(cohort)], 1)
    features["citab_raw"] = np.concatenate([features["citab"], features["raw_table"]], 1)
    features["random_raw"] = np.concatenate(
        [features["random_multimodal"], features["raw_table"]], 1
    )
    if floor.columns:
        features["floor"] = table_features(cohort, floor)
    return {k: features[k] for k in FEATURES if k in features}


def _fit_all(train: Side, test: Side, settings: dict) -> tuple[dict, dict, list[int]]:
    """feature -> fraction -> test probabilities per seed; C chosen per fit; folds used."""
    classes = len(train.labels.classes)
    rows, test_rows = train.labels.rows["train"], test.labels.rows["test"]
    y = train.labels.y
    runs: dict = {}
    chosen: dict = {}
    folds: list[int] = []
    for feature in train.features:
        if settings.get("features") and feature not in settings["features"]:
            continue
        x, x_test = train.features[feature], test.features[feature][test_rows]
        runs[feature] = {}
        for fraction in settings["fractions"]:
            key = report.fraction_key(fraction)
            runs[feature][key], chosen[f"{feature}@{key}"] = [], []
            for seed in range(settings["seeds"]):
                subset = rows[stratified_subset(y[rows], fraction, seed)]
                reader = trees if feature in TREE_FEATURES else linear
                fit = reader.fit_predict(x[subset], y[subset], x_test, classes, seed)
                runs[feature][key].append(fit.probabilities)
                chosen[f"{feature}@{key}"].append(
                    trees.setting_of(fit) if reader is trees else fit.c
                )
                folds.append(fit.folds)
    return runs, chosen, folds


def _evaluate(
    project: Project,
    loaded: LoadedCheckpoint,
    sides: tuple[Side, Side, dict],
    settings: dict,
    message: Callable[[str], None],
) -> ProbeReport:
    train, test, seen = sides
    runs, chosen, folds = _fit_all(train, test, settings)
    note = describe_folds(folds)
    if note:
        message(note)
    y_test = test.labels.labels("test")
    summary = _summaries(runs, y_test, train, settings)
    pairs = comparison_pairs(runs)
    comparisons = {
        key: report.compare(y_test, runs, pairs, key, settings["resamples"])
        for key in (report.fraction_key(f) for f in settings["fractions"])
    }
    document = _document(loaded, train, test, seen, settings, summary, comparisons, chosen, note)
    kind = "probe"
    transfer = train.cohort is not test.cohort
    name = f"{train.cohort.name}-on-{test.cohort.name}" if transfer else test.cohort.name
    folder = report.report_folder(project, kind, loaded.run, name)
    write(folder, document, markdown(document), runs, y_test)
    return ProbeReport(
        test.cohort.name,
        folder,
        summary,
        comparisons,
        train.cohort.name,
        runs,
        y_test,
        list(test.labels.classes),
    )


def _summaries(runs: dict, y_test: np.ndarray, train: Side, settings: dict) -> dict:
    """feature -> fraction -> metric summaries, with the size of the label subset."""
    summary: dict = {}
    for feature, per_fraction in runs.items():
        summary[feature] = {}
        for fraction in settings["fractions"]:
            key = report.fraction_key(fraction)
            entry = report.summarize(y_test, per_fraction[key], settings["resamples"])
            subset = stratified_subset(train.labels.labels("train"), fraction, 0)
            summary[feature][key] = {**entry, "n_train": int(len(subset))}
    return summary


def _document(loaded, train: Side, test: Side, seen, settings, summary, comparisons, chosen, note):
    transfer = train.cohort is not test.cohort
    return {
        "kind": "probe",
        "checkpoint": str(loaded.path),
        "run": loaded.run,
        "step": loaded.document.get("step"),
        "cohort": test.cohort.name,
        "train_cohort": train.cohort.name,
        "transfer": transfer,
        "cohort_seen_in_pretraining": loaded.seen(test.cohort.name),
        "classes": test.labels.classes,
        "subjects": {
            "train": int(len(train.labels.rows["train"])),
            "val": int(len(test.labels.rows["val"])),
            "test": int(len(test.labels.rows["test"])),
        },
        "split_gaps": train.labels.gaps,
        "exclude_criteria": settings["exclude_criteria"],
        "pretrained_without_criteria": loaded.config.exclude_criteria,
        "columns_seen": seen,
        "label_fractions": list(settings["fractions"]),
        "seeds": settings["seeds"],
        "bootstrap_resamples": settings["resamples"],
        "features": {k: FEATURE_TITLES[k] for k in summary},
        "results": summary,
        "comparisons": comparisons,
        "chosen_c": chosen,
        "cross_validation_note": note,
        "created": report.created(),
    }
