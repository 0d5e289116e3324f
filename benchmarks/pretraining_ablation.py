"""What pretraining keeps of the table: the ablation behind the pretraining part of
docs/results.md. Prints JSON (and writes it with --out, the figure with --figure, the tables with
--markdown).

Synthetic ADNI-, NACC- and AIBL-like cohorts whose scans show only part of what the table knows
(`--image-signal`), the `small` model, one run per objective: ITC alone, ITC + ITM, + MTR (from
the masked cell's own token, and through the CLS), + a momentum queue, and the released
behaviour (value tokens that LayerNorm flattens, no MTR). Every epoch: validation probes of the
tabular CLS, the image and the multimodal embedding (label-based, for this study), matching
accuracy and retrieval. At the end: linear probes of the last checkpoint against the raw table,
with paired differences.

    python benchmarks/pretraining_ablation.py --subjects 120 --shape 32 --epochs 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

COHORTS = ("adni", "nacc", "aibl")
#: name -> (tabular overrides, loss overrides); every objective spelled out, so the table keeps
#: its meaning whatever the defaults are.
_OFF = {"mtr_weight": 0.0, "queue_size": 0, "itm_hardness": 1.0, "itc_same_cohort": False,
        "itm_same_cohort": False}  # fmt: skip
_MTR = {**_OFF, "mtr_weight": 1.0, "mtr_source": "cls"}
_SPREAD = {"value_init": "spread"}
CONFIGS = {
    "released (flat value tokens, ITC+ITM)": ({"value_init": "identity"}, _OFF),
    "ITC": (_SPREAD, {**_OFF, "itm_weight": 0.0}),
    "ITC+ITM": (_SPREAD, _OFF),
    "ITC+ITM+MTR (cell token)": (_SPREAD, {**_MTR, "mtr_source": "cell"}),
    "ITC+ITM+MTR (through CLS)": (_SPREAD, _MTR),
    "ITC+ITM+MTR+queue": (_SPREAD, {**_MTR, "queue_size": 128}),
    "ITC+ITM (uniform negatives)+MTR": (_SPREAD, {**_MTR, "itm_hardness": 0.0}),
    # hard ITM negatives follow the masked ITC logits, so they stay in the cohort too
    "ITC+ITM within cohorts+MTR": (_SPREAD, {**_MTR, "itc_same_cohort": True}),
    # how hard the ITM negatives are, ITC within cohorts (1 is the row above)
    **{
        f"ITC+ITM within cohorts+MTR (ITM hardness {h:g})": (
            _SPREAD,
            {**_MTR, "itc_same_cohort": True, "itm_hardness": h},
        )
        for h in (0.3, 0.1, 0.0)
    },  # fmt: skip
}
CURVES = ("val_probe_tabular", "val_probe_image", "val_probe_multimodal", "val_itm_accuracy",
          "val_itm_auc", "val_itm", "val_recall_at_5", "val_loss")  # fmt: skip
#: Post-hoc matching AUC: other subjects paired with each val subject, and draws of the
#: hardest negatives.
MATCH_NEGATIVES, MATCH_DRAWS = 40, 5


def _config(name: str, epochs: int, cohorts: list[str]):
    from citab_cli.core.runtime.run_config import pretrain_preset

    base = pretrain_preset("small")
    tabular, loss = CONFIGS[name]
    model = base.model.model_copy(
        update={
            "tabular": base.model.tabular.model_copy(update=tabular),
            "loss": base.model.loss.model_copy(update=loss),
        }
    )
    train = base.train.model_copy(update={"epochs": epochs, "validate_every": 1})
    return base.model_copy(update={"cohorts": cohorts, "model": model, "train": train})


def _curves(files) -> dict:
    from citab_cli.core.training.records import read_metrics

    validations = [x["validation"] for x in read_metrics(files.metrics) if "validation" in x]
    return {key: [(v["step"], v.get(key)) for v in validations] for key in CURVES}


def _figure(path: Path, results: dict) -> None:
    from citab_cli.core.figures import pyplot

    plt = pyplot()
    titles = ["tabular CLS probe", "image probe", "multimodal probe", "matching accuracy",
              "matching AUC", "validation ITM loss", "retrieval recall@5",
              "validation loss"]  # fmt: skip
    fig, axes = plt.subplots(2, 4, figsize=(17, 7), layout="constrained")
    for ax, key, title in zip(axes.flat, CURVES, titles, strict=True):
        for n, (name, entry) in enumerate(results["runs"].items()):
            points = [(s, v) for s, v in entry["curves"].get(key, []) if v is not None]
            if points:
                ax.plot(*zip(*points, strict=True), color=f"C{n}", label=name, marker=".")
        if key.startswith("val_probe"):
            raw = results["raw_table_val_probe"]
            ax.axhline(raw, color="black", linestyle=":", label="raw table (val)")
        ax.set_title(title + (" (label-based)" if key.startswith("val_probe") else ""), fontsize=9)
        ax.set_xlabel("step")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Validation during pretraining (scans show {results['image_signal']:.0%} of "
                 "the severity)")  # fmt: skip
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _raw_val_probe(project, names) -> float:
    """The raw table's val balanced accuracy with the validation probe's recipe."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from citab_cli.core import headers
    from citab_cli.core.evaluation.features import raw_table_features
    from citab_cli.core.runtime.dataset import load_cohort

    cache = headers.load_cache(project, project.load_settings().header_encoder)
    scores = []
    for name in names:
        cohort = load_cohort(project, name, cache)
        x, labels = raw_table_features(cohort), np.array([lab or "" for lab in cohort.labels])
        train = (cohort.splits == "train") & (labels != "")
        val = (cohort.splits == "val") & (labels != "")
        head = LogisticRegression(max_iter=2000, class_weight="balanced")
        probe = make_pipeline(StandardScaler(), head)
        probe.fit(x[train], labels[train])
        scores.append(balanced_accuracy_score(labels[val], probe.predict(x[val])))
    return float(np.mean(scores))


