"""Run with torchrun --nproc_per_node=2: gathered ITC across two ranks vs one process."""

import json
import os
import sys

import torch
import torch.distributed as dist

from citab_cli.core.losses.contrastive import itc_loss
from citab_cli.core.runtime.distributed import Distributed, Gather

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
g = torch.Generator().manual_seed(0)
image, table = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
rows = slice(rank * 4, (rank + 1) * 4)

local_image = image[rows].clone().requires_grad_(True)
local_table = table[rows].clone().requires_grad_(True)
loss, _ = itc_loss(local_image, local_table, 0.1, Gather(Distributed(rank, world, rank)))
loss.backward()
mean_loss = loss.detach().clone()
dist.all_reduce(mean_loss)
mean_loss /= world

full_image, full_table = image.clone().requires_grad_(True), table.clone().requires_grad_(True)
full, _ = itc_loss(full_image, full_table, 0.1)
full.backward()
result = {
    "rank": rank,
    "loss_gap": abs(float(mean_loss) - float(full.detach())),
    # each rank's gradient covers the sum of both ranks' losses: twice the mean's
    "grad_gap": float((local_image.grad / world - full_image.grad[rows]).abs().max()),
}
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as handle:
    json.dump(result, handle)
dist.destroy_process_group()
