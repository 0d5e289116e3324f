"""The synthetic study behind docs/results.md. Prints JSON (and writes it with --out, and the
tables of docs/results.md with --markdown).

Synthesises ADNI-, NACC- and AIBL-like cohorts, ingests them, and per cohort compares, on the
same test subjects, with the columns that define the diagnosis left out (`--exclude-criteria`):
linear probes of cross-cohort and single-cohort pretraining against the raw table, the random
architecture and the age + sex (+ education) floor, with paired-bootstrap differences; the same
probes with every column, for reference; fine-tuning on a cohort held out of pretraining against
training from scratch; and whether explanations rank the generator's drivers above its
non-drivers (truth file).

    python benchmarks/cross_cohort_study.py --subjects 200 --shape 48 --epochs 15 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COHORTS = ("adni", "nacc", "aibl")
TITLES = {
    "citab": "CITab probe (multimodal)",
    "citab_tabular": "CITab probe (tabular CLS)",
    "citab_image": "CITab probe (image)",
    "citab_raw": "CITab + raw table",
    "raw_table": "raw table",
    "random_init": "random weights",
    "floor": "age + sex (+ education)",
}


def _cell(entry: dict) -> str:
    return (
        f"{entry['mean']:.3f} ± {entry['std']:.3f} [{entry['ci95'][0]:.2f}, {entry['ci95'][1]:.2f}]"
    )


def _difference(entry: dict) -> str:
    d = entry["balanced_accuracy"]
    return f"{d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] {d['verdict']}"


def _driver_ranking(ranking: list[tuple[str, float]], columns: list[str], truth: dict) -> dict:
    """How an explanation's column ranking agrees with the generator's truth."""
    by_column = dict(zip(columns, [s for _, s in ranking], strict=True))
    drivers = [c for c in truth["drivers"] if c in by_column]
    others = [c for c in truth["non_drivers"] if c in by_column]
    pairs = [(by_column[d] > by_column[o]) + 0.5 * (by_column[d] == by_column[o])
             for d in drivers for o in others]  # fmt: skip
    order = sorted(by_column, key=lambda c: -by_column[c])
    return {
        "drivers": drivers,
        "non_drivers": others,
        "top": order[0],
        "driver_above_non_driver": float(np.mean(pairs)) if pairs else float("nan"),
        "drivers_in_top": sum(c in drivers for c in order[: len(drivers)]) / max(len(drivers), 1),
    }


def _probe_rows(report, fractions) -> dict:
    return {
        feature: {
            f"{f:g}": report.summary[feature][f"{f:g}"]["balanced_accuracy"] for f in fractions
        }
        for feature in report.summary
    }


def _cohort(args, project, name, runs, fractions, truth, log) -> dict:
    from citab_cli.core.evaluation import finetune, probe
    from citab_cli.core.explain import explanation as explain

    out: dict = {}
    (cross,) = probe.probe(project, runs["cross"], [name], fractions, args.seeds,
                           exclude_criteria=True)  # fmt: skip
    (single,) = probe.probe(project, runs[f"single-{name}"], [name], fractions, args.seeds,
                            exclude_criteria=True)  # fmt: skip
    (everything,) = probe.probe(project, runs["cross"], [name], fractions, args.seeds)
    out["probe"] = _probe_rows(cross, fractions)
    out["probe"]["single_cohort_citab"] = _probe_rows(single, fractions)["citab"]
    out["probe_with_criteria"] = _probe_rows(everything, fractions)
    out["paired"] = cross.comparisons
    out["paired_single"] = single.comparisons
    out["paired_with_criteria"] = everything.comparisons
    tuned: dict = {}
    for strategy in ("frozen", "trainable"):
        for f in fractions:
            report = finetune.finetune(project, runs[f"without-{name}"], name, strategy, f,
                                       args.seeds, args.finetune_epochs, resamples=300,
                                       exclude_criteria=True)  # fmt: skip
            tuned[f"{strategy}@{f:g}"] = {
                "results": {k: v["balanced_accuracy"] for k, v in report.summary.items()},
                "paired": report.comparisons,
            }
    out["finetune"] = tuned
    result = explain.explain(project, runs["cross"], name, "1", steps=16, exclude_criteria=True)
    document = json.loads((result.folder / "report.json").read_text())
    columns = [c["column"] for c in document["cohort_attributions"]["columns"]]
    out["explanation"] = _driver_ranking(result.ranking, columns, truth[name])
    log(f"evaluated {name}")
    return out


def _markdown(results: dict, fractions) -> str:
    lines = []
    for name, rows in results["cohorts"].items():
        ceiling = results["truth"][name]["ceiling_accuracy"]
        lines += [f"### {name.upper()} (ceiling accuracy {ceiling:.3f})", ""]
        lines += ["| method | " + " | ".join(f"{f:.0%} of labels" for f in fractions) + " |"]
        lines += ["|---" * (len(fractions) + 1) + "|"]
        probe_rows = dict(rows["probe"])
        for feature, cells in probe_rows.items():
            title = TITLES.get(feature, "single-cohort pretraining (probe)")
            lines.append(
                f"| {title} | " + " | ".join(_cell(cells[f"{f:g}"]) for f in fractions) + " |"
            )
        for key, entry in rows["finetune"].items():
            strategy, f = key.split("@")
            if f != f"{max(fractions):g}":
                continue
            empty = " |" * (len(fractions) - 1)
            for model, title in (
                ("finetuned", f"held out, fine-tuned ({strategy})"),
                ("scratch", f"from scratch, same budget (vs {strategy})"),
            ):
                cell = _cell(entry["results"][model])
                lines.append(f"| {title}, {float(f):.0%} of labels | {cell} |{empty}")
        lines += [
            "",
            f"Paired differences in balanced accuracy, {max(fractions):.0%} of labels:",
            "",
        ]
        lines += ["| comparison | difference [95% CI] verdict |", "|---|---|"]
        for entry in rows["paired"][f"{max(fractions):g}"]:
            lines.append(f"| {TITLES[entry['method']]} − {TITLES[entry['baseline']]} | "
                         f"{_difference(entry)} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--shape", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--fractions", default="0.1,1")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)

    from citab_cli.core.runtime.run_config import pretrain_preset
    from citab_cli.core.training import loop as pretraining
    from citab_cli.core.workflows.demo import synthetic_project

    fractions = tuple(float(f) for f in args.fractions.split(","))
    started = time.time()
    log = lambda text: print(f"[{time.time() - started:7.1f}s] {text}", file=sys.stderr)  # noqa: E731
    results: dict = {
        "settings": vars(args)
        | {"out": str(args.out), "markdown": str(args.markdown), "preset": "small"},  # fmt: skip
        "cohorts": {},
    }
    defaults = pretrain_preset("small")
    results["settings"]["objective"] = {
        "loss": defaults.model.loss.model_dump(),
        "value_init": defaults.model.tabular.value_init,
        "select": defaults.train.select,
    }
    with tempfile.TemporaryDirectory() as tmp:
        project = synthetic_project(Path(tmp), list(COHORTS), args.subjects, args.shape)
        results["truth"] = json.loads((Path(tmp) / "raw/truth.json").read_text())["cohorts"]
        log("data ready")

        def pretrain(run: str, cohorts: list[str]) -> str:
            config = pretrain_preset("small")
            train = config.train.model_copy(update={"epochs": args.epochs})
            pretraining.pretrain(project, config.model_copy(
                update={"cohorts": cohorts, "train": train}), run)  # fmt: skip
            log(f"pretrained {run}")
            return str(project.run_files(run).best)

        runs = {"cross": pretrain("cross", list(COHORTS))}
        for name in COHORTS:
            runs[f"single-{name}"] = pretrain(f"single-{name}", [name])
            runs[f"without-{name}"] = pretrain(f"without-{name}", [c for c in COHORTS if c != name])
        for name in COHORTS:
            results["cohorts"][name] = _cohort(args, project, name, runs, fractions,
                                               results["truth"], log)  # fmt: skip
    results["seconds"] = round(time.time() - started)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.markdown:
        args.markdown.write_text(_markdown(results, fractions))
    return results


if __name__ == "__main__":
    main()
