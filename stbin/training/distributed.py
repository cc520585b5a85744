"""Distributed data parallel through ``torchrun`` (gloo on CPU, nccl on CUDA).

``torchrun --nproc_per_node=N -m stbin.cli.main train ...`` sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``; :func:`setup` then joins the process group. Every process draws the same
data order, takes its 1/N share of each global batch (``train.batch_size`` is the global
batch size), and DDP averages the gradients, so N processes compute what one process
computes on the whole batch — exactly so for deterministic models without batch norm
(BatchNorm normalises each process's share with its own statistics; use SyncBatchNorm, or
accept the difference). Stochastic units draw different noise in each process (seed + rank).
Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_rank() -> int:
    """This process's rank as set by torchrun (0 when not distributed)."""
    try:
        return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0
    except ValueError:
        return 0


def setup(device: torch.device) -> DistInfo:
    """Join the process group if launched by torchrun (``WORLD_SIZE`` > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard(indices: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This process's contiguous share of one global batch of ``indices``."""
    if not info.enabled:
        return indices
    n = len(indices)
    lo, hi = n * info.rank // info.world_size, n * (info.rank + 1) // info.world_size
    return indices[lo:hi]
