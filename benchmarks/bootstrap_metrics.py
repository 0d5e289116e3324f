"""How fast are the metrics inside a bootstrap loop? scikit-learn's against citab's numpy ones.

A probe report scores 7 feature sets x 3 label fractions x 5 seeds and bootstraps each method's
difference to each baseline over the test subjects. This times one paired comparison (two
methods, `--seeds` seeds, `--resamples` resamples of `--subjects` test subjects, 3 classes):
balanced accuracy and macro AUC per resample with scikit-learn inside scipy.stats.bootstrap, and
with citab's vectorised kernels (every resample at once), also inside scipy.stats.bootstrap.

    python benchmarks/bootstrap_metrics.py [--subjects 60] [--seeds 5] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    from scipy.stats import bootstrap
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from citab_cli.core.evaluation import metrics

    rng = np.random.default_rng(0)
    n, k = args.subjects, 3
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)
    runs = [
        [rng.dirichlet(np.ones(k), n) for _ in range(args.seeds)] for _ in range(2)
    ]  # method, baseline

    def with_sklearn(index):
        out = []
        for p in runs:
            values = []
            for q in p:
                yy, qq = y[index], q[index]
                if len(np.unique(yy)) < k:
                    values.append(np.nan)
                    continue
                values.append(
                    balanced_accuracy_score(yy, qq.argmax(1))
                    + roc_auc_score(yy, qq, multi_class="ovr", labels=list(range(k)))
                )
            out.append(np.nanmean(values))
        return out[0] - out[1]

    def vectorised(index, axis=-1):  # index (..., n): every resample at once
        out = []
        for p in runs:
            out.append(
                np.mean(
                    [
                        metrics.balanced_accuracy_many(y, q, index)
                        + metrics.macro_auc_many(y, q, index)
                        for q in p
                    ],
                    axis=0,
                )
            )
        return out[0] - out[1]

    timings = {}
    for name, statistic, vectorized in [
        ("sklearn_per_resample", with_sklearn, False),
        ("numpy_vectorised", vectorised, True),
    ]:
        start = time.perf_counter()
        bootstrap(
            (np.arange(n),),
            statistic,
            vectorized=vectorized,
            n_resamples=args.resamples,
            method="percentile",
            random_state=np.random.default_rng(1),
        )
        timings[name] = time.perf_counter() - start
    fastest = min(timings.values())
    print(
        json.dumps(
            {
                "subjects": n,
                "seeds": args.seeds,
                "resamples": args.resamples,
                "seconds": {k: round(v, 3) for k, v in timings.items()},
                "ratio_to_fastest": {k: round(v / fastest, 1) for k, v in timings.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
