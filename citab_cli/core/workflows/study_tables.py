"""A study's tables: which comparisons each holds, on which subjects, with what intervals.

Two kinds of table per scored cohort, label fraction and checkpoint:

- **test split**: the reference arm's cross-cohort multimodal probe on the cohort's test
  subjects, against the baselines that use no pretrained model, like for like against the
  same network with random weights, against every other arm and regime (their scores taken on
  the same subjects), and fine-tuning against training from scratch;
- **held out** (leave-one-out runs scored by cross-fitting): the reference arm pretrained
  without the cohort, scored on every labelled subject of it, against the same baselines.

Every comparison is a hierarchical paired bootstrap over pretraining seeds then subjects, with
its smallest detectable effect at 80% power. Holm's adjustment runs over a table's comparisons;
the oracle row (the gain available over the raw table, synthetic cohorts only) is a control,
outside the family.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citab_cli.core.evaluation.hierarchical import (
    adjusted_verdicts,
    hierarchical_difference,
    holm_detectable,
)
from citab_cli.core.evaluation.oracle import share_recovered
from citab_cli.core.workflows.study_plan import PlannedRun
from citab_cli.core.workflows.study_scores import Scores, load_scores, score_path
from citab_cli.core.workflows.study_spec import StudySpec

#: Baselines that use no pretrained model, as the probe names them.
MODEL_FREE = (
    ("raw_table", "raw table (logistic regression)"),
    ("raw_table_gbdt", "raw table (gradient-boosted trees)"),
    ("raw_table_catboost", "raw table (CatBoost)"),
    ("raw_image", "raw table + image block means"),
    ("floor", "age + sex (+ education) floor"),
)
#: Like-for-like random-weights comparisons: (the pretrained feature, its twin, in words).
TWINS = (
    ("citab", "random_multimodal", "multimodal"),
    ("citab_tabular", "random_tabular", "tabular CLS"),
    ("citab_image", "random_image", "image pooled"),
)
#: What a one-sided baseline objective trains: its embedding is compared with the reference's
#: same embedding too (objective -> (feature, in words)).
BASELINE_SIDES = {
    "scarf": ("citab_tabular", "tabular CLS"),
    "simclr": ("citab_image", "image pooled"),
}
#: What fine-tuning is compared with in a study: the same network and DAFT-style supervised
#: fusion, both from scratch.
FINETUNE_BASELINES = (
    ("scratch", "from scratch"),
    ("daft", "supervised fusion from scratch (DAFT-style)"),
)
#: The control row of a synthetic cohort: the oracle against the raw table.
ORACLE_ROW = "oracle (raw table + the scan's true severity) − raw table (logistic regression)"


@dataclass(frozen=True)
class Row:
    """One comparison: the method's and the baseline's probe runs per pretraining seed (a
    baseline without pretraining has one entry) on the same subjects `y`."""

    label: str
    y: np.ndarray
    method: list[list[np.ndarray]]
    baseline: list[list[np.ndarray]]
    family: bool = True  # in Holm's family (the oracle control row is not)
    against_raw: bool = False  # against the raw table: its share of the available gain


def scored(folder: Path, runs: list[PlannedRun], checkpoint: str, cohort: str, kind="probe",
           **where) -> dict[int, Scores]:  # fmt: skip
    """seed -> scores of the runs matching `where` (arm=..., regime=...) on `cohort`."""
    out = {}
    for run in runs:
        if cohort in run.probe_on and all(getattr(run, k) == v for k, v in where.items()):
            path = score_path(folder, run.name, checkpoint, cohort, kind)
            if path.is_file():
                out[run.seed] = load_scores(path)
    return out


def _feature(scores: dict[int, Scores], seeds: list[int], name: str, key: str) -> list:
    return [scores[s].runs[name][key] for s in seeds]


def _twins(mine: dict[int, Scores], twins: dict[int, Scores], key: str, who: str) -> list[Row]:
    """`who`'s embeddings against the random twins of the same seeds, on `who`'s subjects."""
    common = sorted(set(mine) & set(twins))
    if not common:
        return []
    subjects = mine[common[0]].rows
    aligned = {s: twins[s].on(subjects) for s in common}
    rows = []
    for own, twin, what in TWINS:
        if own in mine[common[0]].runs and twin in aligned[common[0]].runs:
            rows.append(
                Row(
                    f"like for like: {who} {what} − random weights {what}",
                    mine[common[0]].y,
                    _feature(mine, common, own, key),
                    _feature(aligned, common, twin, key),
                )
            )
    return rows


def _baselines(scores: dict[int, Scores], key: str, who: str) -> list[Row]:
    """`who`'s multimodal probe against the model-free baselines and its random twins, from
    one run set's scores (every feature set fitted)."""
    seeds = sorted(scores)
    first = scores[seeds[0]]
    y, method = first.y, _feature(scores, seeds, "citab", key)
    rows = [
        Row(f"{who} − {title}", y, method, [first.runs[name][key]], against_raw=name == "raw_table")
        for name, title in MODEL_FREE
        if name in first.runs
    ]
    return rows + _twins(scores, scores, key, who)


