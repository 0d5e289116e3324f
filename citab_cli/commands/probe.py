"""`citab probe`: how much do frozen embeddings know? Linear probes with baselines."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Table

from citab_cli.commands.console import console, err_console
from citab_cli.commands.options import Device, ProjectOption, default, device_option, names
from citab_cli.core.errors import CitabError


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise CitabError(f"--label-fractions '{text}' must be numbers, e.g. 0.01,0.1,1") from None
    if not values:
        raise CitabError("--label-fractions is empty; give e.g. 0.01,0.1,1")
    return values


SubjectsOption = typer.Option(
    "with-scan",
    "--subjects",
    help="Which subjects to score: with-scan (every feature set), without-scan (subjects kept "
    "without a scan, on the feature sets that read only the table: tabular CLS, raw table, "
    "floor), or all (both, on those feature sets). " + default("with-scan"),
)


def probe(
    ckpt: str = typer.Option(
        ..., "--ckpt", help="Checkpoint path, or a file name in the newest run (best.safetensors)."
    ),
    cohorts: str = typer.Option(
        None, "--cohorts", help="Cohorts to probe. " + default("the checkpoint's pretraining ones")
    ),
    label_fractions: str = typer.Option(
        "0.01,0.1,1", "--label-fractions", help="Fractions of labelled train subjects."
    ),
    seeds: int = typer.Option(5, "--seeds", help="Label subsets drawn per fraction."),
    exclude_criteria: bool = typer.Option(
        False,
        "--exclude-criteria",
        help="Leave out the columns that define the diagnosis (schema criterion: true) from "
        "every feature set, the model's tokens and the baselines alike. " + default("off"),
    ),
    train_on: str = typer.Option(
        None,
        "--train-on",
        help="Cohort whose labelled train subjects fit the heads (with --test-on). "
        + default("each probed cohort fits its own"),
    ),
    test_on: str = typer.Option(
        None,
        "--test-on",
        help="Cohorts whose test subjects the --train-on heads are scored on, besides the "
        "training cohort's own. " + default("none"),
    ),
    cross_fit: int = typer.Option(
        0,
        "--cross-fit",
        help="Score every labelled subject of each cohort once, by heads fitted on the other "
        "folds of a stratified K-fold split (label fractions drawn inside each training fold), "
        "instead of the test split alone: K times the test predictions from the same subjects. "
        "Only for cohorts the checkpoint never saw. " + default("0: the test split"),
    ),
    batchnorm: str = typer.Option(
        "cohort",
        "--batchnorm",
        help="BatchNorm statistics of the pretrained and the random network before embedding: "
        "cohort (re-estimated on each cohort's train split, the same way for both) or stored. "
        + default("cohort"),
    ),
    resamples: int = typer.Option(
        10_000, "--resamples", help="Bootstrap resamples of every interval. " + default("10000")
    ),
    subjects: str = SubjectsOption,
    device: Device = device_option("the embedding"),
    project: Path = ProjectOption,
) -> None:
    """Linear probes of frozen embeddings per cohort, next to baselines, with paired comparisons."""
    from citab_cli.core.data.project import Project
    from citab_cli.core.evaluation import probe as core

    fractions = _fractions(label_fractions)
    reports = core.probe(
        Project(project),
        ckpt,
        names(cohorts),
        fractions,
        seeds,
        device.value,
        resamples=resamples,
        message=lambda text: err_console.print(f"[dim]{text}...[/]"),
        exclude_criteria=exclude_criteria,
        train_on=train_on,
        test_on=names(test_on),
        cross_fit=cross_fit,
        batchnorm=batchnorm,
        subjects=subjects,
    )
    for report in reports:
        _show(report, fractions, seeds, SHORT_TITLES)


#: The terminal's names of the feature sets, short enough for 100 columns (report.md has the
#: full ones).
SHORT_TITLES = {
    "citab": "CITab multimodal",
    "citab_tabular": "CITab tabular CLS",
    "citab_image": "CITab image",
    "citab_raw": "CITab + raw table",
    "random_multimodal": "random multimodal",
    "random_tabular": "random tabular CLS",
    "random_image": "random image",
    "random_raw": "random + raw table",
    "raw_table": "raw table, linear",
    "raw_table_gbdt": "raw table, trees",
    "raw_table_catboost": "raw table, CatBoost",
    "raw_image": "raw table + blocks",
    "floor": "age+sex(+edu) floor",
    "oracle": "oracle: table+truth",
}


def chance_of(report) -> float:
    """The balanced accuracy of one answer for everyone on a probe report's classes."""
    from citab_cli.core.evaluation.evaluation_report import chance_levels

    return chance_levels(len(report.classes))["balanced_accuracy"]


