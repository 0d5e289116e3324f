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
from citab_cli.core.evaluation import explain_figures as figures
from citab_cli.core.evaluation import report
from citab_cli.core.evaluation.attribution import (
    Capture,
    brain_mask,
    grad_cam,
    integrated_gradients,
    localising_stage,
    mean_cell_tokens,
)
from citab_cli.core.evaluation.classifier import CLASSIFIER, Classifier, classifier_from
from citab_cli.core.evaluation.labels import label_layout
from citab_cli.core.evaluation.linear import FALLBACK_C, MAX_ITERATIONS, choose_c, folds_for
from citab_cli.core.evaluation.routing import routing
from citab_cli.core.runtime.dataset import CohortData, Collator
from citab_cli.core.runtime.device import describe_device, image_layout, model_layout, pick_device
from citab_cli.core.runtime.embedding import cohort_items, embed_subjects
from citab_cli.core.runtime.pretrained import LoadedCheckpoint, load_checkpoint, prepare_cohorts

#: Cohort-level attributions average over at most this many test subjects.
AGGREGATE_SUBJECTS = 64
#: Subjects attributed per pass.
ATTRIBUTION_BATCH = 8
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
    with figures.quiet():  # a convergence warning is not the user's business
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


def _check_criteria(loaded: LoadedCheckpoint, data: CohortData, exclude: bool) -> None:
    """A classifier fine-tuned with the criterion columns read them: explaining it without them
    would explain a model on input it never had."""
    if not exclude or loaded.document["kind"] != CLASSIFIER:
        return
    if not loaded.document.get("exclude_criteria", False):
        criteria = [c for c, flag in zip(data.columns, data.criterion, strict=True) if flag]
        raise CitabError(
            f"{loaded.path}: this classifier was fine-tuned with the criterion columns "
            f"({', '.join(criteria) or 'none marked in this cohort'}); explain it without "
            "--exclude-criteria, or fine-tune one with --exclude-criteria"
        )


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
class Attributions:
    """Explanations of a batch of subjects, for the class the model predicts."""

    cells: np.ndarray  # (B, C) integrated gradients per column
    cams: np.ndarray  # (B, D, H, W) Grad-CAM in [0, 1], zero outside the brain
    predicted: np.ndarray  # (B,) class index
    logits: np.ndarray  # (B,) logit of the predicted class
    baseline_logits: np.ndarray  # (B,) the same logit with every cell at its baseline
    images: np.ndarray  # (B, 1, D, H, W) the scans as the model saw them


@torch.no_grad()
def baseline_tokens(
    model: Classifier, collator: Collator, rows: np.ndarray, device: torch.device
) -> torch.Tensor:
    """(C, D) each column's average cell token over `rows` (where observed): the integrated
    gradients baseline."""
    tokenizer = model.backbone.tabular.tokenizer
    parts, observed = [], []
    for start in range(0, len(rows), ATTRIBUTION_BATCH):
        table = collator.table(cohort_items(rows[start : start + ATTRIBUTION_BATCH])).to(device)
        parts.append(tokenizer.cell_tokens(table).float())
        observed.append(table.present & ~table.missing)
    return mean_cell_tokens(torch.cat(parts), torch.cat(observed))


