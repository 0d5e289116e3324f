"""What a study can detect, known before it runs: a rule of thumb for the smallest difference in
balanced accuracy a paired comparison on a cohort's scored subjects detects at 80% power.

Balanced accuracy is the mean of the K classes' recalls. Two methods scored on the same n_k
subjects of class k differ in recall by (b - c) / n_k, where b and c count the subjects only one
of them gets right; its variance is about d / n_k, with d the share of subjects on which the two
disagree. So the paired difference in balanced accuracy has a standard error of about
sqrt(d * sum_k 1 / n_k) / K, and the smallest effect detectable at 80% power (two-sided 5%) is
2.80 times that. With K balanced classes this is 2.80 sqrt(d / n).

d is an assumption: 0.11, the value at which the rule reproduces the bootstrap standard errors
of the first confirmation study (docs/results.md, Appendix B: probes averaged over 3 probe seeds
and 3 pretraining seeds, 23-24 test subjects per cohort). Probes that disagree more, a single
seed, or the seed-to-seed noise of pretraining make the real figure larger: the study report
states the measured one next to every comparison.
"""

from __future__ import annotations

import csv
import math

from citab_cli.core.data.project import SUBJECTS_FILE, Project
from citab_cli.core.evaluation.hierarchical import holm_detectable
from citab_cli.core.evaluation.metrics import detectable
from citab_cli.core.workflows.study_spec import StudySpec

#: The assumed share of subjects on which two paired probes disagree (see the module text).
DISAGREEMENT = 0.11


def standard_error(class_counts: list[int], disagreement: float = DISAGREEMENT) -> float:
    """The rule of thumb's standard error of a paired difference in balanced accuracy."""
    counts = [n for n in class_counts if n > 0]
    if not counts:
        return float("nan")
    return math.sqrt(disagreement * sum(1 / n for n in counts)) / len(counts)


def expected_detectable(class_counts: list[int], family: int = 1) -> tuple[float, float]:
    """(unadjusted, at Holm's first step over `family` comparisons) smallest detectable
    difference in balanced accuracy for subjects with these class counts."""
    se = standard_error(class_counts)
    return detectable(se), holm_detectable(se, family)


def subjects_needed(effect: float, disagreement: float = DISAGREEMENT) -> int:
    """Scored subjects (balanced classes) at which the rule's smallest detectable effect
    (unadjusted) falls to `effect`."""
    return math.ceil(disagreement * (detectable(1.0) / effect) ** 2)


def family_size(spec: StudySpec) -> int:
    """Comparisons in a study's test-split table: the model-free baselines (CatBoost's when it
    is installed), three random twins, every other cross-cohort arm (with the embedding it
    trains when that is not the multimodal one, and its three twins when it builds the
    reference's network), the other regimes the reference runs in, and fine-tuning against
    its two from-scratch baselines."""
    from citab_cli.core.evaluation import catboost_trees
    from citab_cli.core.workflows.study_tables import arm_side, same_network

    others = [a for a in spec.arms_in("cross-cohort") if a != spec.reference]
    rows = 4 + catboost_trees.available() + 3 + len(others)
    rows += sum(arm_side(spec, a) is not None for a in others)
    rows += 3 * sum(same_network(spec, a) for a in others)
    rows += spec.reference in spec.arms_in("single-cohort")
    rows += spec.reference in spec.arms_in("leave-one-out")
    rows += 2 * (spec.finetune and spec.reference in spec.arms_in("leave-one-out"))
    return rows


def power_rows(spec: StudySpec, project: Project) -> list[dict]:
    """Per scored cohort and table the study will have: the subjects scored and the rule of
    thumb's smallest detectable effect."""
    out = []
    held_out = spec.cross_fit and spec.reference in spec.arms_in("leave-one-out")
    for cohort in spec.scored:
        scopes = [("test split", ("test",), family_size(spec))]
        if held_out:
            scopes.append(("held out, cross-fitted", ("train", "val", "test"), 7))
        for scope, splits, family in scopes:
            counts = class_counts(project, cohort, splits)
            plain, holm = expected_detectable(counts, family)
            out.append({"cohort": cohort, "scope": scope, "subjects": sum(counts),
                        "classes": counts, "mde": plain, "mde_holm": holm,
                        "family": family})  # fmt: skip
    return out


def class_counts(project: Project, cohort: str, splits: tuple[str, ...]) -> list[int]:
    """Labelled subjects with a scan (the ones a probe scores) of each class, in the cohort's
    class order, in `splits`."""
    classes = list(project.manifest(cohort)["classes"])
    counts = dict.fromkeys(classes, 0)
    with open(project.cohort_file(cohort, SUBJECTS_FILE), newline="") as handle:
        for row in csv.DictReader(handle):
            if row["split"] in splits and row["label"] in counts and row["image"]:
                counts[row["label"]] += 1
    return [counts[c] for c in classes]
