"""The heads of a probe: every feature set fitted at every label fraction and probe seed, each
kind of fit timed, and a cache that fits a study's baselines once per cohort."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from citab_cli.core.evaluation import linear, report, trees
from citab_cli.core.evaluation.features import METHODS, RANDOM_TWIN, TREE_FEATURES
from citab_cli.core.evaluation.scoring import Scoring
from citab_cli.core.runtime.stopwatch import Stopwatch

#: The parts of a probe its stopwatch times.
PARTS = {
    "load": "probes: reading the checkpoint and cohorts",
    "embed": "probes: embedding (pretrained and random networks)",
    "features": "probes: table features, image block means, oracle",
    "methods": "probes: fitting heads on the pretrained embeddings",
    "twins": "probes: fitting heads on the random twin's embeddings",
    "baselines": "probes: fitting the linear baselines (raw table, floor, oracle)",
    "trees": "probes: fitting gradient-boosted trees",
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
        reader = trees if feature in TREE_FEATURES else linear
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
        import hashlib

        digest = hashlib.sha256()
        for array in (x, y, x_test, scoring.rows, scoring.pool):
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
        layout = (reader.__name__, scoring.folds, settings["fractions"], settings["seeds"], classes)
        digest.update(repr(layout).encode())
        return digest.hexdigest()

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
    seed, fraction key -> C or setting per fit, folds used)."""
    runs: dict = {}
    chosen: dict = {}
    folds: list[int] = []
    for fraction in settings["fractions"]:
        key = report.fraction_key(fraction)
        runs[key], chosen[key] = [], []
        for seed in range(settings["seeds"]):
            scores = np.zeros((len(scoring.rows), classes))
            for subset, scored in scoring.fits(y, fraction, seed):
                fit = reader.fit_predict(x[subset], y[subset], x_test[scored], classes, seed)
                scores[scored] = fit.probabilities
                chosen[key].append(trees.setting_of(fit) if reader is trees else fit.c)
                folds.append(fit.folds)
            runs[key].append(scores)
    return runs, chosen, folds
