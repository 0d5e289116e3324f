"""`citab explain`: what drives a diagnosis — columns by header text, prototype routing, and
where in the scan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation import evaluation_report
from citab_cli.core.evaluation.classifier import CLASSIFIER, Classifier, classifier_from
from citab_cli.core.evaluation.labels import label_layout
from citab_cli.core.evaluation.linear import FALLBACK_C, MAX_ITERATIONS, choose_c, folds_for
from citab_cli.core.explain import drawing
from citab_cli.core.explain.attribute import (
    Attributions,
    Baseline,
    ScanMethod,
    Settings,
    attribute,
    baseline_starts,
    join,
)
from citab_cli.core.explain.attribution import localising_stage, routing_entropy
from citab_cli.core.explain.markdown import markdown as _markdown
from citab_cli.core.explain.routing import routing
from citab_cli.core.runtime.dataset import CohortData, Collator
from citab_cli.core.runtime.device import describe_device, model_layout, pick_device
from citab_cli.core.runtime.embedding import cohort_items, embed_subjects
from citab_cli.core.runtime.pretrained import LoadedCheckpoint, load_checkpoint, prepare_cohorts

#: Cohort-level attributions average over at most this many test subjects.
AGGREGATE_SUBJECTS = 64
#: Subjects attributed per pass at most, and the voxels a pass may hold in all: 4 scans of 128^3
#: (the paper preset's network took 6.0 GiB for them, 11.3 GiB for 8; benchmarks/explain_memory.py).
ATTRIBUTION_BATCH = 8
VOXEL_BUDGET = 4 * 128**3


def subjects_per_pass(shape: tuple[int, int, int]) -> int:
    """How many subjects one attribution pass takes on a grid of `shape`."""
    return max(1, min(ATTRIBUTION_BATCH, VOXEL_BUDGET // int(np.prod(shape))))


#: Subjects explained one by one when --subjects is not given.
DEFAULT_SUBJECTS = 3


def _classifier(
    loaded: LoadedCheckpoint, cohort: CohortData, device: torch.device
) -> tuple[Classifier, list[str], str]:
    """The model to explain: a fine-tuned classifier as saved, or a pretrained model with a
    linear probe fitted on the cohort's labelled train subjects (folded into one linear head)."""
    if loaded.document["kind"] == CLASSIFIER:
        model = classifier_from(loaded.document, loaded.tensors)
        return (
            model_layout(model, device),
            list(loaded.document["classes"]),
            "fine-tuned classifier",
        )
    from sklearn.linear_model import LogisticRegression

    layout = label_layout(cohort, "explanation")
    backbone = model_layout(loaded.model(), device)
    collator = Collator.for_model([cohort], loaded.config.model)
    rows = layout.rows["train"]
    x = embed_subjects(
        backbone, collator, cohort_items(rows), loaded.config.train.batch_size, device
    )["multimodal"]
    mean, std = x.mean(0), x.std(0) + 1e-6
    z, y = (x - mean) / std, layout.y[rows]
    folds = folds_for(y)  # the probe of `citab probe`: class-balanced, C by cross-validation
    c = choose_c(z, y, folds, seed=0) if folds else FALLBACK_C
    with drawing.quiet():  # a convergence warning is not the user's business
        probe = LogisticRegression(C=c, class_weight="balanced", max_iter=MAX_ITERATIONS)
        probe.fit(z, y)
    classes = [layout.classes[c] for c in probe.classes_]
    weight = probe.coef_ / std  # (K', D) on raw embeddings
    bias = probe.intercept_ - (probe.coef_ * mean / std).sum(1)
    if weight.shape[0] == 1:  # binary: logits (0, z)
        weight = np.concatenate([np.zeros_like(weight), weight])
        bias = np.concatenate([[0.0], bias])
    model = Classifier(backbone, len(classes))
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        model.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return model.to(device).eval(), classes, "pretrained model with a linear probe"


def _pick_subjects(cohort: CohortData, subjects: str | None) -> np.ndarray:
    """The subjects explained one by one: IDs as given, or the first test subjects that have a
    label (so the figure can say whether the prediction is right)."""
    labelled = np.array([label is not None for label in cohort.labels])
    test = np.nonzero((cohort.splits == "test") & labelled)[0]
    if subjects is None or subjects.strip().isdigit():
        count = int(subjects) if subjects else DEFAULT_SUBJECTS
        if count < 1:
            raise CitabError("--subjects must be a positive number or subject IDs")
        return test[:count]
    wanted = [s.strip() for s in subjects.split(",") if s.strip()]
    index = {s: i for i, s in enumerate(cohort.subjects)}
    unknown = [s for s in wanted if s not in index]
    if unknown:
        raise CitabError(
            f"subject '{unknown[0]}' is not in cohort '{cohort.name}' "
            f"({len(unknown)} unknown); use IDs from cohorts/{cohort.name}/subjects.csv"
        )
    return np.array([index[s] for s in wanted])


@dataclass
class Explanation:
    """Where an explanation was written, and the columns ranked by mean |attribution|."""

    folder: Path
    ranking: list[tuple[str, float]]  # (header text, mean |attribution|), strongest first


