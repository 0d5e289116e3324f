"""Pretraining configuration: the model plus how to train it. Strict and round-tripping."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from citab_cli.core.errors import CitabError
from citab_cli.core.model.config import PRESETS, ModelConfig
from citab_cli.core.runtime import presets
from citab_cli.core.runtime.augment import AugmentConfig


class TrainConfig(BaseModel):
    """How a run trains: schedule, optimiser, checkpoints, validation, augmentation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(300, ge=1)
    steps: int | None = Field(
        None,
        ge=1,
        description="optimiser steps of the run (one process); set, it overrides epochs and "
        "the last epoch is cut short (studies give every regime the same steps)",
    )
    batch_size: int = Field(12, ge=2, description="per process; ITM needs at least 2")
    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1.5e-6, ge=0)
    warmup_epochs: float = Field(10, ge=0)
    warmup_steps: int | None = Field(
        None, ge=0, description="learning-rate warm-up in optimiser steps; overrides warmup_epochs"
    )
    grad_clip: float = Field(1.0, gt=0)
    seed: int = 0
    balance_cohorts: bool = Field(False, description="equal cohort shares instead of proportional")
    batches: Literal["mixed", "cohort"] = Field(
        "mixed",
        description="cohort: every step's subjects come from one cohort (ITC then has a whole "
        "batch of same-cohort candidates, and BatchNorm sees one cohort at a time); mixed: "
        "subjects of all cohorts shuffled together",
    )
    include_val: bool = Field(False, description="pretrain on validation subjects too")
    checkpoint_every: int = Field(200, ge=1, description="steps between last.safetensors writes")
    validate_every: int = Field(
        5,
        ge=1,
        description="epochs between validations (run by one process; the last epoch "
        "is always validated)",
    )
    validate_every_steps: int | None = Field(
        None,
        ge=1,
        description="optimiser steps between validations; overrides validate_every (the last "
        "step is always validated)",
    )
    log_every: int = Field(10, ge=1, description="steps between metrics.jsonl lines")
    max_bad_steps: int = Field(5, ge=1, description="consecutive non-finite losses before stopping")
    select: Literal["ssl_loss", "retrieval", "probe"] = Field(
        "ssl_loss",
        description="what picks best.safetensors: the validation SSL loss, image-table "
        "retrieval recall (both label-free), or the label-based validation probe",
    )
    pairs: Literal["matched", "shuffled"] = Field(
        "matched",
        description="shuffled: every pretraining row is paired with the scan of another "
        "pretraining subject of its cohort (a fixed derangement from the seed), so image-table "
        "objectives can learn nothing about the subject: a negative control",
    )
    table_only: float = Field(
        0.5,
        ge=0,
        le=4,
        description="subjects without a scan (ingest --on-missing-image keep) added to each "
        "batch, as a share of batch_size (rounded; per process): they join the tabular "
        "objectives (MTR) only, the batch's pairs stay batch_size; 0 leaves them out",
    )
    augment: AugmentConfig = AugmentConfig()


class PretrainConfig(BaseModel):
    """A run's whole configuration: its cohorts, the network and how it trains."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cohorts: list[str] = []
    exclude_criteria: bool = Field(
        False,
        description="leave the columns that define the diagnosis (schema criterion: true) out "
        "of pretraining: they are never tokenised",
    )
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()


#: The presets' training settings, validated (the numbers are in presets.py).
TRAIN_PRESETS = {name: TrainConfig(**values) for name, values in presets.TRAIN.items()}


def pretrain_preset(name: str) -> PretrainConfig:
    """The network and training settings of preset `name`, for no cohorts yet."""
    if name not in PRESETS:
        raise CitabError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return PretrainConfig(model=PRESETS[name], train=TRAIN_PRESETS[name])


def differences(saved: BaseModel, requested: BaseModel) -> list[tuple[str, object, object]]:
    """(dotted key, saved value, requested value) of every setting that differs."""

    def leaves(value, prefix: str) -> dict:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                out.update(leaves(item, f"{prefix}.{key}" if prefix else key))
            return out
        return {prefix: value}

    a = leaves(saved.model_dump(mode="json"), "")
    b = leaves(requested.model_dump(mode="json"), "")
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def with_epochs(config: PretrainConfig, epochs: int) -> PretrainConfig:
    """`config` trained for `epochs` epochs."""
    return config.model_copy(update={"train": config.train.model_copy(update={"epochs": epochs})})


def extends(saved: dict, requested: dict) -> bool:
    """Whether the configuration `requested` (as JSON) is `saved` trained for more epochs: the
    one change a resumed run accepts."""
    longer = {**saved, "train": {**saved["train"], "epochs": requested["train"]["epochs"]}}
    return longer == requested and requested["train"]["epochs"] > saved["train"]["epochs"]
