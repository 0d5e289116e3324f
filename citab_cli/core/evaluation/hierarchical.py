"""Intervals that include pretraining noise: a hierarchical paired bootstrap over pretraining
seeds, then test subjects, and Holm's adjustment of a table's verdicts.

One pretraining run is one draw: another seed can move a probe by 0.1. A comparison of a
pretrained method with a baseline (or with another arm) therefore resamples the pretraining
seeds as well as the test subjects: each bootstrap resample draws S seeds with replacement and N
test subjects with replacement, and takes the mean over the drawn seeds of the paired
difference on the drawn subjects (each seed's metric averaged over its probe runs, the label
subsets and probe seeds paired as in a single report). With one pretraining seed the subject
draws are those of `metrics.paired_difference`, so its interval is reproduced exactly.
"""

from __future__ import annotations

import warnings

import numpy as np

from citab_cli.core.evaluation.metrics import ALPHA, KERNELS, NOT_DETECTED, detectable, verdict
from citab_cli.core.hashing import arrays_sha256

#: Stream that separates the seed draws from the subject draws of the same bootstrap seed.
SEED_STREAM = 1


def _per_seed(name: str, y: np.ndarray, runs: list[np.ndarray], index: np.ndarray) -> np.ndarray:
    """Metric `name` of each row of `index` (R, N), averaged over the probe runs -> (R,)."""
    kernel = KERNELS[name]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an undefined metric stays NaN
        return np.nanmean(np.stack([kernel(y, p, index) for p in runs]), axis=0)


def hierarchical_difference(
    y: np.ndarray,
    method: list[list[np.ndarray]],
    baseline: list[list[np.ndarray]],
    name: str,
    resamples: int = 1000,
    seed: int = 0,
    memo: dict | None = None,
) -> dict:
    """method[s], baseline[s]: the probe runs (probabilities (N, K) on the same N test
    subjects) of pretraining seed s. A baseline that does not depend on pretraining (the raw
    table) has one entry, used with every seed. Returns the mean difference over seeds on all
    subjects, the 95% percentile interval, a two-sided bootstrap p-value and the verdict of the
    interval (before any multiplicity adjustment). `memo` (a dict kept by the caller) holds each
    probe run set's metric on the resamples, so a table whose rows share a method or a
    baseline computes it once (the same numbers: the resamples depend only on `seed`, the
    number of resamples and of subjects)."""
    seeds = len(method)
    if len(baseline) not in (1, seeds):
        raise ValueError(f"baseline has {len(baseline)} seeds; the method has {seeds}")
    paired = baseline if len(baseline) == seeds else baseline * seeds
    n = len(y)
    subjects = np.random.default_rng(seed).integers(0, n, (resamples, n))
    drawn = np.random.default_rng([seed, SEED_STREAM]).integers(0, seeds, (resamples, seeds))
    everyone = np.arange(n)[None]
    memo = {} if memo is None else memo

    def metric(runs: list[np.ndarray], index: np.ndarray) -> np.ndarray:
        key = (name, seed, index is everyone, index.shape, arrays_sha256(y, *runs))
        if key not in memo:
            memo[key] = _per_seed(name, y, runs, index)
        return memo[key]

    per_seed, estimate = [], []
    for runs, others in zip(method, paired, strict=True):
        per_seed.append(metric(runs, subjects) - metric(others, subjects))
        estimate.append(metric(runs, everyone)[0] - metric(others, everyone)[0])
    table = np.stack(per_seed)  # (S, R): seed s's difference on subject resample r
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = np.nanmean(table[drawn.T, np.arange(resamples)[None]], axis=0)  # (R,)
        point = float(np.nanmean(estimate))
    return {**_summary(point, values), "n": int(n)}


def _summary(point: float, values: np.ndarray) -> dict:
    """Estimate, 95% percentile interval, two-sided p, verdict, the bootstrap standard error
    and the smallest effect detectable at 80% power, from bootstrap values."""
    finite = values[~np.isnan(values)]
    if not len(finite):
        nan = float("nan")
        return {"difference": point, "ci95": [nan, nan], "p": nan, "verdict": "not estimable",
                "se": nan, "mde": nan}  # fmt: skip
    low, high = (float(v) for v in np.percentile(finite, [2.5, 97.5]))
    p = min(1.0, 2 * min(float(np.mean(finite <= 0)), float(np.mean(finite >= 0))))
    se = float(np.std(finite))
    return {"difference": point, "ci95": [low, high], "p": p, "verdict": verdict(low, high),
            "se": se, "mde": detectable(se)}  # fmt: skip


def holm(p_values: list[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down rejections of a family of tests: the i-th smallest p is compared with
    alpha / (m - i); once one fails, every larger p fails too. NaN is never rejected."""
    order = sorted(range(len(p_values)), key=lambda i: (np.isnan(p_values[i]), p_values[i]))
    rejected = [False] * len(p_values)
    m = len(p_values)
    for rank, i in enumerate(order):
        p = p_values[i]
        if np.isnan(p) or p > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


def adjusted_verdicts(entries: list[dict], alpha: float = ALPHA) -> list[str]:
    """The verdict of each comparison of one table after Holm's adjustment over the table:
    better or worse only when its test is rejected; the sign from its estimate."""
    rejected = holm([e["p"] for e in entries], alpha)
    out = []
    for entry, reject in zip(entries, rejected, strict=True):
        if not reject:
            out.append(NOT_DETECTED if entry["p"] == entry["p"] else "not estimable")
        else:
            out.append("better" if entry["difference"] > 0 else "worse")
    return out


def holm_detectable(se: float, family: int, alpha: float = ALPHA) -> float:
    """The smallest effect detectable at 80% power at Holm's first (strictest) step over a
    family of `family` tests: the two-sided level alpha / family."""
    return detectable(se, alpha / max(family, 1))