def _oracle(scores: dict[int, Scores], key: str) -> list[Row]:
    """The control row of a synthetic cohort (the oracle against the raw table), if any; it
    does not depend on pretraining, so the first seed's probes serve."""
    first = scores[min(scores)]
    if "oracle" not in first.runs:
        return []
    oracle, raw = [first.runs["oracle"][key]], [first.runs["raw_table"][key]]
    return [Row(ORACLE_ROW, first.y, oracle, raw, family=False)]


def _against(ref: dict[int, Scores], other: dict[int, Scores], key: str, label: str,
             feature: str = "citab") -> list[Row]:  # fmt: skip
    """The reference's probe of `feature` (the multimodal embedding unless said) against
    another run set's, paired by seed, on the reference's subjects (the other's scores taken on
    them)."""
    common = sorted(set(ref) & set(other))
    if not common or feature not in ref[common[0]].runs:
        return []
    rows = ref[common[0]].rows
    aligned = {s: other[s].on(rows) for s in common}
    method = _feature(ref, common, feature, key)
    return [Row(label, ref[common[0]].y, method, _feature(aligned, common, feature, key))]


def arm_side(spec: StudySpec, arm: str) -> tuple[str, str] | None:
    """The embedding an arm is also compared on besides the multimodal one, (feature, in
    words): the one a baseline objective trains, or the tabular CLS for an arm that differs in
    the subjects without a scan it pretrains on (they reach the tabular side alone)."""
    from citab_cli.core.workflows.study_plan import arm_config

    config, reference = arm_config(spec, arm), arm_config(spec, spec.reference)
    side = BASELINE_SIDES.get(config.model.loss.objective)
    if side is None and config.train.table_only != reference.train.table_only:
        side = BASELINE_SIDES["scarf"]
    return side


def _arm_rows(spec: StudySpec, arm: str, ref, other, key: str) -> list[Row]:
    """The reference against another arm: multimodal probes, and for a one-sided baseline
    objective the embedding it trains against the reference's same embedding (the tabular CLS
    too for an arm that differs in the subjects without a scan it pretrains on)."""

    rows = _against(ref, other, key, f"reference − {arm}")
    side = arm_side(spec, arm)
    if side is not None:
        feature, words = side
        rows += _against(ref, other, key, f"reference {words} − {arm} {words}", feature)
    return rows


def same_network(spec: StudySpec, arm: str) -> bool:
    """Whether `arm` builds the reference's network (it changes training only), so that a seed
    initialises both alike and the reference's random twin is the arm's twin too."""
    from citab_cli.core.workflows.study_plan import arm_config

    return arm_config(spec, arm).model == arm_config(spec, spec.reference).model


def test_split_rows(
    spec: StudySpec, runs: list[PlannedRun], folder: Path, checkpoint: str, cohort: str, key: str
) -> list[Row]:
    """The comparisons of the reference's cross-cohort runs on the cohort's test split."""
    ref = scored(folder, runs, checkpoint, cohort, arm=spec.reference, regime="cross-cohort")
    if not ref:
        return []
    rows = _baselines(ref, key, "reference")
    for arm in spec.arms_in("cross-cohort"):
        if arm != spec.reference:
            other = scored(folder, runs, checkpoint, cohort, arm=arm, regime="cross-cohort")
            rows += _arm_rows(spec, arm, ref, other, key)
            if same_network(spec, arm):  # the reference's twins are this arm's too
                rows += _twins(other, ref, key, arm)
    if spec.reference in spec.arms_in("single-cohort"):
        single = scored(folder, runs, checkpoint, cohort, arm=spec.reference,
                        regime="single-cohort")  # fmt: skip
        rows += _against(ref, single, key, "cross-cohort − single-cohort (same steps)")
    loo = scored(folder, runs, checkpoint, cohort, arm=spec.reference, regime="leave-one-out")
    rows += _against(ref, loo, key, f"cross-cohort − {cohort} left out of pretraining")
    tuned = scored(folder, runs, checkpoint, cohort, "finetune", arm=spec.reference,
                   regime="leave-one-out")  # fmt: skip
    if tuned:
        seeds = sorted(tuned)
        for baseline, words in FINETUNE_BASELINES:
            if baseline in tuned[seeds[0]].runs:  # scores kept before DAFT was a baseline lack it
                rows.append(
                    Row(
                        f"fine-tuned (held out) − {words}, same steps",
                        tuned[seeds[0]].y,
                        _feature(tuned, seeds, "finetuned", key),
                        _feature(tuned, seeds, baseline, key),
                    )
                )
    return rows + _oracle(ref, key)


