"""Fine-tuning's account of the subjects kept without a scan: the fine-tuned classifier reads
the multimodal embedding, which needs a scan, so it cannot score them; the table baselines,
fitted on the same label subsets, score the test subjects without a scan, and all the test
subjects together."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from citab_cli.core.evaluation import evaluation_report
from citab_cli.core.evaluation.labels import LabelLayout
from citab_cli.core.runtime.dataset import CohortData

#: The groups of test subjects the section scores, and whose rows they are.
GROUPS = ("without a scan", "with and without a scan")


def without_scan_section(
    full: CohortData,
    layout: LabelLayout,
    label_fraction: float,
    seeds: int,
    resamples: int,
    baselines,
) -> dict | None:
    """The table baselines on the test subjects without a scan, and on all test subjects: for
    each group its subjects and each baseline's summary; None when every subject has a scan.
    `full` is the cohort with every subject (criteria as the fine-tuning read them), `layout`
    the fine-tuning's (rows of the subjects with a scan), `baselines(cohort, layout, fraction,
    seeds)` fits the table baselines on `layout`'s label subsets and scores its test rows."""
    if full.has_scan.all():
        return None
    scanned = np.nonzero(full.has_scan)[0]  # scanned row i is row scanned[i] of `full`
    index = {c: k for k, c in enumerate(layout.classes)}
    y = np.array([index.get(label, -1) if label else -1 for label in full.labels])
    test = (full.splits == "test") & (y >= 0)
    out: dict = {"without_scan": int((~full.has_scan).sum()), "groups": {}}
    for group, rows in zip(GROUPS, (test & ~full.has_scan, test), strict=True):
        rows = np.nonzero(rows)[0]
        if not len(rows):
            continue
        shifted = replace(layout, y=y, rows={"train": scanned[layout.rows["train"]], "test": rows})
        runs = baselines(full, shifted, label_fraction, seeds)
        out["groups"][group] = {
            "subjects": int(len(rows)),
            "results": {
                kind: evaluation_report.summarize(y[rows], probabilities, resamples)
                for kind, probabilities in runs.items()
            },
        }
    return out


def markdown_lines(section: dict | None, titles: dict[str, str]) -> list[str]:
    """The report's paragraph and tables for the subjects without a scan (none if None)."""
    if not section:
        return []
    lines = [
        "## Subjects without a scan",
        "",
        f"The cohort keeps {section['without_scan']} subject(s) without a scan. The fine-tuned "
        "classifier reads the multimodal embedding, which needs a scan, so it scores none of "
        "them; the table baselines, fitted on the same label subsets, score them below.",
        "",
    ]
    for group, entry in section["groups"].items():
        rows = [(titles[kind], results) for kind, results in entry["results"].items()]
        lines += [f"Test subjects {group} ({entry['subjects']}):", ""]
        lines += evaluation_report.metrics_table(rows, "model")
        lines.append("")
    return lines
