"""`citab explain`: what drives a diagnosis — columns by header text, prototype routing, and
where in the scan."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from citab_cli.core import atomic, headers
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation.attribution import grad_cam, integrated_gradients
from citab_cli.core.evaluation.checkpoints import (
    LoadedCheckpoint,
    label_layout,
    load_checkpoint,
    prepare_cohorts,
)
from citab_cli.core.evaluation.finetune import Classifier
from citab_cli.core.model.citab import build_model
from citab_cli.core.training.dataset import CohortData, Collator, load_cohort
from citab_cli.core.training.loop import embed_subjects

#: Cohort-level attributions average over at most this many test subjects.
AGGREGATE_SUBJECTS = 64


def _classifier(
    loaded: LoadedCheckpoint, cohort: CohortData, device: torch.device
) -> tuple[Classifier, list[str], str]:
    """The model to explain: a fine-tuned classifier as saved, or a pretrained model with a
    linear probe fitted on the cohort's labelled train subjects (folded into one linear head)."""
    if loaded.document["kind"] == "classifier":
        classes = list(loaded.document["classes"])
        model = Classifier(build_model(loaded.config.model), len(classes))
        model.load_state_dict(loaded.tensors)
        return model.to(device).eval(), classes, "fine-tuned classifier"
    from sklearn.linear_model import LogisticRegression

    layout = label_layout(cohort, "explanation")
    backbone = loaded.model().to(device)
    collator = Collator([cohort], loaded.config.model.tabular.categorical == "levels")
    rows = layout.rows["train"]
    items = np.stack([np.zeros(len(rows), np.int64), rows], 1)
    x = embed_subjects(backbone, collator, items, loaded.config.train.batch_size, device)[
        "multimodal"
    ]
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
        count = int(subjects) if subjects else 3
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
    folder: Path
    ranking: list[tuple[str, float]]  # (header text, mean |attribution|), strongest first


