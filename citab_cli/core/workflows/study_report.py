"""A study's report: per cohort, label fraction and checkpoint, the reference arm's multimodal
probe against each baseline, like for like against random weights, against every other arm and
regime; intervals over pretraining seeds then test subjects; Holm's adjustment per table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from citab_cli.core import figures
from citab_cli.core.data.project import Project
from citab_cli.core.evaluation import report
from citab_cli.core.evaluation.hierarchical import adjusted_verdicts, hierarchical_difference
from citab_cli.core.evaluation.metrics import KERNELS
from citab_cli.core.workflows.study_plan import PlannedRun
from citab_cli.core.workflows.study_scores import load_scores, plan_rows, score_path
from citab_cli.core.workflows.study_spec import StudySpec

#: The metrics of a study's tables (each table a family of its own for Holm).
METRICS = ("balanced_accuracy", "macro_auc")
#: Baselines that use no pretrained model, as the probe names them.
MODEL_FREE = (
    ("raw_table", "raw table (logistic regression)"),
    ("raw_table_gbdt", "raw table (gradient-boosted trees)"),
    ("raw_image", "raw table + image block means"),
    ("floor", "age + sex (+ education) floor"),
)
#: Like-for-like random-weights comparisons of the reference arm: (its feature, the twin's).
TWINS = (
    ("citab", "random_multimodal", "multimodal"),
    ("citab_tabular", "random_tabular", "tabular CLS"),
    ("citab_image", "random_image", "image pooled"),
)


def _scores(folder: Path, runs: list[PlannedRun], checkpoint: str, cohort: str, **where):
    """seed -> (y_test, probe runs) of the runs matching `where` scored on `cohort`."""
    out = {}
    for run in runs:
        if all(getattr(run, key) == value for key, value in where.items()):
            path = score_path(folder, run.name, checkpoint, cohort)
            if cohort in run.probe_on and path.is_file():
                out[run.seed] = load_scores(path)
    return out


def _feature(scored: dict, seeds: list[int], name: str, key: str) -> list[list[np.ndarray]]:
    return [scored[s][1][name][key] for s in seeds]


def _rows(spec: StudySpec, runs, folder, checkpoint: str, cohort: str, key: str) -> list[dict]:
    """The comparisons of one table: (label, method per seed, baseline per seed)."""
    ref = _scores(folder, runs, checkpoint, cohort, arm=spec.reference, regime="cross-cohort")
    seeds = sorted(ref)
    if not seeds:
        return []
    y = ref[seeds[0]][0]
    method = _feature(ref, seeds, "citab", key)
    rows = []
    first = ref[seeds[0]][1]
    for name, title in MODEL_FREE:
        if name in first:
            rows.append((f"reference − {title}", method, [first[name][key]]))
    for mine, twin, what in TWINS:
        label = f"like for like: reference {what} − random weights {what}"
        rows.append((label, _feature(ref, seeds, mine, key), _feature(ref, seeds, twin, key)))
    for arm in spec.arms_in("cross-cohort"):
        if arm != spec.reference:
            rows += _against(
                ref,
                _scores(folder, runs, checkpoint, cohort, arm=arm, regime="cross-cohort"),
                key,
                f"reference − {arm}",
            )
    if spec.reference in spec.arms_in("single-cohort"):
        single = _scores(
            folder, runs, checkpoint, cohort, arm=spec.reference, regime="single-cohort"
        )
        rows += _against(ref, single, key, "cross-cohort − single-cohort (same steps)")
    loo = _scores(folder, runs, checkpoint, cohort, arm=spec.reference, regime="leave-one-out")
    rows += _against(ref, loo, key, f"cross-cohort − {cohort} left out of pretraining")
    if loo and "finetuned" in next(iter(loo.values()))[1]:
        common = sorted(loo)
        rows.append(
            (
                "fine-tuned (held out) − from scratch, same steps",
                _feature(loo, common, "finetuned", key),
                _feature(loo, common, "scratch", key),
            )
        )
    return [{"label": label, "y": y, "method": m, "baseline": b} for label, m, b in rows]


def _against(ref: dict, other: dict, key: str, label: str) -> list:
    """The reference's multimodal probe against another run set's, paired by seed."""
    common = sorted(set(ref) & set(other))
    if not common:
        return []
    return [(label, _feature(ref, common, "citab", key), _feature(other, common, "citab", key))]


def _table(spec: StudySpec, rows: list[dict], metric: str) -> list[dict]:
    entries = []
    for row in rows:
        result = hierarchical_difference(
            row["y"], row["method"], row["baseline"], metric, spec.resamples
        )
        entries.append({"comparison": row["label"], "seeds": len(row["method"]), **result})
    for entry, adjusted in zip(entries, adjusted_verdicts(entries), strict=True):
        entry["verdict_unadjusted"] = entry.pop("verdict")
        entry["verdict"] = adjusted
    return entries


def _arm_summary(spec, runs, folder, checkpoint: str, cohort: str, key: str) -> list[dict]:
    """Mean ± sd over pretraining seeds of each arm's multimodal probe (balanced accuracy)."""
    kernel = KERNELS["balanced_accuracy"]
    out = []
    for regime in ("cross-cohort", "single-cohort", "leave-one-out"):
        for arm in spec.arms_in(regime):
            scored = _scores(folder, runs, checkpoint, cohort, arm=arm, regime=regime)
            if not scored:
                continue
            values = []
            for s in sorted(scored):
                y, features = scored[s]
                index = np.arange(len(y))[None]
                values.append(
                    float(np.mean([kernel(y, p, index)[0] for p in features["citab"][key]]))
                )
            out.append(
                {
                    "arm": arm,
                    "regime": regime,
                    "seeds": len(values),
                    "mean": float(np.mean(values)),
                    "sd": float(np.std(values)),
                    "per_seed": values,
                }
            )
    return out


