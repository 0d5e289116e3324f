"""Run with torchrun --nproc_per_node=2: ranks must take "skip" and "stop" decisions together.

python ddp_in_step.py PROJECT OUT MODE
MODE nan:  rank 1 alone gets a non-finite loss at its second step; the run must finish.
MODE stop: rank 0 alone is asked to stop after step 2; both ranks must stop there.
Each rank writes OUT/rank<r>.json: steps done, stopped early, and which ranks validated.
"""

import json
import sys
from pathlib import Path

import torch.distributed as dist

from citab_cli.core import headers
from citab_cli.core.data.project import Project
from citab_cli.core.model import objective
from citab_cli.core.runtime.distributed import Distributed
from citab_cli.core.runtime.run_config import pretrain_preset
from citab_cli.core.training import loop

project, out, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
headers.load_encoder = lambda model: (_ for _ in ()).throw(RuntimeError("no encoder needed"))

calls = {"loss": 0}
real_loss = objective.pretraining_loss


def poisoned(*args, **kwargs):
    losses = real_loss(*args, **kwargs)
    calls["loss"] += 1
    if mode == "nan" and rank == 1 and calls["loss"] == 2:
        return {**losses, "loss": losses["loss"] * float("nan")}
    return losses


objective.pretraining_loss = poisoned
validated = []
real_validate = loop.validate


def validate(*args, **kwargs):
    validated.append(rank)
    return real_validate(*args, **kwargs)


loop.validate = validate
hooks = loop.Hooks(stop=lambda step: mode == "stop" and rank == 0 and step >= 2)
config = pretrain_preset("tiny")
config = config.model_copy(
    update={
        "cohorts": ["adni", "nacc", "aibl"],
        "train": config.train.model_copy(update={"epochs": 2, "batch_size": 4}),
    }
)
result = loop.pretrain(
    Project(project), config, mode, dist=Distributed(rank, world, rank), hooks=hooks
)
(out / f"rank{rank}.json").write_text(
    json.dumps(
        {
            "steps": result.steps,
            "stopped": result.stopped_early,
            "skipped": result.skipped_steps,
            "validated": validated,
        }
    )
)
dist.destroy_process_group()
