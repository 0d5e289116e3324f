"""The synthetic study behind docs/results.md. Prints JSON (and writes it with --out).

Synthesises ADNI-, NACC- and AIBL-like cohorts, ingests them, and compares test balanced
accuracy at two label fractions per cohort for: logistic regression on the raw table, the
randomly initialised architecture, single-cohort pretraining, cross-cohort pretraining, and
fine-tuning on a cohort held out of pretraining (with its from-scratch baseline).

    python benchmarks/cross_cohort_study.py --subjects 200 --shape 48 --epochs 15 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

COHORTS = ("adni", "nacc", "aibl")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--shape", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--fractions", default="0.1,1")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from citab_cli.core import headers, synth
    from citab_cli.core.data import ingest
    from citab_cli.core.data.project import Project
    from citab_cli.core.evaluation import finetune, probe
    from citab_cli.core.training import loop as pretraining
    from citab_cli.core.training.config import pretrain_preset

    fractions = tuple(float(f) for f in args.fractions.split(","))
    started = time.time()
    log = lambda text: print(f"[{time.time() - started:7.1f}s] {text}", file=sys.stderr)  # noqa: E731
    results: dict = {
        "settings": vars(args) | {"out": str(args.out), "preset": "small"},
        "cohorts": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        raw, root = Path(tmp) / "raw", Path(tmp) / "project"
        synth.generate(raw, list(COHORTS), args.subjects, args.shape, 0)
        results["ceiling_accuracy"] = json.loads((raw / "truth.json").read_text())["cohorts"]
        for name in COHORTS:
            plan = ingest.plan(
                raw / f"{name}.csv", raw / f"{name}_mri", root, shape=(args.shape,) * 3
            )
            ingest.execute(plan, workers=1)
        project = Project(root)
        headers.embed(project)
        log("data ready")

        def pretrain(run: str, cohorts: list[str]) -> str:
            config = pretrain_preset("small")
            config = config.model_copy(
                update={
                    "cohorts": cohorts,
                    "train": config.train.model_copy(update={"epochs": args.epochs}),
                }
            )
            pretraining.pretrain(project, config, run)
            log(f"pretrained {run}")
            return str(root / "runs" / run / "best.safetensors")

        cross = pretrain("cross", list(COHORTS))
        for name in COHORTS:
            single = pretrain(f"single-{name}", [name])
            heldout = pretrain(f"without-{name}", [c for c in COHORTS if c != name])
            rows: dict = {}
            (cross_report,) = probe.probe(project, cross, [name], fractions, args.seeds)
            (single_report,) = probe.probe(project, single, [name], fractions, args.seeds)
            for label, summary, feature in (
                ("raw-table logistic regression", cross_report.summary, "raw_table"),
                ("random init (probe)", cross_report.summary, "random_init"),
                ("single-cohort pretraining (probe)", single_report.summary, "citab"),
                ("cross-cohort pretraining (probe)", cross_report.summary, "citab"),
            ):
                rows[label] = {
                    f"{f:g}": summary[feature][f"{f:g}"]["balanced_accuracy"] for f in fractions
                }
            for strategy in ("frozen", "trainable"):
                tuned = {}
                scratch = {}
                for f in fractions:
                    report = finetune.finetune(
                        project,
                        heldout,
                        name,
                        strategy,
                        f,
                        args.seeds,
                        args.finetune_epochs,
                        resamples=300,
                    )
                    tuned[f"{f:g}"] = report.summary["finetuned"]["balanced_accuracy"]
                    scratch[f"{f:g}"] = report.summary["scratch"]["balanced_accuracy"]
                rows[f"held out of pretraining, fine-tuned ({strategy})"] = tuned
                if strategy == "trainable":
                    rows["from scratch, same budget"] = scratch
            results["cohorts"][name] = rows
            log(f"evaluated {name}")
    results["seconds"] = round(time.time() - started)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
