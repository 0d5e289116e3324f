"""Synthetic controls with a known answer: cohorts on which a study must show a gain, or none.

**Positive control** (`citab synth --control positive`): two *source* cohorts (ADNI- and
NACC-like) with twice the subjects of the target and only one subject in five labelled —
pretraining material, as registries and imaging consortia hold it — and a *target* cohort
(AIBL-like) with balanced classes, whose table carries little of the severity once the
criterion columns (MMSE, CDR, story recall) are out: age, sex, APOE alleles, B12, smoking. Every
scan carries the severity. The available gain is known from the truth file: a probe on the raw
table with the scan's true severity beside it (the oracle) against the raw table alone. A
pretraining method that learns what the scans show must close part of that gap on the target.

**Negative controls**: the same design with scans that carry nothing (`--image-signal 0`):
the oracle gains nothing and neither may pretraining; and pretraining on image-table pairs
shuffled within each cohort (`train.pairs: shuffled`, a study arm), which may not beat the
same network with random weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from citab_cli.core.errors import CitabError

CONTROLS = ("positive",)


@dataclass(frozen=True)
class Design:
    """Which cohort is the target, which are sources, and how the sources are drawn."""

    name: str
    target: str
    sources: tuple[str, ...]
    source_factor: int  # source subjects per target subject
    source_labelled: float  # share of source subjects whose diagnosis the CSV keeps
    target_prevalence: tuple[float, float, float]


POSITIVE = Design(
    name="positive",
    target="aibl",
    sources=("adni", "nacc"),
    source_factor=2,
    source_labelled=0.2,
    target_prevalence=(1 / 3, 1 / 3, 1 / 3),
)


def design(name: str) -> Design:
    """The control called `name`."""
    if name not in CONTROLS:
        raise CitabError(f"--control {name} is not one of {', '.join(CONTROLS)}")
    return POSITIVE


@dataclass(frozen=True)
class Role:
    """What one cohort is in a synth request: its subjects, the share of them labelled, and
    its class prevalence (None: the cohort's own)."""

    subjects: int
    labelled: float = 1.0
    prevalence: tuple[float, float, float] | None = None

    @classmethod
    def of(cls, control: Design | None, cohort: str, subjects: int) -> Role:
        """The role of `cohort` under `control` (none: an ordinary cohort)."""
        if control is None or cohort not in (control.target, *control.sources):
            return cls(subjects)
        if cohort == control.target:
            return cls(subjects, prevalence=control.target_prevalence)
        return cls(subjects * control.source_factor, labelled=control.source_labelled)


def describe(control: Design | None) -> dict | None:
    """The control as truth.json records it."""
    if control is None:
        return None
    return {
        "name": control.name,
        "target": control.target,
        "sources": list(control.sources),
        "source_subjects_per_target_subject": control.source_factor,
        "source_labelled": control.source_labelled,
        "target_prevalence": [round(p, 4) for p in control.target_prevalence],
    }
