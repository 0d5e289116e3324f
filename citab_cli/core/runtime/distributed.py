"""Where this process stands in a torchrun launch, and the all-gather that gives contrastive
losses every rank's negatives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import torch

#: How long a rank waits for the others at a collective before the run fails. Validation and
#: checkpoints run on rank 0 while the others wait at a barrier: NCCL's default of 10 minutes
#: is shorter than one validation of a large cohort at the paper's image size.
PROCESS_GROUP_TIMEOUT = timedelta(minutes=60)


def start_process_group(device: str) -> None:
    """Join the torchrun launch: NCCL for CUDA devices, gloo for the CPU, with the timeout
    above."""
    backend = "nccl" if device.startswith("cuda") else "gloo"
    torch.distributed.init_process_group(backend, timeout=PROCESS_GROUP_TIMEOUT)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun launch: rank, world size, local rank."""

    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        """Whether this is the process that writes files and validates."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (a no-op in a single process)."""
        if self.world > 1:
            torch.distributed.barrier()

    def any(self, flag: bool | torch.Tensor, device: torch.device) -> bool:
        """Whether `flag` holds on at least one rank: every rank gets the same answer, so
        decisions such as "skip this step" or "stop now" are taken in step."""
        if self.world == 1:
            return bool(flag)
        value = torch.as_tensor(flag, device=device).reshape(1).to(torch.int32)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    def all(self, flag: bool | torch.Tensor, device: torch.device) -> bool:
        """Whether `flag` holds on every rank (the same answer on every rank)."""
        return not self.any(not bool(flag), device)


SINGLE = Distributed(0, 1, 0)


class _AllGather(torch.autograd.Function):
    """Concatenate every rank's rows; the gradient of the local rows sums over all ranks' losses."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, rank: int, world: int) -> torch.Tensor:
        ctx.rank, ctx.rows = rank, local.shape[0]
        parts = [torch.empty_like(local) for _ in range(world)]
        torch.distributed.all_gather(parts, local.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        torch.distributed.all_reduce(grad)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows], None, None


class Gather:
    """ITC negatives from every rank: (all rows, where this rank's rows start)."""

    def __init__(self, dist: Distributed):
        self.dist = dist

    def __call__(self, local: torch.Tensor) -> tuple[torch.Tensor, int]:
        gathered = _AllGather.apply(local, self.dist.rank, self.dist.world)
        return gathered, self.dist.rank * local.shape[0]
