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
from citab_cli.core.evaluation import evaluation_report, oracle, probe_sides
from citab_cli.core.evaluation.features import (
    BASELINES,
    FEATURE_TITLES,
    FEATURES,
    METHODS,
    comparison_pairs,
    raw_table_features,
    with_shares,
)
from citab_cli.core.evaluation.labels import check_fractions
from citab_cli.core.evaluation.linear import describe_folds
from citab_cli.core.evaluation.probe_fits import PARTS, FitCache, fit_all
from citab_cli.core.evaluation.probe_report import markdown, write
from citab_cli.core.evaluation.probe_sides import Side
from citab_cli.core.evaluation.scoring import Scoring
from citab_cli.core.model.citab import CITab, build_model
from citab_cli.core.runtime.dataset import CohortData, Collator
from citab_cli.core.runtime.device import describe_device, model_layout, pick_device
from citab_cli.core.runtime.embedding import cohort_items, embed_subjects, reestimate_batchnorm
from citab_cli.core.runtime.pretrained import LoadedCheckpoint, load_checkpoint, prepare_cohorts
from citab_cli.core.runtime.run_config import PretrainConfig
from citab_cli.core.runtime.stopwatch import Stopwatch

__all__ = [
    "BASELINES",
    "FEATURES",
    "FEATURE_TITLES",
    "FitCache",
    "METHODS",
    "ProbeReport",
    "probe",
    "raw_table_features",
]

#: How the BatchNorm statistics of both networks are set before embedding a cohort:
#: re-estimated on the cohort's train split ("cohort"), or as stored ("stored": the pretrained
#: network's from pretraining, the random network's at their initial values).
BATCHNORM = ("cohort", "stored")
#: The feature sets each network's multimodal, tabular and image embeddings become.
EMBEDDED_AS = {
    "citab": ("citab", "citab_tabular", "citab_image"),
    "random": ("random_multimodal", "random_tabular", "random_image"),
}
#: Which subjects a probe scores: those with a scan (every feature set), those kept without
#: one (ingest --on-missing-image keep), or both; the last two read the table alone.
SUBJECTS = ("with-scan", "without-scan", "all")
#: The feature sets that read no scan: what a probe of subjects without one fits.
TABLE_FEATURES = ("citab_tabular", "random_tabular", "raw_table", "raw_table_gbdt",
                  "raw_table_catboost", "floor")  # fmt: skip


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
    y_test: np.ndarray | None = None  # (N,) class index of each scored subject
    classes: list[str] = field(default_factory=list)
    rows: np.ndarray | None = None  # (N,) cohort row of each scored subject
    design: str = "test split"  # or "cross-fitted over all N labelled subjects (k folds)"