def held_out_rows(
    spec: StudySpec, runs: list[PlannedRun], folder: Path, checkpoint: str, cohort: str, key: str
) -> list[Row]:
    """The comparisons of the reference's leave-one-out runs, cross-fitted over every labelled
    subject of the held-out cohort (none when the study scores held-out cohorts on their test
    split, or the runs fitted no baselines)."""
    if not spec.cross_fit:
        return []
    loo = scored(folder, runs, checkpoint, cohort, arm=spec.reference, regime="leave-one-out")
    if not loo or "raw_table" not in loo[min(loo)].runs:
        return []
    return _baselines(loo, key, "left out") + _oracle(loo, key)


def table(rows: list[Row], metric: str, resamples: int) -> list[dict]:
    """Each row's hierarchical paired comparison in `metric`: difference, interval, p, the
    smallest detectable effect (unadjusted and at Holm's first step), the verdict after Holm's
    adjustment over the family rows and before it, and the share of the available gain of a
    row against the raw table when the table's oracle row shows a gain (its interval above 0;
    a share of a gain that may be nothing is noise over noise)."""
    entries = []
    memo: dict = {}  # each probe run set's metric on the resamples, computed once per table
    for row in rows:
        result = hierarchical_difference(
            row.y, row.method, row.baseline, metric, resamples, memo=memo
        )
        entries.append(
            {"comparison": row.label, "seeds": len(row.method), "family": row.family, **result}
        )
    family = [e for e in entries if e["family"]]
    for entry, adjusted in zip(family, adjusted_verdicts(family), strict=True):
        entry["verdict_unadjusted"] = entry["verdict"]
        entry["verdict"] = adjusted
        entry["mde_holm"] = holm_detectable(entry["se"], len(family))
    for entry in entries:
        entry.setdefault("verdict_unadjusted", entry["verdict"])
        entry.setdefault("mde_holm", entry["mde"])
    oracle = next((e for e in entries if e["comparison"] == ORACLE_ROW), None)
    for entry, row in zip(entries, rows, strict=True):
        share = share_recovered(entry["difference"], oracle) if oracle and row.against_raw else None
        if share is not None:
            entry["share"] = share
    return entries


def arm_summary(per_run: list[tuple[str, str, dict[int, Scores]]], rows, key: str) -> list[dict]:
    """Mean ± sd over pretraining seeds of each (arm, regime)'s multimodal probe in balanced
    accuracy, on the subjects `rows`."""
    from citab_cli.core.evaluation.metrics import KERNELS

    kernel = KERNELS["balanced_accuracy"]
    out = []
    for arm, regime, scores in per_run:
        if not scores:
            continue
        values = []
        for s in sorted(scores):
            on = scores[s].on(rows)
            everyone = np.arange(len(on.y))[None]
            values.append(
                float(np.mean([kernel(on.y, p, everyone)[0] for p in on.runs["citab"][key]]))
            )
        out.append({"arm": arm, "regime": regime, "seeds": len(values),
                    "mean": float(np.mean(values)), "sd": float(np.std(values)),
                    "per_seed": values})  # fmt: skip
    return out


def forest_name(table: dict) -> str:
    """The file name of a table's forest plot in the study's report folder."""
    from citab_cli.core.evaluation.evaluation_report import fraction_key

    scope = "" if table.get("scope", "test split") == "test split" else "-held-out"
    fraction = fraction_key(table["fraction"])
    return f"forest-{table['cohort']}-{fraction}-{table['checkpoint']}{scope}.png"