def attribute(
    model: Classifier,
    collator: Collator,
    rows: np.ndarray,
    steps: int,
    device: torch.device,
    baseline: torch.Tensor,
    stage: int,
) -> Attributions:
    """Integrated gradients over the cell tokens (the image held fixed; each cell starts from
    its column's average token) and Grad-CAM over image stage `stage`, masked to the brain,
    both for each subject's predicted class."""
    items = cohort_items(rows)
    images = image_layout(torch.from_numpy(collator.images(items)), device)
    table = collator.table(items).to(device)
    backbone = model.backbone
    with Capture(backbone.image.stages[stage]) as capture:
        image = backbone.encode_image(images)
    logits = model.head(backbone.fuse(backbone.encode_tabular(table), image))
    predicted = logits.argmax(1)
    score = logits.gather(1, predicted[:, None])[:, 0]
    cams = grad_cam(capture.output, score, tuple(images.shape[2:])) * brain_mask(images)
    cams = cams / cams.flatten(1).amax(1).clamp_min(1e-12)[:, None, None, None]
    frozen_image = type(image)(
        image.feature_map.detach(), image.tokens.detach(), image.pooled.detach()
    )
    cells = backbone.tabular.tokenizer.cell_tokens(table).detach()
    start = baseline[None].to(cells.dtype).expand_as(cells) * table.present[..., None]

    def f(c: torch.Tensor) -> torch.Tensor:
        out = model.head(backbone.embed_cells(frozen_image, c, table.present))
        return out.gather(1, predicted[:, None])[:, 0]

    ig = integrated_gradients(f, cells, baseline=start, steps=steps) * table.present
    with torch.no_grad():
        baseline_logit = f(start)
    return Attributions(
        cells=ig.detach().cpu().numpy(),
        cams=cams.detach().float().cpu().numpy(),
        predicted=predicted.cpu().numpy(),
        logits=score.detach().float().cpu().numpy(),
        baseline_logits=baseline_logit.float().cpu().numpy(),
        images=images.float().cpu().numpy(),
    )


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
) -> Explanation:
    """Explain a model on one cohort's test subjects: column attributions by header text, prototype
    routing and Grad-CAM, in one report folder."""
    loaded = load_checkpoint(project, ckpt, kinds=("model", CLASSIFIER))
    (data,) = prepare_cohorts(project, loaded, [cohort], message, "explain")
    _check_criteria(loaded, data, exclude_criteria)
    if loaded.document.get("exclude_criteria", exclude_criteria):
        data = data.without_criteria()  # as the classifier was trained, or as asked
    target = pick_device(device)
    message(f"explaining on {describe_device(target)} (attributions in fp32)")
    model, classes, what = _classifier(loaded, data, target)
    collator = Collator.for_model([data], loaded.config.model)
    chosen = _pick_subjects(data, subjects)
    test = np.nonzero(data.splits == "test")[0][:AGGREGATE_SUBJECTS]
    baseline = baseline_tokens(model, collator, np.nonzero(data.splits == "train")[0], target)
    stage = localising_stage(tuple(loaded.config.model.image.shape))

    def run(rows: np.ndarray) -> Attributions:
        return attribute(model, collator, rows, steps, target, baseline, stage)

    message(f"attributing {len(test)} test subject(s) of {cohort}")
    aggregate = np.concatenate(
        [run(test[i : i + ATTRIBUTION_BATCH]).cells for i in range(0, len(test), ATTRIBUTION_BATCH)]
    )
    explained = run(chosen)
    message("reading prototype routing across cohorts")
    gates = routing(project, model.backbone, target)
    document = _document(loaded, data, what, classes, steps, stage, aggregate, gates)
    document["subjects"] = _subject_entries(data, chosen, explained, data.texts, classes)
    affine = project.load_settings().image.grid_affine()

    def pictures(folder: Path) -> None:
        ranking = [(c["header"], c["mean_abs"]) for c in document["cohort_attributions"]["columns"]]
        figures.bar_chart(folder / "tabular_attributions.png", ranking, cohort)
        if gates is not None:
            figures.heatmap(folder / "prototype_routing.png", gates)
        for k, entry in enumerate(document["subjects"]):
            cam, scan = explained.cams[k], explained.images[k, 0]
            figures.save_nifti(folder / entry["gradcam_nifti"], cam, affine)
            figures.save_nifti(folder / entry["image_nifti"], scan, affine)
            title = f"{entry['subject']}: predicted {entry['predicted']}"
            figures.overlay(folder / entry["gradcam_png"], scan, cam, affine, title)

    folder = report.report_folder(project, "explain", loaded.run, cohort)
    with figures.quiet():
        report.write_report(folder, document, _markdown(document), pictures)
    ranking = [(c["header"], c["mean_abs"]) for c in document["cohort_attributions"]["columns"]]
    return Explanation(folder, ranking)


def _document(loaded, data: CohortData, what, classes, steps, stage, aggregate, gates) -> dict:
    strength, signed = np.abs(aggregate).mean(0), aggregate.mean(0)
    return {
        "kind": "explain",
        "checkpoint": str(loaded.path),
        "model": what,
        "cohort": data.name,
        "classes": classes,
        "steps": steps,
        "gradcam_stage": stage + 1,
        "columns_seen": data.columns,
        "cohort_attributions": {
            "subjects": int(len(aggregate)),
            "columns": [
                {
                    "column": data.columns[j],
                    "header": data.texts[j],
                    "mean_abs": float(strength[j]),
                    "mean": float(signed[j]),
                }
                for j in np.argsort(-strength)
            ],
        },
        "prototype_rows": gates["labels"] if gates else [],
        "prototypes": gates["top"] if gates else {},
        "created": report.created(),
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
                "attributions": [{"header": t, "value": v} for t, v in columns],
                "gradcam_nifti": f"gradcam_{name}.nii.gz",
                "image_nifti": f"image_{name}.nii.gz",
                "gradcam_png": f"gradcam_{name}.png",
            }
        )
    return entries


def _safe(subject: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in subject)


def _markdown(document: dict) -> str:
    lines = [
        f"# Explanation: {document['cohort']}",
        "",
        f"Checkpoint `{document['checkpoint']}` ({document['model']}); classes "
        f"{', '.join(document['classes'])}; integrated gradients with {document['steps']} steps "
        "for the predicted class, each cell starting from its column's average token over the "
        "train subjects (so numeric and categorical columns are comparable); Grad-CAM from "
        f"image stage {document['gradcam_stage']} of 4, masked to the brain.",
        "",
        f"## Columns ({document['cohort_attributions']['subjects']} test subjects)",
        "",
        "![columns](tabular_attributions.png)",
        "",
        "| header | mean abs. attribution | mean attribution |",
        "|---|---|---|",
    ]
    for c in document["cohort_attributions"]["columns"]:
        lines.append(f"| {c['header']} | {c['mean_abs']:.4f} | {c['mean']:+.4f} |")
    lines += ["", "## Prototypes", ""]
    if document["prototypes"]:
        lines += ["![routing](prototype_routing.png)", ""]
    else:
        lines += ["The model has no P-MoLin layers (`tabular.ffn: dense`): no routing to show.", ""]
    for name, members in document["prototypes"].items():
        lines.append(f"- {name}: " + ", ".join(f"{m['column']} ({m['gate']:.2f})" for m in members))
    lines += ["", "## Subjects", ""]
    for s in document["subjects"]:
        top = ", ".join(f"{a['header']} ({a['value']:+.3f})" for a in s["attributions"][:3])
        lines += [
            f"### {s['subject']}: predicted {s['predicted']} (label {s['label'] or '-'})",
            "",
            f"Strongest columns: {top}.",
            "",
            f"![Grad-CAM]({s['gradcam_png']})",
            "",
        ]
    return "\n".join(lines)
