"""`citab explain`: what drives a diagnosis — columns by header text, prototype routing, and
where in the scan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from citab_cli.core import headers
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation import explain_figures as figures
from citab_cli.core.evaluation import report
from citab_cli.core.evaluation.attribution import grad_cam, integrated_gradients
from citab_cli.core.evaluation.checkpoints import LoadedCheckpoint, load_checkpoint, prepare_cohorts
from citab_cli.core.evaluation.classifier import CLASSIFIER, Classifier, classifier_from
from citab_cli.core.evaluation.labels import label_layout
from citab_cli.core.evaluation.routing import routing
from citab_cli.core.training.dataset import CohortData, Collator
from citab_cli.core.training.embedding import cohort_items, embed_subjects
from citab_cli.core.training.precision import (
    describe_device,
    image_layout,
    model_layout,
    pick_device,
)

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
    collator = Collator([cohort], loaded.config.model.tabular.categorical == "levels")
    rows = layout.rows["train"]
    x = embed_subjects(
        backbone, collator, cohort_items(rows), loaded.config.train.batch_size, device
    )["multimodal"]
    mean, std = x.mean(0), x.std(0) + 1e-6
    probe = LogisticRegression(max_iter=2000).fit((x - mean) / std, layout.y[rows])
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
    test = np.nonzero(cohort.splits == "test")[0]
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
    cams: np.ndarray  # (B, D, H, W) Grad-CAM in [0, 1]
    predicted: np.ndarray  # (B,) class index
    logits: np.ndarray  # (B,) logit of the predicted class
    baseline_logits: np.ndarray  # (B,) the same logit with every cell at the baseline
    images: np.ndarray  # (B, 1, D, H, W) the scans as the model saw them


def attribute(
    model: Classifier, collator: Collator, rows: np.ndarray, steps: int, device: torch.device
) -> Attributions:
    """Integrated gradients over the cell tokens (the image held fixed) and Grad-CAM over the
    last image feature map, both for each subject's predicted class."""
    items = cohort_items(rows)
    images = image_layout(torch.from_numpy(collator.images(items)), device)
    table = collator.table(items).to(device)
    backbone = model.backbone
    image = backbone.encode_image(images)
    logits = model.head(backbone.fuse(backbone.encode_tabular(table), image))
    predicted = logits.argmax(1)
    score = logits.gather(1, predicted[:, None])[:, 0]
    cams = grad_cam(image.feature_map, score, tuple(images.shape[2:]))
    frozen_image = type(image)(
        image.feature_map.detach(), image.tokens.detach(), image.pooled.detach()
    )
    cells = backbone.tabular.tokenizer.cell_tokens(table).detach()

    def f(c: torch.Tensor) -> torch.Tensor:
        out = model.head(backbone.embed_cells(frozen_image, c, table.present))
        return out.gather(1, predicted[:, None])[:, 0]

    ig = integrated_gradients(f, cells, steps=steps) * table.present
    with torch.no_grad():
        baseline_logit = f(torch.zeros_like(cells))
    return Attributions(
        cells=ig.detach().cpu().numpy(),
        cams=cams.cpu().numpy(),
        predicted=predicted.cpu().numpy(),
        logits=score.detach().cpu().numpy(),
        baseline_logits=baseline_logit.cpu().numpy(),
        images=images.cpu().numpy(),
    )


@dataclass
class Explanation:
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
) -> Explanation:
    loaded = load_checkpoint(project, ckpt, kinds=("model", CLASSIFIER))
    (data,) = prepare_cohorts(project, loaded, [cohort], message, "explain")
    target = pick_device(device)
    message(f"explaining on {describe_device(target)} (attributions in fp32)")
    model, classes, what = _classifier(loaded, data, target)
    collator = Collator([data], loaded.config.model.tabular.categorical == "levels")
    chosen = _pick_subjects(data, subjects)
    test = np.nonzero(data.splits == "test")[0][:AGGREGATE_SUBJECTS]
    texts = [_column_text(project, cohort, j) for j in range(len(data.columns))]

    message(f"attributing {len(test)} test subject(s) of {cohort}")
    aggregate = np.concatenate(
        [
            attribute(model, collator, test[i : i + ATTRIBUTION_BATCH], steps, target).cells
            for i in range(0, len(test), ATTRIBUTION_BATCH)
        ]
    )
    strength, signed = np.abs(aggregate).mean(0), aggregate.mean(0)
    order = np.argsort(-strength)
    ranking = [(texts[j], float(strength[j])) for j in order]
    explained = attribute(model, collator, chosen, steps, target)

    message("reading prototype routing across cohorts")
    gates = routing(
        project, model.backbone, loaded.config.model.tabular.categorical == "levels", target
    )
    document = {
        "kind": "explain",
        "checkpoint": str(loaded.path),
        "model": what,
        "cohort": cohort,
        "classes": classes,
        "steps": steps,
        "cohort_attributions": {
            "subjects": int(len(test)),
            "columns": [
                {
                    "column": data.columns[j],
                    "header": texts[j],
                    "mean_abs": float(strength[j]),
                    "mean": float(signed[j]),
                }
                for j in order
            ],
        },
        "subjects": _subject_entries(data, chosen, explained, texts, classes),
        "prototype_rows": gates["labels"],
        "prototypes": gates["top"],
        "created": report.created(),
    }
    spacing = project.load_settings().image.spacing

    def pictures(stage: Path) -> None:
        figures.bar_chart(stage / "tabular_attributions.png", ranking, cohort)
        figures.heatmap(stage / "prototype_routing.png", gates)
        for k, entry in enumerate(document["subjects"]):
            cam, scan = explained.cams[k], explained.images[k, 0]
            figures.save_nifti(stage / entry["gradcam_nifti"], cam, spacing)
            figures.save_nifti(stage / f"image_{_safe(entry['subject'])}.nii.gz", scan, spacing)
            title = f"{entry['subject']}: predicted {entry['predicted']}"
            figures.overlay(stage / entry["gradcam_png"], scan, cam, title)

    folder = report.report_folder(project, "explain", loaded.run, cohort)
    report.write_report(folder, document, _markdown(document), pictures)
    return Explanation(folder, ranking)


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
                "gradcam_png": f"gradcam_{name}.png",
            }
        )
    return entries


def _safe(subject: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in subject)


def _column_text(project: Project, cohort: str, j: int) -> str:
    column = project.manifest(cohort)["columns"][j]
    return headers.column_text(column["description"], column.get("unit"))


def _markdown(document: dict) -> str:
    lines = [
        f"# Explanation: {document['cohort']}",
        "",
        f"Checkpoint `{document['checkpoint']}` ({document['model']}); classes "
        f"{', '.join(document['classes'])}; integrated gradients with {document['steps']} steps "
        "from an all-zero cell baseline, for the predicted class.",
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
    lines += ["", "## Prototypes", "", "![routing](prototype_routing.png)", ""]
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
