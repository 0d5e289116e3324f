"""`citab finetune`: a diagnosis head on the fusion embedding, frozen or trained end to end,
next to the same architecture trained from scratch with the same budget."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from citab_cli.core import atomic
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation import metrics
from citab_cli.core.evaluation.checkpoints import (
    LabelLayout,
    LoadedCheckpoint,
    check_fractions,
    classifier_figures,
    label_layout,
    load_checkpoint,
    prepare_cohorts,
    stratified_subset,
)
from citab_cli.core.model.citab import CITab, build_model
from citab_cli.core.training import checkpoint
from citab_cli.core.training.augment import augment, sample_parameters
from citab_cli.core.training.dataset import CohortData, Collator

Strategy = Literal["frozen", "trainable"]
#: The backbone learns at this fraction of the head's rate when trained end to end.
BACKBONE_RATE = 0.1


class Classifier(nn.Module):
    """CITab's multimodal embedding followed by a linear diagnosis head."""

    def __init__(self, backbone: CITab, classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.tabular.dim, classes)

    def forward(self, images: torch.Tensor, table) -> torch.Tensor:
        """-> logits (B, classes)."""
        return self.head(self.backbone(images, table)["multimodal"])


@dataclass
class Trained:
    state: dict[str, torch.Tensor]  # the classifier at its best validation epoch
    curve: list[float]  # validation balanced accuracy per epoch
    best_epoch: int


def _mode(model: Classifier, strategy: Strategy) -> None:
    """Training mode, except a frozen backbone, which stays in evaluation mode (its BatchNorm
    statistics never move)."""
    model.train()
    if strategy == "frozen":
        model.backbone.eval()


@torch.no_grad()
def predict(
    model: Classifier, collator: Collator, rows: np.ndarray, batch: int, device: torch.device
) -> np.ndarray:
    """Class probabilities (N, K) for cohort rows, no augmentation."""
    was = model.training
    model.eval()
    out = []
    for start in range(0, len(rows), batch):
        items = np.stack(
            [np.zeros(len(rows[start : start + batch]), np.int64), rows[start : start + batch]], 1
        )
        images = torch.from_numpy(collator.images(items)).to(device)
        out.append(torch.softmax(model(images, collator.table(items).to(device)).float(), -1))
    model.train(was)
    return torch.cat(out).cpu().numpy()


def train_classifier(
    model: Classifier,
    strategy: Strategy,
    collator: Collator,
    layout: LabelLayout,
    train_rows: np.ndarray,
    config,
    epochs: int,
    batch: int,
    learning_rate: float,
    patience: int,
    seed: int,
    device: torch.device,
) -> Trained:
    """Cross-entropy (class-balanced) with early stopping on validation balanced accuracy."""
    if strategy == "frozen":
        model.backbone.requires_grad_(False)
        groups = [{"params": model.head.parameters(), "lr": learning_rate}]
    else:
        groups = [
            {"params": model.head.parameters(), "lr": learning_rate},
            {"params": model.backbone.parameters(), "lr": learning_rate * BACKBONE_RATE},
        ]
    optimizer = torch.optim.Adam(groups)
    y = layout.y[train_rows]
    counts = np.bincount(y, minlength=len(layout.classes)).astype(np.float64)
    weights = torch.tensor(
        np.where(counts > 0, len(y) / (len(layout.classes) * np.maximum(counts, 1)), 0.0),
        dtype=torch.float32,
        device=device,
    )
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    val_rows, val_y = layout.rows["val"], layout.labels("val")
    best = Trained({k: v.detach().clone() for k, v in model.state_dict().items()}, [], 0)
    best_score, waited = -1.0, 0
    for epoch in range(epochs):
        _mode(model, strategy)
        order = train_rows[np.random.default_rng([seed, epoch, 11]).permutation(len(train_rows))]
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            items = np.stack([np.zeros(len(rows), np.int64), rows], 1)
            images = torch.from_numpy(collator.images(items)).to(device)
            images = augment(images, sample_parameters(config, seed, epoch, rows), config)
            target = torch.as_tensor(layout.y[rows], device=device)
            loss = loss_fn(model(images, collator.table(items).to(device)), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        score = (
            metrics.balanced_accuracy(val_y, predict(model, collator, val_rows, batch, device))
            if len(val_rows)
            else -float(loss)
        )
        best.curve.append(score)
        if score > best_score:
            best_score, waited = score, 0
            best.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best.best_epoch = epoch + 1
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best.state)
    return best


