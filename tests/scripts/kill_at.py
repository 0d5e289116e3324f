"""Pretrain a tiny run and SIGKILL this process at a chosen point (for crash-safety tests).

python kill_at.py PROJECT RUN POINT [--resume]
POINT: step:N | writing-last | writing-state | validation | none
"""

import os
import signal
import sys
from pathlib import Path

from citab_cli.core import atomic, headers
from citab_cli.core.data.project import Project
from citab_cli.core.runtime.run_config import pretrain_preset
from citab_cli.core.training import loop as core

project, run, point = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
resume = "--resume" in sys.argv


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if point.startswith("step:"):
    at = int(point.split(":")[1])
    hooks = core.Hooks(step=lambda step, metrics: die() if step == at else None)
else:
    hooks = core.Hooks()
    if point in ("writing-last", "writing-state"):
        name = "last.safetensors" if point == "writing-last" else "last.state.safetensors"
        real = atomic.write_bytes

        def write(path, data):  # die with the new file half-written next to the old one
            if path.name == name and (path.parent / "last.state.safetensors").exists():
                with open(path.with_name(f".{name}.partial"), "wb") as handle:
                    handle.write(data[: len(data) // 2])
                die()
            real(path, data)

        atomic.write_bytes = write
    elif point == "validation":
        real_validate = core.validate

        def validate(*args, **kwargs):
            die()

        core.validate = validate

config = pretrain_preset("tiny")
config = config.model_copy(
    update={
        "cohorts": ["adni", "nacc", "aibl"],
        "train": config.train.model_copy(
            update={"epochs": 3, "batch_size": 4, "checkpoint_every": 3}
        ),
    }
)
headers.load_encoder = lambda model: (_ for _ in ()).throw(RuntimeError("no encoder needed"))
core.pretrain(Project(project), config, run, resume=resume, hooks=hooks)
