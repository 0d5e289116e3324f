"""A study's report: per cohort, label fraction and checkpoint, the reference arm's multimodal
probe against each baseline, like for like against random weights, against every other arm and
regime; intervals over pretraining seeds then test subjects; Holm's adjustment per table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from citab_cli.core import figures
from citab_cli.core.data.project import Project, StudyFiles
from citab_cli.core.evaluation import evaluation_report
from citab_cli.core.runtime.stopwatch import Stopwatch
from citab_cli.core.workflows import study_tables as tables
from citab_cli.core.workflows.study_plan import PlannedRun
from citab_cli.core.workflows.study_scores import plan_rows
from citab_cli.core.workflows.study_spec import StudySpec

#: The metrics of a study's tables (each table a family of its own for Holm).
METRICS = ("balanced_accuracy", "macro_auc")
#: Each kind of table: its key and how its subjects are described.
SCOPES = {
    "test split": "the cohort's labelled test subjects",
    "held out": "every labelled subject of the cohort, cross-fitted; the cohort was left out "
    "of pretraining",
}


def _summaries(spec: StudySpec, runs, folder, checkpoint: str, cohort: str, rows, key: str):
    """Every arm and regime's multimodal probe on the subjects `rows`."""
    per_run = [
        (arm, regime, tables.scored(folder, runs, checkpoint, cohort, arm=arm, regime=regime))
        for regime in ("cross-cohort", "single-cohort", "leave-one-out")
        for arm in spec.arms_in(regime)
    ]
    return tables.arm_summary(per_run, rows, key)


def _entry(spec: StudySpec, scope: str, cohort, fraction, checkpoint, rows: list, arms) -> dict:
    seeds = max(len(r.method) for r in rows)
    return {
        "cohort": cohort,
        "fraction": fraction,
        "checkpoint": checkpoint,
        "scope": scope,
        "subjects": int(len(rows[0].y)),
        "classes": np.bincount(rows[0].y).tolist(),
        "seeds": seeds,
        "arms": arms,
        **{metric: tables.table(rows, metric, spec.resamples) for metric in METRICS},
    }


def study_document(spec: StudySpec, runs: list[PlannedRun], folder: Path) -> dict:
    """report.json of a study: plan, per-arm summaries and every table."""
    found = []
    for checkpoint in spec.checkpoints:
        for cohort in spec.scored:
            for fraction in spec.label_fractions:
                key = evaluation_report.fraction_key(fraction)
                where = (folder, checkpoint, cohort, key)
                rows = tables.test_split_rows(spec, runs, *where)
                if rows:
                    ref = tables.scored(folder, runs, checkpoint, cohort, arm=spec.reference,
                                        regime="cross-cohort")  # fmt: skip
                    subjects = ref[min(ref)].rows
                    arms = _summaries(spec, runs, folder, checkpoint, cohort, subjects, key)
                    found.append(
                        _entry(spec, "test split", cohort, fraction, checkpoint, rows, arms)
                    )
                held = tables.held_out_rows(spec, runs, *where)
                if held:
                    loo = tables.scored(folder, runs, checkpoint, cohort, arm=spec.reference,
                                        regime="leave-one-out")  # fmt: skip
                    arms = tables.arm_summary(
                        [(spec.reference, "leave-one-out", loo)], loo[min(loo)].rows, key
                    )
                    found.append(_entry(spec, "held out", cohort, fraction, checkpoint, held, arms))
    return {
        "kind": "study",
        "study": spec.model_dump(mode="json"),
        "plan": plan_rows(runs),
        "scored": sorted(p.name for p in StudyFiles(folder).scores.glob("*.npz")),
        "scopes": SCOPES,
        "tables": found,
        "created": evaluation_report.created(),
    }


#: The parts of writing a study's report its stopwatch times.
REPORT_PARTS = (
    "study report: bootstrapping its tables",
    "study report: writing it and its figures",
)


def write_study_report(
    project: Project, spec, runs, folder: Path, watch: Stopwatch | None = None
) -> Path | None:
    """reports/study-<study>-<time>/: report.json, report.md, forest plots, curves; with
    `watch`, the report says where the study's time went (its own writing excepted)."""
    from citab_cli.core.workflows.study_markdown import markdown

    watch = watch if watch is not None else Stopwatch()
    with watch.part(REPORT_PARTS[0]):
        document = study_document(spec, runs, folder)
    if not document["tables"]:
        return None
    document["time"] = {"total_seconds": round(watch.total, 1), "parts": watch.rows()}
    target = evaluation_report.evaluation_folder(project, "study", spec.study, "all")

    def extra(stage: Path) -> None:
        for table in document["tables"]:
            _forest(stage / tables.forest_name(table), table)
        _curves(stage / "validation_curves.png", project, spec, runs)

    with watch.part(REPORT_PARTS[1]):
        evaluation_report.write_evaluation_report(target, document, markdown(document), extra)
    return target


def _forest(path: Path, table: dict) -> None:
    """The table's comparisons with their intervals, one panel per metric."""
    key = evaluation_report.fraction_key(table["fraction"])
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
    scope = table.get("scope", "test split")
    subjects = f"{table.get('subjects', 'the')} {'test' if scope == 'test split' else 'held-out'}"
    evaluation_report.forest_figure(path, comparisons, titles, "mde_holm", f"{subjects} subjects")


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
