"""torch.distributed for ``evaluate``: this process's rank among the evaluating processes, its device, the barrier.

Under ``torchrun`` (``WORLD_SIZE`` above 1) with no process group yet, ``process_rank`` starts one
(NCCL on CUDA, gloo elsewhere) and destroys it on exit; a group the caller started is used and
left alone. A lone process is rank 0 of 1 and never touches torch.distributed's process group.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Rank:
    """This process's place among the processes that evaluate together.

    Attributes:
        rank: its index, from 0 to ``world - 1``.
        world: the number of processes.
        device: where its models run.
    """

    rank: int
    world: int
    device: torch.device

    def barrier(self) -> None:
        """Wait until every process gets here (returns at once for a lone process)."""
        if self.world > 1:
            if dist.get_backend() == "nccl":
                dist.barrier(device_ids=[torch.cuda.current_device()])
            else:
                dist.barrier()


def _join(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group) from torch.distributed or torchrun's env."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), world, True
    return 0, 1, False


@contextmanager
def process_rank(device: torch.device) -> Iterator[Rank]:
    """This process's ``Rank``, joining torchrun's process group where needed.

    Under torchrun on CUDA, a ``device`` without an index becomes the GPU of the process's local
    rank (``LOCAL_RANK`` modulo the GPUs it sees). A process group started here is destroyed on
    exit, also when the body raises.

    Args:
        device: the device ``evaluate`` was given.
    """
    rank, world, started_group = _join(device)
    try:
        if world > 1 and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
            torch.cuda.set_device(device)
        yield Rank(rank, world, device)
    finally:
        if started_group:
            dist.destroy_process_group()
