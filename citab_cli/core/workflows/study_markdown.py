"""A study's report.md, from its report.json document."""

from __future__ import annotations

from citab_cli.core.evaluation.report import fraction_key

METRIC_TITLES = {"balanced_accuracy": "balanced accuracy", "macro_auc": "macro AUC"}


def _interval(entry: dict) -> str:
    low, high = entry["ci95"]
    return f"{entry['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _header(document: dict) -> list[str]:
    spec = document["study"]
    regimes = ", ".join(
        f"{r} ({', '.join(spec['arms'] if a == 'all' else a)})" for r, a in spec["regimes"].items()
    )
    runs = len(document["plan"])
    return [
        f"# Study: {spec['study']}",
        "",
        *([spec["description"], ""] if spec["description"] else []),
        f"Cohorts {', '.join(spec['cohorts'])}; preset {spec['preset']}; arms "
        f"{', '.join(spec['arms'])} (reference: **{spec['reference']}**); pretraining seeds "
        f"{', '.join(str(s) for s in spec['seeds'])}; regimes: {regimes}. {runs} pretraining "
        f"runs, {len(document['scored'])} scored (run, checkpoint, cohort) sets. Criteria "
        f"{'excluded from pretraining and every probe' if spec['exclude_criteria'] else 'used'}.",
        "",
        "Every cell: the mean over pretraining seeds of the paired difference in test "
        f"performance (probes averaged over {spec['probe_seeds']} probe seeds and label "
        "subsets), with a 95% interval from a hierarchical bootstrap that resamples pretraining "
        f"seeds, then test subjects ({spec['resamples']} resamples), and a two-sided bootstrap "
        "p. Verdicts are Holm-adjusted within each table (the family: every row of that table "
        "for that metric); 'better' / 'worse' only when the adjusted test rejects.",
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


def markdown(document: dict) -> str:
    """report.md: the header, then per cohort, label fraction and checkpoint the arms'
    summaries and one table per metric."""
    lines = _header(document)
    for table in document["tables"]:
        lines += [
            f"## {table['cohort']}, {table['fraction']:.0%} of labels "
            f"({table['checkpoint']} checkpoint)",
            "",
            *_arm_lines(table),
            "",
        ]
        for metric, title in METRIC_TITLES.items():
            entries = table[metric]
            lines += [
                f"Δ {title} (family of {len(entries)} for Holm):",
                "",
                "| comparison | seeds | Δ [95% CI] | p | verdict (Holm) | unadjusted |",
                "|---|---|---|---|---|---|",
            ]
            for e in entries:
                lines.append(
                    f"| {e['comparison']} | {e['seeds']} | {_interval(e)} | {_p(e['p'])} | "
                    f"{e['verdict']} | {e['verdict_unadjusted']} |"
                )
            lines.append("")
        name = f"forest-{table['cohort']}-{fraction_key(table['fraction'])}"
        lines += [f"![paired differences]({name}-{table['checkpoint']}.png)", ""]
    lines += ["![validation curves of the cross-cohort runs](validation_curves.png)", ""]
    return "\n".join(lines)
