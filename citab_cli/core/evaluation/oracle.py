"""The oracle of a synthetic cohort: what a probe reaches when it reads the severity the scan
carries straight from the generator, beside the raw table.

`citab synth` knows every subject's latent severity and the part of it the scan shows
(`severity_image`); ingest keeps them (cohorts/<cohort>/truth.csv). A probe on the raw table plus
that one number is a reference for what an image pathway can add to the table, so (oracle - raw
table) is the gain available to pretraining, and (method - raw table) / (oracle - raw table) the
share a method recovered. It is not a strict ceiling: the oracle is itself a linear probe fitted
on few subjects, and a method can exceed it.
"""

from __future__ import annotations

import csv

import numpy as np

from citab_cli.core.data.project import TRUTH_FILE, Project
from citab_cli.core.runtime.dataset import CohortData

#: The latent the oracle reads: the severity the generator put into the scan.
ORACLE_LATENT = "severity_image"


def scan_latent(project: Project, cohort: CohortData) -> np.ndarray | None:
    """(N,) the severity each subject's scan carries, in cohort row order; None when the cohort
    has no synthetic truth (it did not come from `citab synth`) or it misses a subject."""
    path = project.cohort_file(cohort.name, TRUTH_FILE)
    if not path.is_file():
        return None
    with open(path, newline="") as handle:
        values = {row["subject"]: row.get(ORACLE_LATENT, "") for row in csv.DictReader(handle)}
    try:
        return np.array([float(values[s]) for s in cohort.subjects], np.float32)
    except (KeyError, ValueError):
        return None


def oracle_features(raw_table: np.ndarray, latent: np.ndarray) -> np.ndarray:
    """(N, F + 1): the raw table's features with the scan's latent severity as one more."""
    return np.concatenate([raw_table, latent[:, None]], 1).astype(np.float32)


def share_recovered(gain: float, oracle: dict) -> float | None:
    """gain / (oracle - raw table): the share of the gain available over the raw table that a
    method's paired difference with the raw table (`gain`) recovered; `oracle` is the oracle's
    own paired comparison with the raw table. None unless the oracle shows a gain (its
    interval above 0): a share of a gain that may be nothing is noise over noise."""
    if oracle["verdict"] != "better":
        return None
    return float(gain / oracle["difference"])
