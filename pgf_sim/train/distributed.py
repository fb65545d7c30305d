"""Multi-process data-parallel training (DDP), launched with ``torchrun``.

``torchrun --nproc_per_node 2 -m pgf_sim train training/digits_vit.yaml`` starts two ranks;
each reads RANK / WORLD_SIZE / LOCAL_RANK from the environment (set by torchrun). Backend:
gloo on CPU, nccl on CUDA. Why this stays simple and correct for N:M sparsity:

- every rank builds the model from the same seed and DDP broadcasts rank 0's parameters, and
  gradients are all-reduced (averaged), so weights stay identical on all ranks; masks are
  computed locally from those identical weights by the same deterministic top-n, so they are
  identical too and never need to be communicated;
- one global batch per step is split between the ranks (``data.batch_indices(rank, world)``),
  so the averaged gradient equals the single-process gradient of the same batch;
- only rank 0 writes the result store and the checkpoints; all ranks read a checkpoint on resume.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from pgf_sim.core import ConfigError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


SINGLE = DistContext()


def context_from_env() -> DistContext:
    """The process's place in a torchrun job; ``SINGLE`` when not launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(ctx: DistContext, device: torch.device) -> None:
    """Join the process group (idempotent)."""
    import torch.distributed as dist

    if not ctx.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world)


def device_for(ctx: DistContext, requested: str) -> torch.device:
    """``cpu`` | ``cuda`` | ``auto`` -> a device; under DDP on CUDA, one GPU per local rank."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was requested but torch sees no CUDA GPU; use --device cpu or auto")
        return torch.device("cuda", ctx.local_rank if ctx.enabled else torch.cuda.current_device())
    return torch.device("cpu")


def check_batch(ctx: DistContext, batch_size: int) -> None:
    if batch_size % ctx.world:
        raise ConfigError(
            f"schedule.batch_size {batch_size} must be divisible by the number of processes ({ctx.world}) "
            "so that every rank gets an equal share of each global batch"
        )


def wrap(model: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """DDP-wrap ``model`` (already on ``device``) when running distributed; else return it."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def all_reduce_(values: torch.Tensor, ctx: DistContext, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce of a small tensor ("sum" | "min" | "max"); identity when single."""
    if ctx.enabled:
        import torch.distributed as dist

        dist.all_reduce(values, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return values


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    import torch.distributed as dist

    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
