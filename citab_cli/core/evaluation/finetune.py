"""`citab finetune`: a diagnosis head on the fusion embedding, frozen or trained end to end,
next to the same architecture and a DAFT-style image-table fusion network (fusion.py), both
trained from scratch with the same budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from citab_cli.core.data.project import Project, ReportFiles
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation import catboost_trees, evaluation_report, features
from citab_cli.core.evaluation.classifier import (
    BACKBONE_RATE,
    CLASSIFIER,
    Classifier,
    Strategy,
    load_classifier,
    predict,
    train_classifier,
)
from citab_cli.core.evaluation.finetune_tables import markdown_lines, without_scan_section
from citab_cli.core.evaluation.fusion import DaftClassifier
from citab_cli.core.evaluation.labels import (
    LabelLayout,
    check_fractions,
    label_layout,
    stratified_subset,
)
from citab_cli.core.model.citab import build_model
from citab_cli.core.runtime import checkpoint_file
from citab_cli.core.runtime.dataset import CohortData, Collator
from citab_cli.core.runtime.device import describe_device, model_layout, pick_device
from citab_cli.core.runtime.pretrained import (
    LoadedCheckpoint,
    load_checkpoint,
    prepare_cohorts,
    read_cohorts,
)

__all__ = ["FinetuneReport", "Strategy", "finetune", "load_classifier", "train_classifier"]

#: The models each fine-tuning run trains.
KINDS = ("finetuned", "scratch", "daft")
#: How reports name the fine-tuned model and its baselines.
TITLES = {
    "finetuned": "CITab fine-tuned",
    "scratch": "same architecture from scratch, same budget",
    "daft": "supervised image-table fusion from scratch (DAFT-style), same budget",
    "raw_table": "raw table, logistic regression",
    "raw_table_gbdt": "raw table, gradient-boosted trees",
    "raw_table_catboost": "raw table, CatBoost",
    "raw_image": "raw table + image block means, logistic regression",
    "floor": "age + sex (+ education) floor",
}
#: What fine-tuning is compared with, in report order.
BASELINE_KINDS = ("scratch", "daft", "raw_table", "raw_table_gbdt", "raw_table_catboost",
                  "raw_image", "floor")  # fmt: skip


@dataclass
class FinetuneReport:
    """Where a fine-tune report was written, with its summaries and paired comparisons."""

    cohort: str
    folder: Path
    summary: dict  # model -> metric -> {"mean", "std", "ci95"}
    model_file: Path
    comparisons: list[dict]  # fine-tuned against each baseline, paired
    #: model -> test probabilities (N, K) per seed, for studies
    probabilities: dict = field(default_factory=dict)
    y_test: np.ndarray | None = None  # (N,) class index of each test subject
    classes: list[str] = field(default_factory=list)
    rows: np.ndarray | None = None  # (N,) cohort row of each test subject


@dataclass(frozen=True)
class Budget:
    """What both the fine-tuned model and the from-scratch baseline get."""

    epochs: int
    patience: int
    batch_size: int
    learning_rate: float


def finetune(
    project: Project,
    ckpt: str,
    cohort: str,
    strategy: Strategy = "frozen",
    label_fraction: float = 1.0,
    seeds: int = 1,
    epochs: int = 20,
    patience: int = 5,
    learning_rate: float = 1e-3,
    batch_size: int | None = None,
    device: str = "auto",
    resamples: int = 500,
    message: Callable[[str], None] = lambda text: None,
    exclude_criteria: bool = False,
) -> FinetuneReport:
    """Fine-tune a diagnosis head on one cohort next to the same network and DAFT-style fusion,
    both trained from scratch with the same budget, and the table baselines; write the report."""
    check_fractions((label_fraction,))
    if seeds < 1 or epochs < 1:
        raise CitabError("--seeds and --epochs must be at least 1")
    loaded = load_checkpoint(project, ckpt)
    (data,) = prepare_cohorts(project, loaded, [cohort], message, "fine-tune")
    if loaded.without_criteria(exclude_criteria):
        data = data.without_criteria()
    layout = label_layout(data, "fine-tune")
    for line in layout.describe_gaps(cohort):
        message(line)
    budget = Budget(epochs, patience, batch_size or loaded.config.train.batch_size, learning_rate)
    target = pick_device(device)
    message(f"training on {describe_device(target)}")
    runs, curves, kept = _train_all(
        loaded, data, layout, strategy, label_fraction, seeds, budget, target, message
    )
    y_test = layout.labels("test")
    runs.update(_table_baselines(data, layout, label_fraction, seeds))
    summary = {
        kind: evaluation_report.summarize(y_test, probabilities, resamples)
        for kind, probabilities in runs.items()
    }
    baselines = [k for k in BASELINE_KINDS if k in runs]
    key = evaluation_report.fraction_key(label_fraction)
    pairs = [("finetuned", baseline) for baseline in baselines]
    comparisons = evaluation_report.compare(
        y_test, {k: {key: v} for k, v in runs.items()}, pairs, key, resamples
    )
    folder = evaluation_report.evaluation_folder(project, "finetune", loaded.run, cohort)
    document = _document(loaded, data, layout, strategy, label_fraction, seeds, budget)
    document.update(
        exclude_criteria=exclude_criteria,
        pretrained_without_criteria=loaded.config.exclude_criteria,
        results=summary,
        comparisons=comparisons,
        validation_curves=curves,
        created=evaluation_report.created(),
        without_scan=_without_scan(project, loaded, data, layout, label_fraction, seeds, resamples),
    )

    def extra(stage: Path) -> None:
        evaluation_report.classifier_figures(
            stage,
            layout.classes,
            y_test,
            runs["finetuned"][0],
            f"fine-tuned ({strategy}), {label_fraction:.0%} of labels",
        )
        evaluation_report.curve_figure(
            stage / "validation_curve.png", curves, "validation balanced accuracy", TITLES
        )
        evaluation_report.forest_figure(
            stage / "paired_differences.png", {key: comparisons}, TITLES
        )
        _save_classifier(ReportFiles(stage).finetuned, kept, loaded, data, layout, document)

    evaluation_report.write_evaluation_report(folder, document, _markdown(document), extra)
    model_file = ReportFiles(folder).finetuned
    result = FinetuneReport(cohort, folder, summary, model_file, comparisons, runs, y_test)
    result.classes, result.rows = list(layout.classes), layout.rows["test"]
    return result


def _without_scan(project, loaded, data, layout, label_fraction, seeds, resamples) -> dict | None:
    """The table baselines on the cohort's test subjects without a scan (finetune_tables)."""
    if not data.without_scan:
        return None
    (full,) = read_cohorts(project, loaded, [data.name], lambda text: None, table_only=True)
    if len(full.columns) != len(data.columns):  # the fine-tuning left the criteria out
        full = full.without_criteria()
    return without_scan_section(full, layout, label_fraction, seeds, resamples, _table_baselines)


