"""Do header texts find their counterparts? The header-matching benchmark.

Columns of ADNI, NACC and AIBL that measure the same thing (the concept map of
shared/reference/cohort-variables.md), plus columns that have no counterpart (body mass index,
body weight, blood pressure), each described twice: in the shared wording of citab's shipped
schemas ("ours"), and as a second author would write it without looking ("independent", in the
terse style of data dictionaries). For each way of turning a column into text (the description
only; the column name and the description; the description with its unit and levels), every
column looks for its nearest header in each other cohort. Reported: how often that is its true
counterpart, the cosine of true pairs, the margin of the true counterpart over the runner-up,
and how close columns without a counterpart come to a false one.

    python benchmarks/header_matching.py [--model PATH] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

#: concept -> cohort -> (column, our description, an independent description, unit, levels)
CONCEPTS: dict[str, dict[str, tuple]] = {
    "age": {
        "adni": (
            "AGE",
            "Age of the participant in years at the visit",
            "Age at baseline",
            "years",
            None,
        ),
        "nacc": (
            "NACCAGE",
            "Age of the participant in years at the visit",
            "Subject's age at this visit",
            "years",
            None,
        ),
        "aibl": (
            "AGE",
            "Age of the participant in years at the visit",
            "Age computed from birth year",
            "years",
            None,
        ),
    },
    "sex": {
        "adni": (
            "PTGENDER",
            "Sex of the participant",
            "Participant gender",
            None,
            ("male", "female"),
        ),
        "nacc": ("SEX", "Sex of the participant", "Subject's sex", None, ("male", "female")),
        "aibl": ("PTGENDER", "Sex of the participant", "Gender", None, ("male", "female")),
    },
    "education": {
        "adni": (
            "PTEDUCAT",
            "Years of formal education completed",
            "Education (years)",
            "years",
            None,
        ),
        "nacc": (
            "EDUC",
            "Years of formal education completed",
            "Years of schooling",
            "years",
            None,
        ),
    },
    "apoe": {
        "adni": (
            "APOE4",
            "How many APOE e4 alleles the participant carries",
            "Number of APOE4 alleles",
            None,
            None,
        ),
        "nacc": (
            "NACCNE4S",
            "How many APOE e4 alleles the participant carries",
            "Count of e4 alleles in the APOE genotype",
            None,
            None,
        ),
    },
    "mmse": {
        "adni": (
            "MMSE",
            "Mini-Mental State Examination total score",
            "MMSE total score",
            "points",
            None,
        ),
        "nacc": (
            "NACCMMSE",
            "Mini-Mental State Examination total score",
            "Total score on the MMSE, 0 to 30",
            "points",
            None,
        ),
        "aibl": (
            "MMSCORE",
            "Mini-Mental State Examination total score",
            "MMSE score",
            "points",
            None,
        ),
    },
    "moca": {
        "adni": ("MOCA", "Montreal Cognitive Assessment total score", "MoCA total", "points", None),
        "nacc": (
            "MOCATOTS",
            "Montreal Cognitive Assessment total score",
            "Uncorrected MoCA total score",
            "points",
            None,
        ),
    },
    "cdr_global": {
        "nacc": ("CDRGLOB", "Clinical Dementia Rating global score", "Global CDR", "points", None),
        "aibl": (
            "CDGLOBAL",
            "Clinical Dementia Rating global score",
            "CDR global rating (0, 0.5, 1, 2, 3)",
            "points",
            None,
        ),
    },
    "cdr_sb": {
        "adni": ("CDRSB", "Clinical Dementia Rating sum of boxes", "CDR-SB", "points", None),
        "nacc": (
            "CDRSUM",
            "Clinical Dementia Rating sum of boxes",
            "Sum of the six CDR box scores",
            "points",
            None,
        ),
    },
    "story_delayed": {
        "adni": (
            "LDELTOTAL",
            "Story recall, delayed, units remembered",
            "Logical Memory II delayed recall",
            "story units",
            None,
        ),
        "aibl": (
            "LDELTOTAL",
            "Story recall, delayed, units remembered",
            "Delayed paragraph recall total",
            "story units",
            None,
        ),
    },
    "trails_b": {
        "adni": (
            "TRABSCOR",
            "Trail Making Part B completion time",
            "Trails B time to complete",
            "seconds",
            None,
        ),
        "nacc": (
            "TRAILB",
            "Trail Making Part B completion time",
            "Trail Making Test part B, seconds to finish",
            "seconds",
            None,
        ),
    },
    "gds": {
        "adni": (
            "GDTOTAL",
            "Geriatric Depression Scale short-form total",
            "GDS total score",
            "points",
            None,
        ),
        "nacc": (
            "NACCGDS",
            "Geriatric Depression Scale short-form total",
            "Total GDS score (15 items)",
            "points",
            None,
        ),
    },
    "faq": {
        "adni": (
            "FAQ",
            "Functional Activities Questionnaire total score",
            "FAQ total (instrumental activities of daily living)",
            "points",
            None,
        ),
        "nacc": (
            "NACCFAQ",
            "Functional Activities Questionnaire total score",
            "Sum of the ten FAQ items",
            "points",
            None,
        ),
    },
    "csf_abeta": {
        "adni": ("ABETA", "CSF amyloid-beta 1-42 concentration", "CSF Abeta42", "pg/mL", None),
        "nacc": (
            "CSFABETA",
            "CSF amyloid-beta 1-42 concentration",
            "Cerebrospinal fluid amyloid beta (1-42)",
            "pg/mL",
            None,
        ),
    },
    "hippocampus": {
        "adni": (
            "Hippocampus",
            "Volume of both hippocampi",
            "Hippocampal volume (FreeSurfer)",
            "mm3",
            None,
        ),
        "nacc": ("HIPPOVOL", "Volume of both hippocampi", "Total hippocampus volume", "cm3", None),
    },
}
#: Columns without a counterpart in the other cohorts: their best match is a false one.
UNPARTNERED: dict[str, tuple] = {
    "nacc": ("NACCBMI", "Body mass index, weight relative to height squared",
             "BMI computed from height and weight", "kg/m2", None),
    "adni": ("VSWEIGHT", "Body weight of the participant", "Weight at the vitals exam", "kg",
             None),
    "aibl": ("BPSYS", "Systolic blood pressure", "Seated systolic BP", "mmHg", None),
}  # fmt: skip
MODES = ("description", "name + description", "description + unit/levels")
WORDINGS = {"ours": 1, "independent": 2}


def text_of(entry: tuple, wording: str, mode: str) -> str:
    name, ours, independent, unit, levels = entry
    description = ours if wording == "ours" else independent
    if mode == "name + description":
        return f"{name}: {description}"
    if mode == "description + unit/levels":
        text = f"{description} ({unit})" if unit else description
        return f"{text}: {', '.join(levels)}" if levels else text
    return description


def columns(concepts: dict, unpartnered: dict) -> list[tuple[str, str, str | None, tuple]]:
    """(cohort, column, concept or None, entry) for every column of the table."""
    out = [(c, e[0], concept, e) for concept, per in concepts.items() for c, e in per.items()]
    out += [(c, e[0], None, e) for c, e in unpartnered.items()]
    return out


def evaluate(concepts: dict, unpartnered: dict, encode, modes=MODES) -> dict:
    """Matching quality per wording and mode; `encode(texts) -> (N, E)` unit vectors."""
    from citab_cli.core.headers import best_matches

    table = columns(concepts, unpartnered)
    concept_of = {(c, col): concept for c, col, concept, _ in table}
    results: dict = {}
    for wording in WORDINGS:
        for mode in modes:
            texts = {(c, col): text_of(e, wording, mode) for c, col, _, e in table}
            unique = list(dict.fromkeys(texts.values()))
            vectors = dict(zip(unique, encode(unique), strict=True))
            matches = best_matches(texts, vectors)
            true = [m for m in matches if _has_partner(concepts, m)]
            correct = [m for m in true if concept_of[(m.other_cohort, m.best)] ==
                       concept_of[(m.cohort, m.column)]]  # fmt: skip
            partner_cosines = [
                float(vectors[texts[(m.cohort, m.column)]] @ vectors[texts[(m.other_cohort,
                      _partner(concepts, concept_of[(m.cohort, m.column)], m.other_cohort))]])
                for m in true
            ]  # fmt: skip
            lonely = [m for m in matches if concept_of[(m.cohort, m.column)] is None]
            results[f"{wording} / {mode}"] = {
                "pairs": len(true),
                "top1_accuracy": len(correct) / max(len(true), 1),
                "true_pair_cosine": [
                    round(min(partner_cosines), 3),
                    round(max(partner_cosines), 3),
                ],
                "margin_when_right": round(float(np.mean([m.margin for m in correct])), 3)
                if correct
                else None,
                "missed": sorted(
                    f"{m.cohort}:{m.column}->{m.other_cohort}:{m.best}"
                    for m in true
                    if m not in correct
                ),  # fmt: skip
                "unpartnered_best_cosine": round(max(m.cosine for m in lonely), 3)
                if lonely
                else None,
                "unpartnered_worst": max(lonely, key=lambda m: m.cosine).__dict__
                if lonely
                else None,
            }
    return results


def _has_partner(concepts: dict, match) -> bool:
    for per in concepts.values():
        if match.cohort in per and per[match.cohort][0] == match.column:
            return match.other_cohort in per
    return False


def _partner(concepts: dict, concept: str, cohort: str) -> str:
    return concepts[concept][cohort][0]


def sentence_encoder(model: Path | None = None):
    from citab_cli.core.headers import load_encoder

    encoder = load_encoder(model)

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(encoder.encode(texts, normalize_embeddings=True, batch_size=64,
                                         show_progress_bar=False), dtype=np.float32)  # fmt: skip

    return encode


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    results = evaluate(CONCEPTS, UNPARTNERED, sentence_encoder(args.model))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
