"""How well could image-table matching (ITM) do on the synthetic cohorts? Prints JSON.

The synthetic scans show a subject mostly through the ventricles and the CSF around them, which
grow with the image-visible severity plus about 0.3 per decade of age (see
`citab_cli/core/synth/anatomy.py`). This script gives an ideal image encoder that one number
exactly, and an ideal table encoder the best linear prediction of it from the table's severity
and age, then trains a classifier to tell true pairs from negatives drawn inside batches of
`--batch` subjects, the way pretraining draws them: uniformly, or in proportion to
exp(similarity / t) as hard negatives are (smaller t: harder). Its balanced accuracy and its
AUC (how often a true pair scores above a negative) on held-out pairs are the most an ITM head
could reach when it reads only that signal.

    python benchmarks/itm_ceiling.py --pairs 160000
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

#: How much one decade of age adds to what the ventricles and CSF show, relative to severity
#: (anatomy.py: expansion 0.14 severity + 0.05 ageing, CSF spread severity + 0.3 ageing).
AGE_WEIGHT_PER_DECADE = 0.33
TEMPERATURES = (None, 1.0, 0.3, 0.1)


def _negatives(
    rng: np.random.Generator, image: np.ndarray, table: np.ndarray, t: float | None
) -> np.ndarray:
    """For each image of each batch (rows of (batches, B)), the index of a table not its own."""
    batches, b = image.shape
    similarity = -((image[:, :, None] - table[:, None, :]) ** 2)
    if t is None:
        weights = np.ones_like(similarity)
    else:
        weights = np.exp((similarity - similarity.max(-1, keepdims=True)) / t)
    own = np.arange(b)
    weights[:, own, own] = 0.0
    cumulative = np.cumsum(weights / weights.sum(-1, keepdims=True), -1)
    draws = rng.random((batches, b, 1))
    return np.minimum((cumulative < draws).sum(-1), b - 1)


def ceiling(signal: float, pairs: int, batch: int, seed: int) -> dict[str, dict[str, float]]:
    """{negatives: {"balanced_accuracy": ..., "auc": ...}} of the ideal reader."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from citab_cli.core.synth.cohorts import COHORTS
    from citab_cli.core.synth.latent import sample

    spec = COHORTS["adni"]
    rng = np.random.default_rng(seed)
    n = batch * (pairs // batch)
    lat = sample(rng, n, spec.prevalence, spec.age_mean, spec.education_mean, signal)
    seen = lat.severity_image + AGE_WEIGHT_PER_DECADE * (lat.age - 70.0) / 10.0
    table = np.c_[lat.severity_tabular, lat.age]
    predicted = LinearRegression().fit(table, seen).predict(table)
    image, table_side = seen.reshape(-1, batch), predicted.reshape(-1, batch)
    out = {}
    for t in TEMPERATURES:
        picked = np.take_along_axis(table_side, _negatives(rng, image, table_side, t), 1)
        x = np.r_[np.c_[image.ravel(), table_side.ravel()], np.c_[image.ravel(), picked.ravel()]]
        y = np.r_[np.ones(n), np.zeros(n)]
        fit = rng.random(2 * n) < 0.5
        head = HistGradientBoostingClassifier(max_iter=200, random_state=seed)
        head.fit(x[fit], y[fit])
        name = "uniform" if t is None else f"hard, t={t:g}"
        out[name] = {
            "balanced_accuracy": round(
                float(balanced_accuracy_score(y[~fit], head.predict(x[~fit]))), 3
            ),
            "auc": round(float(roc_auc_score(y[~fit], head.predict_proba(x[~fit])[:, 1])), 3),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=160_000, help="true pairs simulated")
    parser.add_argument("--batch", type=int, default=16, help="subjects per batch (small: 16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = {
        "batch": args.batch,
        "pairs": args.pairs,
        "ceiling": {
            f"image_signal {signal:g}": ceiling(signal, args.pairs, args.batch, args.seed)
            for signal in (0.3, 1.0)
        },
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return result


if __name__ == "__main__":
    main()