@dataclass
class FinetuneReport:
    cohort: str
    folder: Path
    summary: dict  # model -> metric -> {"mean", "std", "ci95"}
    model_file: Path


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
    device: str = "cpu",
    resamples: int = 500,
    message: Callable[[str], None] = lambda text: None,
) -> FinetuneReport:
    check_fractions((label_fraction,))
    if seeds < 1 or epochs < 1:
        raise CitabError("--seeds and --epochs must be at least 1")
    loaded = load_checkpoint(project, ckpt)
    (data,) = prepare_cohorts(project, loaded, [cohort], message, "fine-tune")
    layout = label_layout(data, "fine-tune")
    target = torch.device(device)
    collator = Collator([data], loaded.config.model.tabular.categorical == "levels")
    batch = batch_size or loaded.config.train.batch_size
    augment_config = loaded.config.train.augment
    test_rows, y_test = layout.rows["test"], layout.labels("test")
    runs: dict[str, list[np.ndarray]] = {"finetuned": [], "scratch": []}
    curves: dict[str, list[list[float]]] = {"finetuned": [], "scratch": []}
    kept: Classifier | None = None
    for seed in range(seeds):
        subset = layout.rows["train"][
            stratified_subset(layout.labels("train"), label_fraction, seed)
        ]
        for kind in ("finetuned", "scratch"):
            message(f"{kind}, seed {seed}: {len(subset)} labelled train subjects")
            torch.manual_seed(seed)
            backbone = loaded.model() if kind == "finetuned" else build_model(loaded.config.model)
            model = Classifier(backbone, len(layout.classes)).to(target)
            how: Strategy = strategy if kind == "finetuned" else "trainable"
            trained = train_classifier(
                model,
                how,
                collator,
                layout,
                subset,
                augment_config,
                epochs,
                batch,
                learning_rate,
                patience,
                seed,
                target,
            )
            runs[kind].append(predict(model, collator, test_rows, batch, target))
            curves[kind].append(trained.curve)
            if kind == "finetuned" and seed == 0:
                kept = model
    summary = {}
    for kind, probabilities in runs.items():
        per_seed = [metrics.score(y_test, p) for p in probabilities]
        intervals = metrics.bootstrap(y_test, probabilities, resamples=resamples)
        summary[kind] = {
            name: {
                "mean": float(np.mean([s[name] for s in per_seed])),
                "std": float(np.std([s[name] for s in per_seed])),
                "ci95": list(intervals[name]),
            }
            for name in metrics.NAMES
        }
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = project.reports_dir / f"finetune-{loaded.run}-{cohort}-{stamp}"
    report = {
        "kind": "finetune",
        "checkpoint": str(loaded.path),
        "run": loaded.run,
        "cohort": cohort,
        "cohort_seen_in_pretraining": cohort in loaded.document.get("cohorts", {}),
        "strategy": strategy,
        "classes": layout.classes,
        "subjects": {s: int(len(r)) for s, r in layout.rows.items()},
        "label_fraction": label_fraction,
        "seeds": seeds,
        "budget": {
            "epochs": epochs,
            "patience": patience,
            "batch_size": batch,
            "learning_rate": learning_rate,
            "backbone_rate": BACKBONE_RATE,
        },
        "results": summary,
        "validation_curves": curves,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    assert kept is not None
    with atomic.staged_directory(folder) as stage:
        (stage / "report.json").write_text(json.dumps(report, indent=2))
        classifier_figures(
            stage,
            layout.classes,
            y_test,
            runs["finetuned"][0],
            f"fine-tuned ({strategy}), {label_fraction:.0%} of labels",
        )
        _curve_figure(stage / "validation_curve.png", curves)
        (stage / "report.md").write_text(_markdown(report))
        _save_classifier(stage / "finetuned.safetensors", kept, loaded, data, layout, report)
    return FinetuneReport(cohort, folder, summary, folder / "finetuned.safetensors")


def _save_classifier(
    path: Path,
    model: Classifier,
    loaded: LoadedCheckpoint,
    data: CohortData,
    layout: LabelLayout,
    report: dict,
) -> None:
    """The fine-tuned classifier, loadable with `load_classifier`."""
    cohorts = dict(loaded.document.get("cohorts", {}))
    cohorts[data.name] = {"schema_fingerprint": data.schema_fingerprint, "columns": data.columns}
    checkpoint.save(
        path,
        model.state_dict(),
        "classifier",
        {
            "config": loaded.config.model_dump(mode="json"),
            "cohorts": cohorts,
            "header_encoder": loaded.document["header_encoder"],
            "classes": layout.classes,
            "finetuned_on": data.name,
            "strategy": report["strategy"],
            "source_checkpoint": str(loaded.path),
            "metrics": report["results"]["finetuned"],
            "step": loaded.document.get("step"),
        },
    )


def load_classifier(path: Path) -> tuple[Classifier, dict]:
    from citab_cli.core.training.config import PretrainConfig

    tensors, document = checkpoint.load(path, kind="classifier")
    config = PretrainConfig.model_validate(document["config"])
    model = Classifier(build_model(config.model), len(document["classes"]))
    model.load_state_dict(tensors)
    return model.eval(), document


def _curve_figure(path: Path, curves: dict[str, list[list[float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    colours = {"finetuned": "tab:blue", "scratch": "tab:orange"}
    for kind, per_seed in curves.items():
        for i, curve in enumerate(per_seed):
            ax.plot(
                range(1, len(curve) + 1),
                curve,
                color=colours[kind],
                alpha=0.8,
                label=kind if i == 0 else None,
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation balanced accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(report: dict) -> str:
    lines = [
        f"# Fine-tuning: {report['cohort']}",
        "",
        f"Checkpoint `{report['checkpoint']}` (run {report['run']}); cohort "
        f"{'seen' if report['cohort_seen_in_pretraining'] else 'not seen'} in pretraining. "
        f"Strategy: {report['strategy']}; {report['label_fraction']:.0%} of the labelled train "
        f"subjects; {report['seeds']} seed(s); early stopping on validation balanced accuracy "
        f"(budget: {report['budget']}).",
        "",
        "| model | accuracy | balanced accuracy | macro AUC | macro F1 | ECE |",
        "|---|---|---|---|---|---|",
    ]
    titles = {
        "finetuned": f"CITab fine-tuned ({report['strategy']})",
        "scratch": "same architecture from scratch, same budget",
    }
    for kind, results in report["results"].items():
        cells = [
            f"{results[n]['mean']:.3f} ± {results[n]['std']:.3f} "
            f"[{results[n]['ci95'][0]:.3f}, {results[n]['ci95'][1]:.3f}]"
            for n in metrics.NAMES
        ]
        lines.append(f"| {titles[kind]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "![confusion matrix](confusion_matrix.png)",
        "![ROC curves](roc.png)",
        "![validation curves](validation_curve.png)",
        "",
    ]
    return "\n".join(lines)