def explain(
    project: Project,
    ckpt: str,
    cohort: str,
    subjects: str | None = None,
    steps: int = 32,
    device: str = "cpu",
    message: Callable[[str], None] = lambda text: None,
) -> Explanation:
    loaded = load_checkpoint(project, ckpt, kinds=("model", "classifier"))
    (data,) = prepare_cohorts(project, loaded, [cohort], message, "explain")
    target = torch.device(device)
    model, classes, what = _classifier(loaded, data, target)
    collator = Collator([data], loaded.config.model.tabular.categorical == "levels")
    chosen = _pick_subjects(data, subjects)
    test = np.nonzero(data.splits == "test")[0][:AGGREGATE_SUBJECTS]
    texts = [_column_text(project, cohort, j) for j in range(len(data.columns))]

    def attribute(rows: np.ndarray):
        items = np.stack([np.zeros(len(rows), np.int64), rows], 1)
        images = torch.from_numpy(collator.images(items)).to(target)
        table = collator.table(items).to(target)
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
        return (
            ig.detach().cpu().numpy(),
            cams.cpu().numpy(),
            predicted.cpu().numpy(),
            score.detach().cpu().numpy(),
            baseline_logit.cpu().numpy(),
            images.cpu().numpy(),
        )

    message(f"attributing {len(test)} test subject(s) of {cohort}")
    aggregate_ig = np.concatenate([attribute(test[i : i + 8])[0] for i in range(0, len(test), 8)])
    strength = np.abs(aggregate_ig).mean(0)
    signed = aggregate_ig.mean(0)
    order = np.argsort(-strength)
    ranking = [(texts[j], float(strength[j])) for j in order]
    ig, cams, predicted, scores, baselines, images = attribute(chosen)

    message("reading prototype routing across cohorts")
    routing = _routing(project, loaded, model, target)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = project.reports_dir / f"explain-{loaded.run}-{cohort}-{stamp}"
    spacing = project.load_settings().image.spacing
    report = {
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
        "subjects": [],
        "prototype_rows": routing["labels"],
        "prototypes": routing["top"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic.staged_directory(folder) as stage:
        _bar_chart(stage / "tabular_attributions.png", ranking, cohort)
        _heatmap(stage / "prototype_routing.png", routing)
        for k, row in enumerate(chosen):
            subject = data.subjects[row]
            name = _safe(subject)
            _save_nifti(stage / f"gradcam_{name}.nii.gz", cams[k], spacing)
            _save_nifti(stage / f"image_{name}.nii.gz", images[k, 0], spacing)
            _overlay(
                stage / f"gradcam_{name}.png",
                images[k, 0],
                cams[k],
                f"{subject}: predicted {classes[predicted[k]]}",
            )
            columns = sorted(
                (
                    (texts[j], float(ig[k, j]))
                    for j in range(len(texts))
                    if data.present_columns()[j]
                ),
                key=lambda t: -abs(t[1]),
            )
            report["subjects"].append(
                {
                    "subject": subject,
                    "predicted": classes[predicted[k]],
                    "label": data.labels[row],
                    "logit": float(scores[k]),
                    "baseline_logit": float(baselines[k]),
                    "attributions": [{"header": t, "value": v} for t, v in columns],
                    "gradcam_nifti": f"gradcam_{name}.nii.gz",
                    "gradcam_png": f"gradcam_{name}.png",
                }
            )
        (stage / "report.json").write_text(json.dumps(report, indent=2))
        (stage / "report.md").write_text(_markdown(report))
    return Explanation(folder, ranking)


def _safe(subject: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in subject)


def _column_text(project: Project, cohort: str, j: int) -> str:
    column = project.manifest(cohort)["columns"][j]
    return headers.column_text(column["description"], column.get("unit"))


def _routing(
    project: Project, loaded: LoadedCheckpoint, model: Classifier, device: torch.device
) -> dict:
    """Mean gate per (cohort, column) x layer x prototype over every ingested subject."""
    cache = headers.load_cache(project, project.load_settings().header_encoder)
    rows, labels = [], []
    for name in project.cohorts():
        try:
            cohort = load_cohort(project, name, cache)
        except CitabError:
            continue  # a cohort without header vectors yet
        collator = Collator([cohort], loaded.config.model.tabular.categorical == "levels")
        sums = None
        counts = np.zeros(len(cohort.columns))
        for start in range(0, cohort.size, 32):
            idx = np.arange(start, min(start + 32, cohort.size))
            table = collator.table(np.stack([np.zeros(len(idx), np.int64), idx], 1)).to(device)
            with torch.no_grad():
                gates = model.backbone.encode_tabular(table).gates  # per layer (B, 1 + C, K)
            stacked = torch.stack(gates, 2)[:, 1:]  # (B, C, L, K) without CLS
            present = table.present[..., None, None].float()
            part = (stacked * present).sum(0).cpu().numpy()[: len(cohort.columns)]
            sums = part if sums is None else sums + part
            counts += table.present.sum(0).cpu().numpy()[: len(cohort.columns)]
        means = sums / np.maximum(counts, 1)[:, None, None]
        for j, column in enumerate(cohort.columns):
            rows.append(means[j])
            labels.append(f"{name}: {column}")
    matrix = np.stack(rows)  # (R, L, K)
    top = {}
    for layer in range(matrix.shape[1]):
        for k in range(matrix.shape[2]):
            best = np.argsort(-matrix[:, layer, k])[:5]
            top[f"layer {layer + 1}, prototype {k + 1}"] = [
                {"column": labels[i], "gate": float(matrix[i, layer, k])} for i in best
            ]
    return {"matrix": matrix, "labels": labels, "top": top}


def _bar_chart(path: Path, ranking: list[tuple[str, float]], cohort: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ranking[:20][::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(shown) + 1.2))
    ax.barh([t for t, _ in shown], [v for _, v in shown], color="tab:blue")
    ax.set_xlabel("mean |integrated gradient| on the predicted class")
    ax.set_title(f"{cohort}: columns by header text")
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _heatmap(path: Path, routing: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = routing["matrix"]
    r, layers, k = matrix.shape
    flat = matrix.reshape(r, layers * k)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * layers * k, 0.28 * r + 1.5))
    image = ax.imshow(flat, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(r), routing["labels"], fontsize=7)
    ax.set_xticks(
        range(layers * k),
        [f"L{layer + 1}P{p + 1}" for layer in range(layers) for p in range(k)],
        fontsize=7,
        rotation=90,
    )
    ax.set_title("mean P-MoLin gate\n(L layer, P prototype)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _save_nifti(path: Path, volume: np.ndarray, spacing) -> None:
    import nibabel as nib

    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -np.array(volume.shape) / 2 * np.array(spacing)
    nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), path)


def _overlay(path: Path, image: np.ndarray, cam: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peak = np.unravel_index(int(cam.argmax()), cam.shape)
    views = [
        (image[peak[0]], cam[peak[0]], "sagittal"),
        (image[:, peak[1]], cam[:, peak[1]], "coronal"),
        (image[:, :, peak[2]], cam[:, :, peak[2]], "axial"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    for ax, (slice_image, slice_cam, name) in zip(axes, views, strict=True):
        ax.imshow(slice_image.T, cmap="gray", origin="lower")
        shown = np.ma.masked_where(slice_cam.T < 0.25, slice_cam.T)  # keep the anatomy visible
        ax.imshow(shown, cmap="hot", alpha=0.5, origin="lower", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"Grad-CAM, {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(report: dict) -> str:
    lines = [
        f"# Explanation: {report['cohort']}",
        "",
        f"Checkpoint `{report['checkpoint']}` ({report['model']}); classes "
        f"{', '.join(report['classes'])}; integrated gradients with {report['steps']} steps "
        "from an all-zero cell baseline, for the predicted class.",
        "",
        f"## Columns ({report['cohort_attributions']['subjects']} test subjects)",
        "",
        "![columns](tabular_attributions.png)",
        "",
        "| header | mean abs. attribution | mean attribution |",
        "|---|---|---|",
    ]
    for c in report["cohort_attributions"]["columns"]:
        lines.append(f"| {c['header']} | {c['mean_abs']:.4f} | {c['mean']:+.4f} |")
    lines += ["", "## Prototypes", "", "![routing](prototype_routing.png)", ""]
    for name, members in report["prototypes"].items():
        lines.append(f"- {name}: " + ", ".join(f"{m['column']} ({m['gate']:.2f})" for m in members))
    lines += ["", "## Subjects", ""]
    for s in report["subjects"]:
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
