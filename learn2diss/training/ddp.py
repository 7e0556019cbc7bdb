"""Distributed data parallel set-up for ``torchrun``: one process per GPU (NCCL), or CPU processes (gloo).

``torchrun --nproc_per_node=G -m learn2diss.cli pretrain ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; without them the run is a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from learn2diss.errors import InputError

__all__ = ["DistributedContext", "setup_distributed", "barrier", "any_true", "total", "teardown"]


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes checkpoints and shared files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str | None = None) -> DistributedContext:
    """Join the process group when launched by torchrun; pick the device (``cuda:LOCAL_RANK`` if CUDA is used)."""
    from learn2diss.schema import check_device

    wanted = check_device(device) or ("cuda" if torch.cuda.is_available() else "cpu")
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but torch sees no CUDA device")
    if "RANK" not in os.environ:
        return DistributedContext(0, 0, 1, torch.device(wanted))
    rank, local_rank, world = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    use_cuda = wanted.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        # long timeout: rank 0 alone fits k-means while the others wait at a barrier
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(hours=3))
    return DistributedContext(rank, local_rank, world, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"))


def barrier(ctx: DistributedContext) -> None:
    if ctx.distributed:
        dist.barrier()


def any_true(ctx: DistributedContext, flag: torch.Tensor) -> bool:
    """True when the 0-d bool tensor ``flag`` is true on any rank (all ranks get the same answer)."""
    if not ctx.distributed:
        return bool(flag)
    value = flag.to(ctx.device, torch.float32).reshape(1)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def total(ctx: DistributedContext, count: int) -> int:
    """``count`` summed over the ranks (all ranks get the same answer)."""
    if not ctx.distributed:
        return count
    value = torch.tensor([count], device=ctx.device)
    dist.all_reduce(value)
    return int(value.item())


def teardown(ctx: DistributedContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
