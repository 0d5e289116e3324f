"""The heads of a probe: every feature set fitted at every label fraction and probe seed, each
kind of fit timed, and a cache that fits a study's baselines once per cohort."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from citab_cli.core.evaluation import evaluation_report, trees
from citab_cli.core.evaluation.features import METHODS, RANDOM_TWIN, TREE_FEATURES, reader_of
from citab_cli.core.evaluation.scoring import Scoring
from citab_cli.core.hashing import arrays_sha256
from citab_cli.core.runtime.stopwatch import Stopwatch

#: The parts of a probe its stopwatch times.
PARTS = {
    "load": "probes: reading the checkpoint and cohorts",
    "embed": "probes: embedding (pretrained and random networks)",
    "features": "probes: table features, image block means, oracle",
    "methods": "probes: fitting heads on the pretrained embeddings",
    "twins": "probes: fitting heads on the random twin's embeddings",
    "baselines": "probes: fitting the linear baselines (raw table, floor, oracle)",
    "trees": "probes: fitting gradient-boosted trees (and CatBoost)",
    "bootstrap": "probes: bootstrapping intervals",
    "write": "probes: writing reports and figures",
}


def fit_part(feature: str) -> str:
    """The stopwatch part a feature set's probe heads are timed under."""
    if feature in TREE_FEATURES:
        return PARTS["trees"]
    if feature in METHODS:
        return PARTS["methods"]
    return PARTS["twins"] if feature in RANDOM_TWIN.values() else PARTS["baselines"]


def fit_all(
    train, test, scoring: Scoring, settings: dict, watch: Stopwatch
) -> tuple[dict, dict, list[int]]:
    """Heads on every feature set of the train side (probe.Side), scoring the test side:
    feature -> fraction -> probabilities of the scored subjects per seed; C chosen per fit;
    folds used. Each feature set's fits are timed under its part of PARTS."""
    classes = len(train.labels.classes)
    y = train.labels.y
    runs: dict = {}
    chosen: dict = {}
    folds: list[int] = []
    for feature in train.features:
        if settings.get("features") and feature not in settings["features"]:
            continue
        x, x_test = train.features[feature], test.features[feature][scoring.rows]
        reader = reader_of(feature)
        with watch.part(fit_part(feature)):
            runs[feature], chosen_here, folds_here = _fitted(
                reader, x, y, x_test, scoring, settings, classes
            )
        chosen.update({f"{feature}@{key}": c for key, c in chosen_here.items()})
        folds.extend(folds_here)
    return runs, chosen, folds


class FitCache:
    """Probe heads already fitted in this process, by everything they were fitted on. A
    study's baselines (the raw table, its trees, the floor, the oracle) read the same features,
    labels and subjects for every pretraining seed and arm, so each is fitted once per cohort;
    a fit is deterministic, so a reused one is the one a new fit would give."""

    def __init__(self) -> None:
        self._found: dict[str, tuple] = {}
        self.reused = 0

    @staticmethod
    def key(reader, x, y, x_test, scoring: Scoring, settings: dict, classes: int) -> str:
        """What a feature set's heads depend on, as one digest."""
        layout = (reader.__name__, scoring.folds, settings["fractions"], settings["seeds"], classes)
        return arrays_sha256(x, y, x_test, scoring.rows, scoring.pool, extra=repr(layout))

    def fitted(self, key: str, fit: Callable[[], tuple]) -> tuple:
        """The kept result of `key`, or `fit()` kept under it."""
        if key in self._found:
            self.reused += 1
        else:
            self._found[key] = fit()
        return self._found[key]


def _fitted(reader, x, y, x_test, scoring: Scoring, settings: dict, classes: int):
    """_fit_one, or the same fit kept by the settings' FitCache."""
    cache = settings.get("fits")

    def fit() -> tuple:
        return _fit_one(reader, x, y, x_test, scoring, settings, classes)

    if cache is None:
        return fit()
    return cache.fitted(FitCache.key(reader, x, y, x_test, scoring, settings, classes), fit)


def _fit_one(reader, x, y, x_test, scoring: Scoring, settings: dict, classes: int):
    """One feature set's heads at every fraction and seed: (fraction key -> probabilities per
    seed, fraction key -> C or setting per fit, folds used). With `settings["workers"]` > 1
    the (fraction, seed) fits run in that many processes; each fit is deterministic, so the
    result is the same."""
    tasks = [(f, seed) for f in settings["fractions"] for seed in range(settings["seeds"])]
    args = (reader.__name__, x, y, x_test, scoring, classes)
    workers = min(int(settings.get("workers") or 1), len(tasks))
    if workers > 1:
        from joblib import Parallel, delayed

        done = Parallel(n_jobs=workers)(delayed(_fit_seed)(*args, f, s) for f, s in tasks)
    else:
        done = [_fit_seed(*args, f, s) for f, s in tasks]
    runs: dict = {}
    chosen: dict = {}
    folds: list[int] = []
    for (fraction, _), (scores, settings_chosen, folds_used) in zip(tasks, done, strict=True):
        key = evaluation_report.fraction_key(fraction)
        runs.setdefault(key, []).append(scores)
        chosen.setdefault(key, []).extend(settings_chosen)
        folds.extend(folds_used)
    return runs, chosen, folds


def _fit_seed(reader_name: str, x, y, x_test, scoring: Scoring, classes: int, fraction, seed):
    """One probe seed's heads at one fraction (a fit per fold when cross-fitted): the scored
    subjects' probabilities, the C or tree setting of each fit, and the folds each used."""
    import importlib

    reader = importlib.import_module(reader_name)
    scores = np.zeros((len(scoring.rows), classes))
    chosen, folds = [], []
    for subset, scored in scoring.fits(y, fraction, seed):
        fit = reader.fit_predict(x[subset], y[subset], x_test[scored], classes, seed)
        scores[scored] = fit.probabilities
        chosen.append(trees.setting_of(fit) if reader is trees else fit.c)
        folds.append(fit.folds)
    return scores, chosen, folds
