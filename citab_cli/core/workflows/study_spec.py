"""A study file (`citab study STUDY.yaml`): what to pretrain and how to compare it. Strict YAML
(unknown keys refused, errors with line numbers), like a cohort schema.

```yaml
study: cpu                       # names its runs (runs/<study>-<arm>-<regime>-s<seed>)
cohorts: [adni, nacc, aibl]
probe_cohorts: [adni, nacc]      # scored cohorts (default: all; e.g. leave out an unlabelled one)
preset: tiny                     # the runs' starting configuration
config: {train: {epochs: 10}}    # overrides for every arm (a run config's layout)
arms:                            # name -> overrides of the model/loss/train configuration
  reference: {}
  learned_identity: {model: {tabular: {column_identity: learned}}}
reference: reference
seeds: [0, 1, 2]                 # pretraining seeds
regimes:                         # regime -> the arms that run in it (all: every arm)
  cross-cohort: all
  single-cohort: [reference]
  leave-one-out: [reference]
label_fractions: [0.1, 1.0]
probe_seeds: 3
finetune: false                  # leave-one-out: fine-tune on the held-out cohort vs scratch
exclude_criteria: true           # out of pretraining and of every probe
checkpoints: [best]              # best, last, or both
cross_fit: 5                     # leave-one-out: every labelled held-out subject scored, 5-fold
resamples: 10000                 # bootstrap resamples of each comparison
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from citab_cli.core import yaml_io

REGIMES = ("cross-cohort", "single-cohort", "leave-one-out")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class StudySpec(BaseModel):
    """A study: cohorts, arms, pretraining seeds, regimes, probes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    study: str
    description: str = ""
    cohorts: list[str] = Field(min_length=1)
    probe_cohorts: list[str] = Field(
        default_factory=list, description="the cohorts scored (default: every cohort)"
    )
    preset: Literal["tiny", "small", "paper"] = "small"
    config: dict = Field(default_factory=dict)
    arms: dict[str, dict] = Field(min_length=1)
    reference: str
    seeds: list[int] = Field(min_length=1)
    regimes: dict[Literal["cross-cohort", "single-cohort", "leave-one-out"], list[str] | str] = (
        Field(default_factory=lambda: {"cross-cohort": "all"})
    )
    label_fractions: list[float] = Field(default=[0.1, 1.0], min_length=1)
    probe_seeds: int = Field(3, ge=1)
    finetune: bool = False
    exclude_criteria: bool = True
    checkpoints: list[Literal["best", "last"]] = Field(default=["best"], min_length=1)
    cross_fit: int = Field(
        5,
        ge=0,
        description="leave-one-out: score the held-out cohort's every labelled subject, k-fold "
        "(0: its test split only)",
    )
    resamples: int = Field(10_000, ge=50, description="bootstrap resamples of each comparison")

    @field_validator("study")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError("study must be lower-case letters, digits, '-' and '_'")
        return v

    @field_validator("arms")
    @classmethod
    def _arm_names(cls, v: dict) -> dict:
        for name in v:
            if not NAME.match(name):
                raise ValueError(f"arm '{name}': use lower-case letters, digits, '-' and '_'")
        return v

    @field_validator("label_fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < f <= 1 for f in v):
            raise ValueError("label fractions must be in (0, 1]")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        if self.reference not in self.arms:
            raise ValueError(f"reference '{self.reference}' is not one of the arms")
        if "cross-cohort" not in self.regimes:
            raise ValueError("regimes needs cross-cohort: every comparison is against it")
        for regime in self.regimes:
            arms = self.arms_in(regime)
            unknown = sorted(set(arms) - set(self.arms))
            if unknown:
                raise ValueError(f"regime {regime} names unknown arm(s): {', '.join(unknown)}")
            if self.reference not in arms and regime == "cross-cohort":
                raise ValueError("the reference arm must run in the cross-cohort regime")
        if len(self.cohorts) < 2 and set(self.regimes) - {"single-cohort"}:
            raise ValueError("cross-cohort and leave-one-out regimes need at least two cohorts")
        stray = sorted(set(self.probe_cohorts) - set(self.cohorts))
        if stray:
            raise ValueError(f"probe_cohorts {', '.join(stray)} are not among the cohorts")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        return self

    @property
    def scored(self) -> list[str]:
        """The cohorts whose test subjects score the runs."""
        return list(self.probe_cohorts) or list(self.cohorts)

    def arms_in(self, regime: str) -> list[str]:
        """The arms that run in `regime` (none if the study does not have it)."""
        chosen = self.regimes.get(regime)  # type: ignore[call-overload]
        if chosen is None:
            return []
        return list(self.arms) if chosen == "all" else list(chosen)


def load_study(path: Path) -> StudySpec:
    """A study file, validated; problems name the file and line."""
    return yaml_io.load_model(path, StudySpec, "study")  # type: ignore[return-value]
