"""What probing and fine-tuning share: loading a checkpoint against a project, preparing the
labelled cohorts, label subsets, and the classifier figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from citab_cli.core import headers
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation import metrics
from citab_cli.core.model.citab import CITab, build_model
from citab_cli.core.training import checkpoint
from citab_cli.core.training.config import PretrainConfig
from citab_cli.core.training.dataset import CohortData, load_cohort


@dataclass(frozen=True)
class LoadedCheckpoint:
    path: Path
    run: str
    config: PretrainConfig
    document: dict
    tensors: dict[str, torch.Tensor]

    def model(self) -> CITab:
        model = build_model(self.config.model)
        model.load_state_dict(self.tensors)
        return model.eval()


def resolve_checkpoint(project: Project, ckpt: str) -> Path:
    """A path as given, or a bare file name (best.safetensors) in the newest run that has it."""
    given = Path(ckpt)
    if given.exists() or len(given.parts) > 1:
        return given
    runs = [r for r in project.runs() if (project.runs_dir / r / ckpt).is_file()]
    if not runs:
        raise CitabError(f"no run in {project.runs_dir} has {ckpt}; pass a path, or pretrain first")
    newest = max(runs, key=lambda r: (project.runs_dir / r / ckpt).stat().st_mtime)
    return project.runs_dir / newest / ckpt


def load_checkpoint(
    project: Project, ckpt: str, kinds: tuple[str, ...] = (checkpoint.MODEL,)
) -> LoadedCheckpoint:
    """A checkpoint of one of `kinds`, checked against the project's encoder and image grid."""
    path = resolve_checkpoint(project, ckpt)
    tensors, document = checkpoint.load(path, kind=None)
    if document.get("kind") not in kinds:
        raise CitabError(
            f"{path}: holds a {document.get('kind')}; this command takes a "
            f"{' or a '.join(kinds)} checkpoint"
        )
    config = PretrainConfig.model_validate(document["config"])
    settings = project.load_settings()
    encoder = document["header_encoder"]
    if encoder["id"] != settings.header_encoder:
        raise CitabError(
            f"{path}: trained with header encoder '{encoder['id']}', this project "
            f"uses '{settings.header_encoder}'; run `citab embed-headers --model` "
            "with the checkpoint's encoder"
        )
    if tuple(config.model.image.shape) != tuple(settings.image.shape):
        raise CitabError(
            f"{path}: trained on images of {tuple(config.model.image.shape)}, this "
            f"project stores {tuple(settings.image.shape)}; use the checkpoint's project"
        )
    return LoadedCheckpoint(path, path.parent.name, config, document, tensors)