def probe(
    project: Project,
    ckpt: str,
    cohorts: list[str] | None = None,
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0),
    seeds: int = 5,
    device: str = "auto",
    resamples: int = 10_000,
    message: Callable[[str], None] = lambda text: None,
    exclude_criteria: bool = False,
    train_on: str | None = None,
    test_on: list[str] | None = None,
    features: tuple[str, ...] | None = None,
    cross_fit: int = 0,
    batchnorm: str = "cohort",
    stopwatch: Stopwatch | None = None,
    fits: FitCache | None = None,
    workers: int = 1,
    subjects: str = "with-scan",
) -> list[ProbeReport]:
    """One report per evaluation: each cohort on itself, or `train_on` on itself and on each
    of `test_on`. `features` limits the feature sets fitted (default: every one; a study asks
    for the multimodal embedding alone where the baselines are fitted elsewhere).
    `cross_fit` k > 0 scores every labelled subject of each cohort k-fold instead of its test
    split (`scoring.Scoring.cross_fitted`); only for cohorts the checkpoint never saw.
    `batchnorm` (BATCHNORM) sets both networks' BatchNorm statistics before embedding.
    `stopwatch` is given the seconds of each part (PARTS); `fits` reuses heads fitted before
    on the same features, labels and subjects (a study's baselines, once per cohort);
    `workers` > 1 fits a feature set's label subsets and probe seeds in that many processes.
    `subjects` (SUBJECTS): who is scored (`_features_for`)."""
    _check_arguments(fractions, seeds, batchnorm, features, train_on, test_on)
    features = _features_for(subjects, features)
    watch = stopwatch if stopwatch is not None else Stopwatch()
    with watch.part(PARTS["load"]):
        loaded = load_checkpoint(project, ckpt)
        if train_on is not None:
            names = list(dict.fromkeys([train_on, *(test_on or [])]))
        else:
            names = cohorts or list(loaded.config.cohorts) or project.cohorts()
        data = _scored_cohorts(project, loaded, names, message, subjects)
    if loaded.without_criteria(exclude_criteria):
        data = [c.without_criteria() for c in data]
    if cross_fit:
        if train_on is not None:
            raise CitabError("--cross-fit scores each cohort on itself; drop --train-on/--test-on")
        seen = [c.name for c in data if loaded.seen(c.name)]
        if seen:
            raise CitabError(
                f"--cross-fit scores every labelled subject, so it needs cohorts the checkpoint "
                f"never saw; {', '.join(seen)} was pretrained on: probe its test split instead"
            )
    target = pick_device(device)
    message(f"embedding on {describe_device(target)}")
    with watch.part(PARTS["embed"]):
        networks = {"citab": model_layout(loaded.model(), target)}
        if features is None or any(f.startswith("random_") for f in features):
            networks["random"] = model_layout(random_twin(loaded.config), target)
        embedded = {c.name: _embeddings(loaded, c, networks, target, batchnorm) for c in data}
    pairs = [(data[0], c) for c in data] if train_on is not None else [(c, c) for c in data]
    settings = {
        "fractions": fractions,
        "seeds": seeds,
        "resamples": resamples,
        "exclude_criteria": exclude_criteria,
        "features": features,
        "cross_fit": cross_fit,
        "batchnorm": batchnorm,
        "fits": fits,
        "workers": workers,
        "subjects": subjects,
    }
    reports = []
    for train, test in pairs:
        what = train.name if train is test else f"{train.name} -> {test.name}"
        message(f"probing {what}")
        with watch.part(PARTS["features"]):
            latents = [oracle.scan_latent(project, c) for c in (train, test)]
            sides = probe_sides.sides(train, test, embedded, message, latents, not cross_fit)
        reports.append(_evaluate(project, loaded, sides, settings, message, watch))
    return reports