def _document(loaded, data: CohortData, layout, strategy, label_fraction, seeds, budget) -> dict:
    return {
        "kind": "finetune",
        "checkpoint": str(loaded.path),
        "run": loaded.run,
        "cohort": data.name,
        "cohort_seen_in_pretraining": loaded.seen(data.name),
        "strategy": strategy,
        "classes": layout.classes,
        "subjects": {s: int(len(r)) for s, r in layout.rows.items()},
        "split_gaps": layout.gaps,
        "columns_seen": {
            "finetuned": data.columns,
            "scratch": data.columns,
            "daft": data.columns,
            "raw_table": data.columns,
            "raw_table_gbdt": data.columns,
            "raw_table_catboost": data.columns,
            "raw_image": data.columns,
            "floor": [c for c, role in zip(data.columns, data.covariates, strict=True) if role],
        },
        "label_fraction": label_fraction,
        "seeds": seeds,
        "budget": {
            "epochs": budget.epochs,
            "patience": budget.patience,
            "batch_size": budget.batch_size,
            "learning_rate": budget.learning_rate,
            "backbone_rate": BACKBONE_RATE,
        },
    }


def _table_baselines(
    data: CohortData, layout: LabelLayout, label_fraction: float, seeds: int
) -> dict[str, list[np.ndarray]]:
    """The raw-table and floor logistic regressions on each seed's label subset, scored on the
    test subjects: what fine-tuning must beat (with the scans' block means when every subject
    has a scan)."""
    raw = features.layout([data], "text")
    sets = {
        "raw_table": features.table_features(data, raw),
        "raw_table_gbdt": features.table_features(data, raw, native_missing=True),
    }
    if catboost_trees.available():
        sets["raw_table_catboost"] = sets["raw_table_gbdt"]
    if data.has_scan.all():  # the block means read a scan (not for subjects without one)
        blocks = features.image_block_means(data)
        sets["raw_image"] = np.concatenate([sets["raw_table"], blocks], 1)
    floor = features.layout([data], "role", features.FLOOR_ROLES)
    if floor.columns:
        sets["floor"] = features.table_features(data, floor)
    rows, y = layout.rows["train"], layout.y
    out: dict[str, list[np.ndarray]] = {}
    for name, x in sets.items():
        reader = features.reader_of(name)
        out[name] = []
        for seed in range(seeds):
            subset = rows[stratified_subset(y[rows], label_fraction, seed)]
            fit = reader.fit_predict(
                x[subset], y[subset], x[layout.rows["test"]], len(layout.classes), seed
            )
            out[name].append(fit.probabilities)
    return out