def score_cell(score: dict, chance: float) -> str:
    """'mean ± sd' of a balanced accuracy, marked ▼ (red) below chance."""
    from citab_cli.core.evaluation.evaluation_report import below_chance

    mark = " [red]▼[/]" if below_chance(score["mean"], chance) else ""
    return f"{score['mean']:.3f} ± {score['std']:.3f}{mark}"


def _headlines(report, fractions) -> None:
    """The verdict in one sentence per label fraction."""
    from citab_cli.core.evaluation import verdicts

    document = {"results": report.summary, "comparisons": report.comparisons,
                "classes": report.classes}  # fmt: skip
    for f in fractions:
        line = verdicts.headline(document, f"{f:g}")
        if line:
            console.print(f"[bold]{line}[/] {verdicts.multiplicity(document, f'{f:g}')}")


def _show(report, fractions, seeds: int, titles: dict[str, str]) -> None:
    from citab_cli.core.data.project import ReportFiles
    from citab_cli.core.evaluation.metrics import verdict_words

    where = (
        report.cohort
        if report.train_cohort == report.cohort
        else f"{report.train_cohort} -> {report.cohort}"
    )
    table = Table(
        title=f"{where}: balanced accuracy of {len(report.y_test)} subjects, {report.design} "
        f"(mean ± sd, {seeds} seeds)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("features")
    first = next(iter(report.summary.values()))
    for f in fractions:
        n = first[f"{f:g}"].get("n_train")
        table.add_column(f"{f:.0%} of labels" + (f" (n={n})" if n else ""), justify="right")
    chance = chance_of(report)
    for feature, results in report.summary.items():
        scores = (results[f"{f:g}"]["balanced_accuracy"] for f in fractions)
        table.add_row(titles[feature], *(score_cell(s, chance) for s in scores))
    table.add_row("chance (one answer for everyone)", *(f"{chance:.3f}" for _ in fractions))
    console.print(table)
    console.print(
        "  n: labelled train subjects the heads were fitted on (one label subset per seed); "
        '"raw table + blocks" adds the scan\'s 4x4x4 block means; ▼ below chance'
    )
    most = f"{max(fractions):g}"
    paired = Table(
        title=f"{where}: paired difference in balanced accuracy, {max(fractions):.0%} of labels",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for column in ("method", "baseline", "difference [95% CI]", "verdict"):
        paired.add_column(column)
    for entry in report.comparisons[most]:
        d = entry["balanced_accuracy"]
        paired.add_row(
            titles[entry["method"]],
            titles[entry["baseline"]],
            f"{d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]",
            verdict_words(d),
        )
    console.print(paired)
    _headlines(report, fractions)
    console.print(
        "  smallest detectable: the difference this comparison would detect 80% of the time "
        f"(two-sided 5%) on these {len(report.y_test)} subjects; anything smaller can hide "
        'behind "not detected"'
    )
    console.print(
        f"  report: {ReportFiles(report.folder).markdown} (every metric with 95% bootstrap "
        "intervals; paired differences in balanced accuracy and AUC; forest plot, confusion "
        "matrix, ROC, label-fraction curve)"
    )