def _features_for(subjects: str, features: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The feature sets to fit for `subjects`: those that read no scan, for subjects without
    one."""
    if subjects not in SUBJECTS:
        raise CitabError(f"--subjects {subjects}: choose one of {', '.join(SUBJECTS)}")
    if subjects == "with-scan":
        return features
    return tuple(f for f in (features or FEATURES) if f in TABLE_FEATURES)


def _scored_cohorts(project: Project, loaded, names, message, subjects: str) -> list[CohortData]:
    """The cohorts to probe, with the subjects `subjects` asks for."""
    data = prepare_cohorts(project, loaded, names, message, "probe", subjects != "with-scan")
    if subjects == "without-scan":
        for cohort in data:
            if cohort.has_scan.all():
                raise CitabError(f"cohort '{cohort.name}' has no subject without a scan; probe "
                                 "it with --subjects with-scan")  # fmt: skip
        data = [c.subset(np.nonzero(~c.has_scan)[0]) for c in data]
    return data


def _check_arguments(fractions, seeds: int, batchnorm: str, features, train_on, test_on) -> None:
    """A CitabError for arguments no probe can run with."""
    check_fractions(fractions)
    if batchnorm not in BATCHNORM:
        raise CitabError(f"--batchnorm {batchnorm}: choose one of {', '.join(BATCHNORM)}")
    unknown = sorted(set(features or ()) - set(FEATURES))
    if unknown:
        raise CitabError(f"unknown feature set(s) {', '.join(unknown)}; choose from {FEATURES}")
    if seeds < 1:
        raise CitabError("--seeds must be at least 1")
    if (train_on is None) != (test_on is None):
        raise CitabError("--train-on and --test-on go together: --train-on A --test-on B,C")


def random_twin(config: PretrainConfig) -> CITab:
    """The network of `config` with random weights: the run's own initialisation, drawn from
    its seed exactly as pretraining drew it before the first step, so every pretraining seed
    meets a twin of its own."""
    torch.manual_seed(config.train.seed)
    return build_model(config.model).eval()


def _embeddings(
    loaded: LoadedCheckpoint, cohort: CohortData, networks: dict[str, CITab], device, batchnorm
) -> dict[str, np.ndarray]:
    """Frozen embeddings of every labelled subject, as (N, D) arrays in cohort row order
    (unlabelled rows are zeros and never read); with `batchnorm` "cohort", each network's
    BatchNorm statistics re-estimated on the cohort's train split first."""
    every = np.nonzero(np.array([label is not None for label in cohort.labels]))[0]
    collator = Collator.for_model([cohort], loaded.config.model)
    batch = loaded.config.train.batch_size
    calibration = cohort_items(np.nonzero((cohort.splits == "train") & cohort.has_scan)[0])
    sets = {}
    for name, network in networks.items():
        if batchnorm == "cohort":
            reestimate_batchnorm(network, collator, calibration, batch, device)
        got = embed_subjects(network, collator, cohort_items(every), batch, device)
        names = EMBEDDED_AS[name]
        sets.update(zip(names, (got["multimodal"], got["tabular"], got["image"]), strict=True))
    out = {}
    for name, x in sets.items():
        full = np.zeros((cohort.size, x.shape[1]), np.float32)
        full[every] = x
        out[name] = full
    return out


def _evaluate(
    project: Project,
    loaded: LoadedCheckpoint,
    sides: tuple[Side, Side, dict],
    settings: dict,
    message: Callable[[str], None],
    watch: Stopwatch,
) -> ProbeReport:
    train, test, seen = sides
    if settings["cross_fit"]:
        scoring = Scoring.cross_fitted(test.labels, settings["cross_fit"])
    else:
        scoring = Scoring.test_split(train.labels, test.labels)
    runs, chosen, folds = fit_all(train, test, scoring, settings, watch)
    note = describe_folds(folds)
    if note:
        message(note)
    y_test = test.labels.y[scoring.rows]
    with watch.part(PARTS["bootstrap"]):
        summary = _summaries(runs, y_test, train, scoring, settings)
        pairs = comparison_pairs(runs)
        comparisons = {
            key: with_shares(
                evaluation_report.compare(y_test, runs, pairs, key, settings["resamples"])
            )
            for key in (evaluation_report.fraction_key(f) for f in settings["fractions"])
        }
    document = _document(loaded, train, test, seen, settings, summary, comparisons, chosen, note)
    document["scored"] = {"design": scoring.design, "subjects": int(len(scoring.rows)),
                          "scans": settings["subjects"]}  # fmt: skip
    kind = "probe"
    transfer = train.cohort is not test.cohort
    name = f"{train.cohort.name}-on-{test.cohort.name}" if transfer else test.cohort.name
    folder = evaluation_report.evaluation_folder(project, kind, loaded.run, name)
    with watch.part(PARTS["write"]):
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
        scoring.rows,
        scoring.design,
    )


def _summaries(
    runs: dict, y_test: np.ndarray, train: Side, scoring: Scoring, settings: dict
) -> dict:
    """feature -> fraction -> metric summaries, with the size of the label subset."""
    summary: dict = {}
    for feature, per_fraction in runs.items():
        summary[feature] = {}
        for fraction in settings["fractions"]:
            key = evaluation_report.fraction_key(fraction)
            entry = evaluation_report.summarize(y_test, per_fraction[key], settings["resamples"])
            n_train = scoring.training_size(train.labels.y, fraction)
            summary[feature][key] = {**entry, "n_train": n_train}
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
        "batchnorm": settings["batchnorm"],
        "random_init_seed": loaded.config.train.seed,
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
        "created": evaluation_report.created(),
    }