def explain(
    project: Project,
    ckpt: str,
    cohort: str,
    subjects: str | None = None,
    steps: int = 32,
    device: str = "auto",
    message: Callable[[str], None] = lambda text: None,
    exclude_criteria: bool = False,
    baseline: Baseline = "sample",
    scan_method: ScanMethod = "gradcam",
) -> Explanation:
    """Explain a model on one cohort's test subjects: column attributions by header text (expected
    gradients over real subjects' cells, or integrated gradients from each column's mean token),
    prototype routing, and a scan map (Grad-CAM or occlusion), in one report folder."""
    loaded = load_checkpoint(project, ckpt, kinds=("model", CLASSIFIER))
    (data,) = prepare_cohorts(project, loaded, [cohort], message, "explain")
    if loaded.without_criteria(exclude_criteria, data):
        data = data.without_criteria()  # as the classifier was fine-tuned, or as asked
    target = pick_device(device)
    message(f"explaining on {describe_device(target)} (attributions in fp32)")
    model, classes, what = _classifier(loaded, data, target)
    collator = Collator.for_model([data], loaded.config.model)
    chosen = _pick_subjects(data, subjects)
    test = np.nonzero(data.splits == "test")[0][:AGGREGATE_SUBJECTS]
    train = np.nonzero(data.splits == "train")[0]
    starts = baseline_starts(model, collator, train, target, baseline)
    stage = localising_stage(tuple(loaded.config.model.image.shape))
    settings = Settings(baseline, starts, steps, scan_method, stage)

    per_pass = subjects_per_pass(tuple(loaded.config.model.image.shape))

    def run(rows: np.ndarray) -> Attributions:
        parts = [attribute(model, collator, rows[i : i + per_pass], target, settings)
                 for i in range(0, len(rows), per_pass)]  # fmt: skip
        return join(parts)

    message(f"attributing {len(test)} test subject(s) of {cohort}")
    aggregate = run(test).cells
    explained = run(chosen)
    message("reading prototype routing across cohorts")
    gates = routing(project, model.backbone, target)
    document = _document(loaded, data, what, classes, settings, aggregate, gates)
    document["subjects"] = _subject_entries(data, chosen, explained, data.texts, classes)
    affine = project.load_settings().image.grid_affine()

    def pictures(folder: Path) -> None:
        ranking = [(c["header"], c["mean_abs"]) for c in document["cohort_attributions"]["columns"]]
        drawing.bar_chart(folder / "tabular_attributions.png", ranking, cohort)
        if gates is not None:
            drawing.heatmap(folder / "prototype_routing.png", gates)
        for k, entry in enumerate(document["subjects"]):
            cam, scan = explained.cams[k], explained.images[k, 0]
            drawing.save_nifti(folder / entry["gradcam_nifti"], cam, affine)
            drawing.save_nifti(folder / entry["image_nifti"], scan, affine)
            title = f"{entry['subject']}: predicted {entry['predicted']}"
            method = "occlusion" if scan_method == "occlusion" else "Grad-CAM"
            if entry["scan_note"]:
                method = "|gradient x activation|" if "Grad-CAM" in entry["scan_note"] else method
            drawing.overlay(folder / entry["gradcam_png"], scan, cam, affine, title, method)

    folder = evaluation_report.evaluation_folder(project, "explain", loaded.run, cohort)
    with drawing.quiet():
        evaluation_report.write_evaluation_report(folder, document, _markdown(document), pictures)
    ranking = [(c["header"], c["mean_abs"]) for c in document["cohort_attributions"]["columns"]]
    return Explanation(folder, ranking)


def _document(loaded, data: CohortData, what, classes, settings: Settings, aggregate, gates):
    strength, signed = np.abs(aggregate).mean(0), aggregate.mean(0)
    spread = np.abs(aggregate).std(0)
    entropy = routing_entropy(gates["matrix"], gates["cohorts"]) if gates else {}
    for cohort, entry in entropy.items():
        entry["seen"] = loaded.seen(cohort)
    return {
        "kind": "explain",
        "checkpoint": str(loaded.path),
        "model": what,
        "cohort": data.name,
        "classes": classes,
        "steps": settings.steps,
        "baseline": settings.baseline,
        "scan_method": settings.scan_method,
        "gradcam_stage": settings.stage + 1,
        "columns_seen": data.columns,
        "cohort_attributions": {
            "subjects": int(len(aggregate)),
            "columns": [
                {
                    "column": data.columns[j],
                    "header": data.texts[j],
                    "mean_abs": float(strength[j]),
                    "sd_abs": float(spread[j]),
                    "mean": float(signed[j]),
                }
                for j in np.argsort(-strength)
            ],
        },
        "prototype_rows": gates["labels"] if gates else [],
        "prototypes": gates["top"] if gates else {},
        "routing_entropy": entropy,
        "created": evaluation_report.created(),
    }


def _subject_entries(
    data: CohortData,
    chosen: np.ndarray,
    explained: Attributions,
    texts: list[str],
    classes: list[str],
) -> list[dict]:
    """One report entry per explained subject: prediction, columns by |attribution|, files."""
    present = data.present_columns()
    entries = []
    for k, row in enumerate(chosen):
        subject = data.subjects[row]
        name = _safe(subject)
        columns = sorted(
            ((texts[j], float(explained.cells[k, j])) for j in range(len(texts)) if present[j]),
            key=lambda t: -abs(t[1]),
        )
        entries.append(
            {
                "subject": subject,
                "predicted": classes[explained.predicted[k]],
                "label": data.labels[row],
                "logit": float(explained.logits[k]),
                "baseline_logit": float(explained.baseline_logits[k]),
                "scan_note": explained.notes[k],
                "attributions": [{"header": t, "value": v} for t, v in columns],
                "gradcam_nifti": f"gradcam_{name}.nii.gz",
                "image_nifti": f"image_{name}.nii.gz",
                "gradcam_png": f"gradcam_{name}.png",
            }
        )
    return entries


def _safe(subject: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in subject)