def study_document(spec: StudySpec, runs: list[PlannedRun], folder: Path) -> dict:
    """report.json of a study: plan, per-arm summaries and every table."""
    tables = []
    for checkpoint in spec.checkpoints:
        for cohort in spec.scored:
            for fraction in spec.label_fractions:
                key = report.fraction_key(fraction)
                rows = _rows(spec, runs, folder, checkpoint, cohort, key)
                if not rows:
                    continue
                tables.append(
                    {
                        "cohort": cohort,
                        "fraction": fraction,
                        "checkpoint": checkpoint,
                        "arms": _arm_summary(spec, runs, folder, checkpoint, cohort, key),
                        **{metric: _table(spec, rows, metric) for metric in METRICS},
                    }
                )
    return {
        "kind": "study",
        "study": spec.model_dump(mode="json"),
        "plan": plan_rows(runs),
        "scored": sorted(p.name for p in (folder / "scores").glob("*.npz")),
        "tables": tables,
        "created": report.created(),
    }


def write_study_report(project: Project, spec, runs, folder: Path) -> Path | None:
    """reports/study-<study>-<time>/: report.json, report.md, forest plots, curves."""
    from citab_cli.core.workflows.study_markdown import markdown

    document = study_document(spec, runs, folder)
    if not document["tables"]:
        return None
    target = report.report_folder(project, "study", spec.study, "all")

    def extra(stage: Path) -> None:
        for table in document["tables"]:
            name = f"forest-{table['cohort']}-{report.fraction_key(table['fraction'])}"
            _forest(stage / f"{name}-{table['checkpoint']}.png", table)
        _curves(stage / "validation_curves.png", project, spec, runs)

    report.write_report(target, document, markdown(document), extra)
    return target


def _forest(path: Path, table: dict) -> None:
    """The table's comparisons with their intervals, one panel per metric."""
    key = report.fraction_key(table["fraction"])
    comparisons = {
        key: [
            {
                "method": e["comparison"],
                "baseline": "",
                **{
                    m: next(x for x in table[m] if x["comparison"] == e["comparison"])
                    for m in METRICS
                },
            }
            for e in table[METRICS[0]]
        ]
    }
    titles = {e["comparison"]: e["comparison"] for e in table[METRICS[0]]}
    report.forest_figure(path, comparisons, titles)


def _curves(path: Path, project: Project, spec: StudySpec, runs: list[PlannedRun]) -> None:
    """Validation loss and the validation multimodal probe of every cross-cohort run against
    steps, one colour per arm."""
    from citab_cli.core.training.records import read_metrics

    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    arms = spec.arms_in("cross-cohort")
    for run in runs:
        if run.regime != "cross-cohort":
            continue
        records = [
            r["validation"]
            for r in read_metrics(project.run_files(run.name).metrics)
            if "validation" in r
        ]
        colour = f"C{arms.index(run.arm) % 10}"
        first = run.seed == spec.seeds[0]
        for ax, key in zip(axes, ("val_loss", "val_probe_multimodal"), strict=True):
            points = [(r["step"], r[key]) for r in records if key in r]
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    color=colour,
                    alpha=0.8,
                    label=run.arm if first else None,
                )
    for ax, title in zip(
        axes, ("validation SSL loss", "validation probe (label-based)"), strict=True
    ):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    figures.save(fig, path, dpi=110)
