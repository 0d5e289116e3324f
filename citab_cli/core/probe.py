"""`citab probe`: linear probes of frozen embeddings, with baselines run the same way."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from citab_cli.core import atomic, checkpoint, headers, metrics
from citab_cli.core.dataset import CohortData, Collator, load_cohort
from citab_cli.core.errors import CitabError
from citab_cli.core.model.citab import CITab, build_model
from citab_cli.core.pretrain import embed_subjects
from citab_cli.core.pretrain_config import PretrainConfig
from citab_cli.core.project import Project

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


def load_checkpoint(project: Project, ckpt: str) -> LoadedCheckpoint:
    path = resolve_checkpoint(project, ckpt)
    tensors, document = checkpoint.load(path)
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
    device: str = "cpu",
    resamples: int = 500,
    message: Callable[[str], None] = lambda text: None,
) -> list[ProbeReport]:
    for f in fractions:
        if not 0 < f <= 1:
            raise CitabError(f"label fraction {f:g} is outside (0, 1]; use e.g. 0.01,0.1,1")
    if seeds < 1:
        raise CitabError("--seeds must be at least 1")
    loaded = load_checkpoint(project, ckpt)
    names = cohorts or list(loaded.config.cohorts) or project.cohorts()
    known = project.cohorts()
    for name in names:
        if name not in known:
            raise CitabError(
                f"cohort '{name}' is not ingested in {project.root} (ingested: "
                f"{', '.join(known)}); fix --cohorts"
            )
    for name in names:
        check_cohort(loaded, project, name)
    cache = headers.load_cache(project, project.load_settings().header_encoder)
    missing_texts = any(
        headers.text_key(x) not in set(cache.keys)
        for t in headers.project_texts(project)
        if t.cohort in names
        for x in (t.text, *t.levels)
    )
    if missing_texts:
        message("header embeddings missing: running embed-headers first")
        headers.embed(project)
        cache = headers.load_cache(project, project.load_settings().header_encoder)
    data = [load_cohort(project, n, cache) for n in names]
    class_sets = {tuple(sorted({lab for lab in c.labels if lab})) for c in data}
    for cohort in data:
        if not any(cohort.labels):
            raise CitabError(
                f"cohort '{cohort.name}' has no labelled subjects; give its schema "
                "a label: mapping and re-ingest"
            )
    if len(class_sets) > 1:
        raise CitabError(
            "the cohorts do not share one class set ("
            + "; ".join(
                f"{c.name}: {'/'.join(sorted({lab for lab in c.labels if lab}))}" for c in data
            )
            + "); probe them one at a time or map their labels to the same classes"
        )

    target = torch.device(device)
    trained = loaded.model().to(target)
    torch.manual_seed(0)
    random = build_model(loaded.config.model).to(target).eval()
    reports = []
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    for cohort in data:
        message(f"probing {cohort.name}")
        reports.append(
            _probe_cohort(
                project, loaded, cohort, trained, random, fractions, seeds, target, resamples, stamp
            )
        )
    return reports


def _probe_cohort(
    project: Project,
    loaded: LoadedCheckpoint,
    cohort: CohortData,
    trained: CITab,
    random: CITab,
    fractions,
    seeds: int,
    device: torch.device,
    resamples: int,
    stamp: str,
) -> ProbeReport:
    present = {lab for lab in cohort.labels if lab}
    classes = [c for c in cohort.classes if c in present] or sorted(present)
    index = {c: i for i, c in enumerate(classes)}
    labelled = np.array([lab is not None for lab in cohort.labels])
    y_all = np.array([index.get(lab, -1) if lab else -1 for lab in cohort.labels])
    rows = {s: np.nonzero(labelled & (cohort.splits == s))[0] for s in ("train", "val", "test")}
    if len(np.unique(y_all[rows["test"]])) < len(classes) or len(rows["test"]) < len(classes):
        raise CitabError(
            f"cohort '{cohort.name}' has {len(rows['test'])} labelled test subject(s) "
            f"covering {len(np.unique(y_all[rows['test']]))} of {len(classes)} "
            "classes; a probe needs every class in the test split (ingest more "
            "subjects or change the split fractions)"
        )
    if len(np.unique(y_all[rows["train"]])) < 2:
        raise CitabError(
            f"cohort '{cohort.name}' has fewer than two classes among its labelled "
            "train subjects; nothing to learn"
        )
    collator = Collator([cohort], loaded.config.model.tabular.categorical == "levels")
    every = np.nonzero(labelled)[0]
    pairs = np.stack([np.zeros(len(every), np.int64), every], 1)
    batch = loaded.config.train.batch_size
    embedded = embed_subjects(trained, collator, pairs, batch, device)
    baseline = embed_subjects(random, collator, pairs, batch, device)
    position = {row: i for i, row in enumerate(every)}
    raw = raw_table_features(cohort)
    feature_sets = {
        "citab": embedded["multimodal"],
        "citab_tabular": embedded["tabular"],
        "citab_image": embedded["image"],
        "raw_table": raw[every],
        "random_init": baseline["multimodal"],
    }

    def take(x: np.ndarray, split: str) -> np.ndarray:
        return x[[position[r] for r in rows[split]]]

    y = {s: y_all[rows[s]] for s in rows}
    summary: dict = {}
    predictions: dict = {}
    chosen_c: dict = {}
    for feature, x in feature_sets.items():
        summary[feature] = {}
        for fraction in fractions:
            runs, per_seed, cs = [], [], []
            for seed in range(seeds):
                subset = stratified_subset(y["train"], fraction, seed)
                proba, c = _fit_predict(
                    take(x, "train")[subset],
                    y["train"][subset],
                    take(x, "val"),
                    y["val"],
                    take(x, "test"),
                    len(classes),
                )
                runs.append(proba)
                per_seed.append(metrics.score(y["test"], proba))
                cs.append(c)
            intervals = metrics.bootstrap(y["test"], runs, resamples=resamples, seed=0)
            summary[feature][_key(fraction)] = {
                name: {
                    "mean": float(np.mean([s[name] for s in per_seed])),
                    "std": float(np.std([s[name] for s in per_seed])),
                    "ci95": list(intervals[name]),
                }
                for name in metrics.NAMES
            }
            summary[feature][_key(fraction)]["n_train"] = int(
                len(stratified_subset(y["train"], fraction, 0))
            )
            predictions[(feature, fraction)] = runs[0]
            chosen_c[f"{feature}@{_key(fraction)}"] = cs
    folder = project.reports_dir / f"probe-{loaded.run}-{cohort.name}-{stamp}"
    report = {
        "kind": "probe",
        "checkpoint": str(loaded.path),
        "run": loaded.run,
        "step": loaded.document.get("step"),
        "cohort": cohort.name,
        "cohort_seen_in_pretraining": cohort.name in loaded.document.get("cohorts", {}),
        "classes": classes,
        "subjects": {s: int(len(rows[s])) for s in rows},
        "label_fractions": list(fractions),
        "seeds": seeds,
        "bootstrap_resamples": resamples,
        "features": {k: FEATURE_TITLES[k] for k in feature_sets},
        "results": summary,
        "chosen_c": chosen_c,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic.staged_directory(folder) as stage:
        (stage / "report.json").write_text(json.dumps(report, indent=2))
        best_fraction = max(fractions)
        _figures(stage, classes, y["test"], predictions, fractions, summary, best_fraction)
        (stage / "report.md").write_text(_markdown(report, best_fraction))
    return ProbeReport(cohort.name, folder, summary)


def _key(fraction: float) -> str:
    return f"{fraction:g}"


def _figures(folder: Path, classes, y_test, predictions, fractions, summary, fraction) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    proba = predictions[("citab", fraction)]
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
    ax.set_title(f"CITab probe, {fraction:.0%} of labels (seed 0)")
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
        ax.plot(fpr, tpr, label=f"{name} vs rest (AUC {metrics._binary_auc(positive, scores):.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC, CITab probe, {fraction:.0%} of labels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "roc.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for feature, results in summary.items():
        means = [results[_key(f)]["balanced_accuracy"]["mean"] for f in fractions]
        stds = [results[_key(f)]["balanced_accuracy"]["std"] for f in fractions]
        ax.errorbar(fractions, means, yerr=stds, marker="o", capsize=3, label=feature)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of labelled train subjects")
    ax.set_ylabel("test balanced accuracy (mean ± sd over seeds)")
    ax.axhline(1 / len(classes), color="grey", linestyle=":", label="chance")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "label_fraction_curve.png", dpi=120)
    plt.close(fig)


def _markdown(report: dict, fraction: float) -> str:
    lines = [
        f"# Linear probe: {report['cohort']}",
        "",
        f"Checkpoint `{report['checkpoint']}` (run {report['run']}, step {report['step']}); "
        f"cohort {'seen' if report['cohort_seen_in_pretraining'] else 'not seen'} in pretraining.",
        f"Classes: {', '.join(report['classes'])}. Labelled subjects: "
        + ", ".join(f"{k} {v}" for k, v in report["subjects"].items())
        + ".",
        f"Logistic regression on standardised features, C chosen on the validation split, scored "
        f"on the test split; {report['seeds']} seed(s); mean ± sd over seeds, 95% bootstrap "
        f"interval over test subjects ({report['bootstrap_resamples']} resamples).",
        "",
    ]
    for f in report["label_fractions"]:
        lines += [
            f"## {f:.0%} of the labelled train subjects",
            "",
            "| features | accuracy | balanced accuracy | macro AUC | macro F1 | ECE |",
            "|---|---|---|---|---|---|",
        ]
        for feature, results in report["results"].items():
            cells = []
            for name in metrics.NAMES:
                m = results[_key(f)][name]
                cells.append(
                    f"{m['mean']:.3f} ± {m['std']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"
                )
            lines.append(f"| {report['features'][feature]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        f"![confusion matrix, {fraction:.0%} of labels](confusion_matrix.png)",
        f"![ROC curves, {fraction:.0%} of labels](roc.png)",
        "![balanced accuracy by label fraction](label_fraction_curve.png)",
        "",
    ]
    return "\n".join(lines)
