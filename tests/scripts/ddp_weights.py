"""Run with torchrun --nproc_per_node=2: the ranks' weights must agree after training.

Trains the tiny model for a few steps under DistributedDataParallel exactly as `citab pretrain`
wraps it, then compares a checksum of the weights across ranks.
"""

import json
import os
import sys

import torch
import torch.distributed as dist

from citab_cli.core.model.citab import build_model
from citab_cli.core.model.config import preset
from citab_cli.core.model.objective import PretrainingObjective
from citab_cli.core.runtime.distributed import Distributed, Gather

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from tests.helpers import make_batch  # noqa: E402

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = build_model(preset("tiny").model_copy(update={"header_dim": 12}))
objective = torch.nn.parallel.DistributedDataParallel(
    PretrainingObjective(model), find_unused_parameters=True
)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for step in range(3):
    g = torch.Generator().manual_seed(100 * step + rank)  # each rank sees different data
    images = torch.randn(4, 1, *model.config.image.shape, generator=g)
    losses = objective(
        images,
        make_batch(b=4, seed=10 * step + rank),
        None,
        torch.Generator().manual_seed(step),
        Gather(Distributed(rank, world, rank)),
    )
    optimizer.zero_grad()
    losses["loss"].backward()
    optimizer.step()
total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
sums = [torch.zeros(1, dtype=torch.double) for _ in range(world)]
dist.all_gather(sums, total)
with open(os.path.join(sys.argv[1], f"weights{rank}.json"), "w") as handle:
    json.dump({"sums": [float(s) for s in sums]}, handle)
del objective
dist.barrier()
dist.destroy_process_group()