def _probe(project, files, seeds: int) -> dict:
    from citab_cli.core.evaluation import probe

    out = {}
    for report in probe.probe(project, str(files.last), list(COHORTS),
                              (0.1, 1.0), seeds, resamples=500):  # fmt: skip
        out[report.cohort] = {
            "balanced_accuracy": {
                f: {k: v[f]["balanced_accuracy"]["mean"] for k, v in report.summary.items()}
                for f in ("0.1", "1")
            },  # fmt: skip
            "paired": [c for c in report.comparisons["1"] if c["baseline"] == "raw_table"],
        }
    return out


def _matching(project, files) -> dict:
    """The last model's matching AUC on the val subjects, against the same negatives whatever
    the run trained with: other subjects of the cohort at random (the validation yardstick,
    MATCH_NEGATIVES per subject), and the hardest (drawn by the ITC softmax, hardness 1, in
    batches of one cohort), the mean over MATCH_DRAWS draws."""
    import numpy as np
    import torch

    from citab_cli.core.model.objective import pretraining_loss
    from citab_cli.core.runtime.dataset import Collator, subjects_in
    from citab_cli.core.runtime.pretrained import load_checkpoint, prepare_cohorts
    from citab_cli.core.training.validation import encode_cohort, matching_auc

    loaded = load_checkpoint(project, str(files.last))
    data = prepare_cohorts(project, loaded, list(COHORTS), lambda text: None, "probe")
    model, collator = loaded.model(), Collator.for_model(data, loaded.config.model)
    size, val = loaded.config.train.batch_size, subjects_in(data, {"val"})
    cpu = torch.device("cpu")
    encoded = [encode_cohort(model, collator, val[val[:, 0] == c], size, cpu)
               for c in range(len(data))]  # fmt: skip
    uniform = matching_auc(model, encoded, size, cpu, 0, negatives=MATCH_NEGATIVES)
    loss = model.config.loss.model_copy(update={"itm_hardness": 1.0})
    model.config = model.config.model_copy(update={"loss": loss})
    hardest = []
    for draw in range(MATCH_DRAWS):
        generator = torch.Generator().manual_seed(draw)
        for cohort in range(len(data)):
            items = val[val[:, 0] == cohort]
            for chunk in (items[s : s + size] for s in range(0, len(items), size)):
                if len(chunk) < 4:
                    continue
                with torch.no_grad():
                    images = torch.from_numpy(collator.images(chunk))
                    cohorts = torch.as_tensor(chunk[:, 0])
                    scores = pretraining_loss(
                        model, images, collator.table(chunk), cohorts, generator
                    )
                hardest.append(float(scores["itm_auc"]))
    return {"uniform": round(uniform, 3), "hardest": round(float(np.mean(hardest)), 3)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=120)
    parser.add_argument("--shape", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-signal", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default=None, help="comma-separated config names")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args(argv)

    from citab_cli.core.training import loop
    from citab_cli.core.workflows.demo import synthetic_project

    started = time.time()
    log = lambda text: print(f"[{time.time() - started:7.1f}s] {text}", file=sys.stderr)  # noqa: E731
    names = args.only.split(",") if args.only else list(CONFIGS)
    results: dict = {"settings": {k: str(v) for k, v in vars(args).items()},
                     "image_signal": args.image_signal, "runs": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        project = synthetic_project(Path(tmp), list(COHORTS), args.subjects, args.shape,
                                    image_signal=args.image_signal)  # fmt: skip
        results["raw_table_val_probe"] = _raw_val_probe(project, COHORTS)
        log("data ready")
        for i, name in enumerate(names):
            run = f"run{i}"
            loop.pretrain(project, _config(name, args.epochs, list(COHORTS)), run)
            files = project.run_files(run)
            results["runs"][name] = {"curves": _curves(files),
                                     "probe": _probe(project, files, args.seeds)}  # fmt: skip
            if CONFIGS[name][1].get("itm_weight", 1.0) > 0:
                results["runs"][name]["matching_auc"] = _matching(project, files)
            log(f"done {name}")
    results["seconds"] = round(time.time() - started)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.figure:
        _figure(args.figure, results)
    return results


if __name__ == "__main__":
    main()