def _train_all(
    loaded: LoadedCheckpoint,
    data: CohortData,
    layout: LabelLayout,
    strategy: Strategy,
    label_fraction: float,
    seeds: int,
    budget: Budget,
    device: torch.device,
    message: Callable[[str], None],
) -> tuple[dict[str, list[np.ndarray]], dict[str, list[list[float]]], Classifier]:
    """Fine-tuned and from-scratch models for each seed: their test probabilities, validation
    curves, and the fine-tuned model of seed 0 (the one saved)."""
    collator = Collator.for_model([data], loaded.config.model)
    runs: dict[str, list[np.ndarray]] = {kind: [] for kind in KINDS}
    curves: dict[str, list[list[float]]] = {kind: [] for kind in KINDS}
    kept: Classifier | None = None
    for seed in range(seeds):
        subset = layout.rows["train"][
            stratified_subset(layout.labels("train"), label_fraction, seed)
        ]
        for kind in KINDS:
            message(f"{kind}, seed {seed}: {len(subset)} labelled train subjects")
            torch.manual_seed(seed)
            model = model_layout(_model(kind, loaded, collator, len(layout.classes)), device)
            trained = train_classifier(
                model,
                strategy if kind == "finetuned" else "trainable",
                collator,
                layout,
                subset,
                loaded.config.train.augment,
                budget.epochs,
                budget.batch_size,
                budget.learning_rate,
                budget.patience,
                seed,
                device,
            )
            runs[kind].append(
                predict(model, collator, layout.rows["test"], budget.batch_size, device)
            )
            curves[kind].append(trained.curve)
            if kind == "finetuned" and seed == 0:
                kept = model
    assert kept is not None
    return runs, curves, kept


def _model(kind: str, loaded: LoadedCheckpoint, collator: Collator, classes: int) -> nn.Module:
    """The network of one kind, before training: the pretrained backbone with a head, the same
    architecture with fresh weights, or DAFT-style fusion with fresh weights."""
    if kind == "daft":
        return DaftClassifier(loaded.config.model.image, collator.width, collator.max_levels,
                              classes)  # fmt: skip
    backbone = loaded.model() if kind == "finetuned" else build_model(loaded.config.model)
    return Classifier(backbone, classes)


def _save_classifier(
    path: Path,
    model: Classifier,
    loaded: LoadedCheckpoint,
    data: CohortData,
    layout: LabelLayout,
    document: dict,
) -> None:
    """The fine-tuned classifier, loadable with `load_classifier`."""
    cohorts = dict(loaded.document.get("cohorts", {}))
    cohorts[data.name] = {"schema_fingerprint": data.schema_fingerprint, "columns": data.columns}
    checkpoint_file.save(
        path,
        model.state_dict(),
        CLASSIFIER,
        {
            "config": loaded.config.model_dump(mode="json"),
            "cohorts": cohorts,
            "header_encoder": loaded.document["header_encoder"],
            "classes": layout.classes,
            "finetuned_on": data.name,
            "strategy": document["strategy"],
            "exclude_criteria": document["exclude_criteria"],
            "source_checkpoint": str(loaded.path),
            "metrics": document["results"]["finetuned"],
            "step": loaded.document.get("step"),
        },
    )


def _markdown(document: dict) -> str:
    titles = {**TITLES, "finetuned": f"CITab fine-tuned ({document['strategy']})"}
    criteria = evaluation_report.criteria_sentence(
        document["exclude_criteria"], document.get("pretrained_without_criteria", False)
    )
    lines = [
        f"# Fine-tuning: {document['cohort']}",
        "",
        f"Checkpoint `{document['checkpoint']}` (run {document['run']}); cohort "
        f"{'seen' if document['cohort_seen_in_pretraining'] else 'not seen'} in pretraining. "
        f"Strategy: {document['strategy']}; {document['label_fraction']:.0%} of the labelled "
        f"train subjects; {document['seeds']} seed(s); early stopping on validation balanced "
        f"accuracy (budget: {document['budget']}). {criteria}",
        *evaluation_report.gap_lines(document),
        "",
    ]
    rows = [(titles[kind], results) for kind, results in document["results"].items()]
    lines += evaluation_report.metrics_table(rows, "model")
    lines += [
        "",
        "Paired differences (same test subjects, same label subsets and seeds); 'better' needs "
        "the whole interval above 0:",
        "",
        *evaluation_report.comparison_table(document["comparisons"], titles),
        "",
        "![paired differences](paired_differences.png)",
        "![confusion matrix](confusion_matrix.png)",
        "![ROC curves](roc.png)",
        "![validation curves](validation_curve.png)",
        "",
        *markdown_lines(document.get("without_scan"), titles),
    ]
    return "\n".join(lines)
