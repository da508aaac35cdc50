"""Data-parallel training across processes (``torchrun``), CPU (gloo) or GPU (nccl).

Launch: ``torchrun --nproc_per_node=2 -m liftgs.cli pretrain ...``. torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; without them every helper
here degrades to a single process (world size 1, rank 0) so recipes need no special case.
Only rank 0 logs and writes checkpoint files; each rank draws its own disjoint share of every
global batch (``shard_positions``) so the union over ranks equals a single-process batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto", timeout_s: float = 600.0) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op when absent).

    ``device``: "auto" (cuda:LOCAL_RANK when CUDA is available, else cpu), "cpu" or "cuda".
    The backend follows the device: nccl for CUDA, gloo for CPU.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but CUDA is not available; use --device cpu")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={world_size} but {key} is not set; launch with torchrun")
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=timeout_s))
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def current_info() -> DistInfo:
    """The DistInfo of an already-initialised process (single process if none)."""
    if not dist.is_initialized():
        return DistInfo()
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, info: DistInfo, find_unused_parameters: bool = True) -> nn.Module:
    """DDP-wrap ``model`` when several processes run; otherwise return it unchanged.

    ``find_unused_parameters`` defaults to True because loss toggles (paper Table 4: ground
    only / + RGB / + feature) leave whole heads without gradient in some recipes.
    """
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def collective_device() -> torch.device:
    """Where this process's collectives run: its CUDA device under nccl (which refuses CPU
    tensors), the CPU under gloo or without a process group."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, computed on :func:`collective_device` and returned on ``value``'s device
    (a new tensor; identity for one process)."""
    if not dist.is_initialized():
        return value.detach().clone()
    out = value.detach().to(collective_device(), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(value.device)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over ranks."""
    out = all_reduce_sum(value)
    return out / (dist.get_world_size() if dist.is_initialized() else 1)


def reduce_scalars(values: dict[str, float]) -> dict[str, float]:
    """Mean of a dict of floats over ranks (one collective), for logging the global loss."""
    if not dist.is_initialized() or not values:
        return dict(values)
    keys = sorted(values)
    t = all_reduce_mean(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64))
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def normaliser(count: float) -> float:
    """Mask2Former's loss normaliser: targets per rank, averaged over ranks, clamped ≥ 1."""
    t = all_reduce_mean(torch.tensor([float(count)], dtype=torch.float64))
    return max(float(t.item()), 1.0)


def shard_positions(step: int, batch_size: int, rank: int, world_size: int) -> list[int]:
    """Positions in the global sample stream this rank consumes at ``step``.

    The global batch of ``step`` is positions ``[step*B*W, (step+1)*B*W)`` (B per rank, W ranks);
    rank r takes the contiguous slice ``r*B ... r*B+B-1`` so the union over ranks is exactly
    the single-process batch of size B*W.
    """
    start = step * batch_size * world_size + rank * batch_size
    return list(range(start, start + batch_size))
