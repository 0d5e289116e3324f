"""The presets' training settings as plain data. This module imports nothing, so the command line
can show the presets in --help without loading pydantic or torch; `run_config.TRAIN_PRESETS`
turns each entry into a validated `TrainConfig`, and `model.config.PRESETS` holds the networks of
the same names."""

from __future__ import annotations

#: Preset name -> TrainConfig fields that differ from TrainConfig's own defaults.
TRAIN: dict[str, dict[str, float | int]] = {
    "tiny": {
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "warmup_epochs": 0.5,
        "checkpoint_every": 20,
        "log_every": 5,
        "validate_every": 1,
    },
    "small": {
        "epochs": 15,
        "batch_size": 16,
        "learning_rate": 3e-4,
        "warmup_epochs": 1,
        "checkpoint_every": 50,
        "log_every": 10,
        "validate_every": 1,
    },
    "paper": {"epochs": 300, "batch_size": 12, "validate_every": 10},
}
#: The preset names, smallest first.
NAMES: tuple[str, ...] = tuple(TRAIN)
#: The preset of a run that names none.
DEFAULT = "small"


def listed(key: str) -> str:
    """Each preset's value of one training setting, e.g. 'tiny 2, small 15, paper 300'."""
    return ", ".join(f"{name} {TRAIN[name][key]:g}" for name in NAMES)
