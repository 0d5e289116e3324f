"""A study's report.md, from its report.json document."""

from __future__ import annotations

from citab_cli.core.evaluation.metrics import verdict_words
from citab_cli.core.runtime.stopwatch import minutes
from citab_cli.core.workflows.study_tables import forest_name

METRIC_TITLES = {"balanced_accuracy": "balanced accuracy", "macro_auc": "macro AUC"}


def _interval(entry: dict) -> str:
    low, high = entry["ci95"]
    return f"{entry['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _share(entry: dict) -> str:
    share = entry.get("share")
    return "" if share is None or share != share else f"{share:.0%}"


def _header(document: dict) -> list[str]:
    spec = document["study"]
    regimes = ", ".join(
        f"{r} ({', '.join(spec['arms'] if a == 'all' else a)})" for r, a in spec["regimes"].items()
    )
    runs = len(document["plan"])
    held_out = (
        f" A held-out cohort is scored on every labelled subject, cross-fitted over "
        f"{spec['cross_fit']} folds (never seen in pretraining, so no subject is special)."
        if spec.get("cross_fit")
        else ""
    )
    return [
        f"# Study: {spec['study']}",
        "",
        *([spec["description"], ""] if spec["description"] else []),
        f"Cohorts {', '.join(spec['cohorts'])}; preset {spec['preset']}; arms "
        f"{', '.join(spec['arms'])} (reference: **{spec['reference']}**); pretraining seeds "
        f"{', '.join(str(s) for s in spec['seeds'])}; regimes: {regimes}. {runs} pretraining "
        f"runs, {len(document['scored'])} scored (run, checkpoint, cohort) sets. Criteria "
        f"{'excluded from pretraining and every probe' if spec['exclude_criteria'] else 'used'}."
        f"{held_out}",
        "",
        "Every cell: the mean over pretraining seeds of the paired difference in performance on "
        f"the same subjects (probes averaged over {spec['probe_seeds']} probe seeds and label "
        "subsets), with a 95% interval from a hierarchical bootstrap that resamples pretraining "
        f"seeds, then subjects ({spec['resamples']} resamples), and a two-sided bootstrap p. "
        "Verdicts are Holm-adjusted within each table (the family: every comparison of that "
        "table for that metric, the oracle row excepted); 'better' / 'worse' only when the "
        "adjusted test rejects. **Smallest detectable**: the true difference the comparison "
        "would detect 80% of the time — 2.8 bootstrap standard errors at a two-sided 5% level "
        "(unadjusted), and at Holm's first step (level 5% / family size); 'not detected' "
        "never means 'no difference' when the difference asked about is smaller than that.",
        "",
    ]


def _arm_lines(table: dict) -> list[str]:
    lines = [
        "| arm | regime | seeds | multimodal probe, balanced accuracy (mean ± sd over "
        "seeds) | per seed |",
        "|---|---|---|---|---|",
    ]
    for a in table["arms"]:
        per_seed = " / ".join(f"{v:.3f}" for v in a["per_seed"])
        lines.append(
            f"| {a['arm']} | {a['regime']} | {a['seeds']} | {a['mean']:.3f} ± "
            f"{a['sd']:.3f} | {per_seed} |"
        )
    return lines


def _notes(document: dict, table: dict) -> list[str]:
    notes = []
    if table.get("seeds", 2) < 2:
        notes.append(
            "One pretraining seed: the intervals hold the test subjects' noise only, not the "
            "seed-to-seed noise of pretraining (run ≥ 3 seeds for a claim)."
        )
    entries = table["balanced_accuracy"]
    if any("share" in e for e in entries):
        notes.append(
            "Share: (method − raw table) / (oracle − raw table), the part of the gain available "
            "over the raw table (what a probe reading the scan's true severity beside the table "
            "reaches) that the method recovered; point estimates."
        )
    return notes


def _scope_line(document: dict, table: dict) -> str:
    scope = table.get("scope", "test split")
    described = document.get("scopes", {}).get(scope, scope)
    classes = "/".join(str(c) for c in table.get("classes", []))
    counts = f" (per class {classes})" if classes else ""
    return f"Scored on {described}: **{table.get('subjects', '?')} subjects**{counts}."


def markdown(document: dict) -> str:
    """report.md: the header, then per cohort, label fraction, checkpoint and scope the arms'
    summaries and one table per metric."""
    lines = _header(document)
    for table in document["tables"]:
        scope = table.get("scope", "test split")
        lines += [
            f"## {table['cohort']}, {table['fraction']:.0%} of labels "
            f"({table['checkpoint']} checkpoint, {scope})",
            "",
            _scope_line(document, table),
            "",
            *_arm_lines(table),
            "",
        ]
        for metric, title in METRIC_TITLES.items():
            entries = table[metric]
            family = sum(e.get("family", True) for e in entries)
            lines += [
                f"Δ {title} (family of {family} for Holm):",
                "",
                "| comparison | seeds | Δ [95% CI] | share of the available gain | p | smallest "
                "detectable (80% power): unadjusted / Holm | verdict (Holm) | unadjusted |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for e in entries:
                holm = "control, not in the family" if not e.get("family", True) else (
                    verdict_words(e, "mde_holm")
                )  # fmt: skip
                lines.append(
                    f"| {e['comparison']} | {e['seeds']} | {_interval(e)} | {_share(e)} | "
                    f"{_p(e['p'])} | ±{e.get('mde', float('nan')):.3f} / "
                    f"±{e.get('mde_holm', float('nan')):.3f} | {holm} | "
                    f"{e['verdict_unadjusted']} |"
                )
            lines.append("")
        lines += [f"- {note}" for note in _notes(document, table)]
        lines += ["", f"![paired differences]({forest_name(table)})", ""]
    lines += ["![validation curves of the cross-cohort runs](validation_curves.png)", ""]
    lines += time_lines(document.get("time"))
    return "\n".join(lines)


def time_lines(time: dict | None) -> list[str]:
    """Where the study's time went, largest part first (absent in reports written before the
    study timed itself)."""
    if not time:
        return []
    lines = [
        "## Where the time went",
        "",
        f"{minutes(time['total_seconds'])} in all, summed over every invocation of the study "
        "for its runs' parts (a run finished by an earlier invocation counts once), and this "
        "report's bootstrap; writing its files and figures is not in it.",
        "",
        "| part | time | share |",
        "|---|---|---|",
    ]
    for row in time["parts"]:
        lines.append(f"| {row['part']} | {minutes(row['seconds'])} | {row['share']:.0%} |")
    return [*lines, ""]