def check_cohort(loaded: LoadedCheckpoint, project: Project, cohort: str) -> None:
    """A cohort the checkpoint saw must still have the schema it was pretrained with."""
    seen = loaded.document.get("cohorts", {}).get(cohort)
    fingerprint = project.manifest(cohort)["schema"]["fingerprint"]
    if seen is not None and seen["schema_fingerprint"] != fingerprint:
        raise CitabError(
            f"{loaded.path}: cohort '{cohort}' was pretrained with another "
            "schema (another project, or re-ingested since); probe it with a "
            "checkpoint of this project"
        )


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a `fraction` of `labels`, stratified, with at least one per class."""
    rng = np.random.default_rng([seed, int(round(fraction * 1_000_000))])
    picks = []
    for c in np.unique(labels):
        members = np.nonzero(labels == c)[0]
        take = max(1, int(round(fraction * len(members))))
        picks.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(picks))


def check_fractions(fractions: tuple[float, ...]) -> None:
    for f in fractions:
        if not 0 < f <= 1:
            raise CitabError(f"label fraction {f:g} is outside (0, 1]; use e.g. 0.01,0.1,1")


def prepare_cohorts(
    project: Project,
    loaded: LoadedCheckpoint,
    names: list[str],
    message: Callable[[str], None],
    task: str,
) -> list[CohortData]:
    """The named cohorts, checked against the checkpoint, with their header vectors."""
    known = project.cohorts()
    for name in names:
        if name not in known:
            raise CitabError(
                f"cohort '{name}' is not ingested in {project.root} (ingested: "
                f"{', '.join(known)}); fix the cohort name"
            )
        check_cohort(loaded, project, name)
    cache = headers.load_cache(project, project.load_settings().header_encoder)
    cached = set(cache.keys)
    if any(
        headers.text_key(x) not in cached
        for t in headers.project_texts(project)
        if t.cohort in names
        for x in (t.text, *t.levels)
    ):
        message("header embeddings missing: running embed-headers first")
        headers.embed(project)
        cache = headers.load_cache(project, project.load_settings().header_encoder)
    data = [load_cohort(project, n, cache) for n in names]
    for cohort in data:
        if not any(cohort.labels):
            raise CitabError(
                f"cohort '{cohort.name}' has no labelled subjects; give its schema "
                "a label: mapping and re-ingest"
            )
    class_sets = {tuple(sorted({lab for lab in c.labels if lab})) for c in data}
    if len(class_sets) > 1:
        listed = "; ".join(
            f"{c.name}: {'/'.join(sorted({lab for lab in c.labels if lab}))}" for c in data
        )
        raise CitabError(
            f"the cohorts do not share one class set ({listed}); {task} them one "
            "at a time or map their labels to the same classes"
        )
    return data


@dataclass(frozen=True)
class LabelLayout:
    """A cohort's labelled subjects: class order, class index per row (-1 unlabelled), and the
    labelled rows of each split."""

    classes: list[str]
    y: np.ndarray  # (N,) int
    rows: dict[str, np.ndarray]

    def labels(self, split: str) -> np.ndarray:
        return self.y[self.rows[split]]


def label_layout(cohort: CohortData, task: str) -> LabelLayout:
    present = {lab for lab in cohort.labels if lab}
    classes = [c for c in cohort.classes if c in present] or sorted(present)
    index = {c: i for i, c in enumerate(classes)}
    labelled = np.array([lab is not None for lab in cohort.labels])
    y = np.array([index.get(lab, -1) if lab else -1 for lab in cohort.labels])
    rows = {s: np.nonzero(labelled & (cohort.splits == s))[0] for s in ("train", "val", "test")}
    covered = len(np.unique(y[rows["test"]]))
    if covered < len(classes):
        raise CitabError(
            f"cohort '{cohort.name}' has {len(rows['test'])} labelled test "
            f"subject(s) covering {covered} of {len(classes)} classes; a {task} "
            "needs every class in the test split (ingest more subjects or change "
            "the split fractions)"
        )
    if len(np.unique(y[rows["train"]])) < 2:
        raise CitabError(
            f"cohort '{cohort.name}' has fewer than two classes among its labelled "
            "train subjects; nothing to learn"
        )
    return LabelLayout(classes, y, rows)


def classifier_figures(
    folder: Path, classes: list[str], y_test: np.ndarray, proba: np.ndarray, title: str
) -> None:
    """confusion_matrix.png and roc.png for one set of test predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    matrix = np.zeros((k, k), dtype=int)
    for t, p in zip(y_test, proba.argmax(1), strict=True):
        matrix[t, p] += 1
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), classes)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                color="white" if matrix[i, j] > matrix.max() / 2 else "black",
            )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(folder / "confusion_matrix.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for c, name in enumerate(classes):
        positive = y_test == c
        if positive.all() or not positive.any():
            continue
        scores = proba[:, c]
        thresholds = np.unique(scores)[::-1]
        tpr = [0.0] + [float((scores[positive] >= t).mean()) for t in thresholds]
        fpr = [0.0] + [float((scores[~positive] >= t).mean()) for t in thresholds]
        auc = metrics.binary_auc(positive, scores)
        ax.plot(fpr, tpr, label=f"{name} vs rest (AUC {auc:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC: {title}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "roc.png", dpi=120)
    plt.close(fig)
