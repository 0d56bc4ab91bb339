"""Training on several processes, GPUs or machines with PyTorch's own DistributedDataParallel.

`torchrun` starts one process per GPU (or per CPU worker) and tells each its RANK and
WORLD_SIZE; `from_environment()` joins them into one process group (NCCL on GPUs, gloo on
CPUs). Each rank reads its own share of the parallel text streams, DDP averages the
gradients, and the ranks stay in lockstep: every decision one rank makes alone (stop on a
signal, the time budget, the learning-rate schedule's progress) is agreed with the others
each step. Only rank 0 writes files. A plain `python train_lm.py` is a world of one, and
none of this costs anything.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ChatbotError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def share(self, batch_size: int) -> slice:
        """This rank's rows of the `batch_size` parallel streams."""
        if batch_size % self.size:
            raise ChatbotError(
                f"--batch-size {batch_size} (the parallel text streams of the whole job) does not "
                f"split evenly over {self.size} processes; use a multiple of {self.size}.")
        per = batch_size // self.size
        return slice(self.rank * per, (self.rank + 1) * per)

    def agree(self, stop: bool, progress: float) -> tuple[bool, float]:
        """(any rank wants to stop, the furthest progress of any rank): one tiny all-reduce,
        so every rank takes the same branch and the same learning rate."""
        if not self.active:
            return stop, progress
        t = torch.tensor([float(stop), progress], dtype=torch.float64, device=self._device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t[0].item()), float(t[1].item())

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The average of `value` over ranks (a detached copy)."""
        if not self.active:
            return value.detach()
        t = value.detach().clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.size

    def gather_rows(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        """Every rank's `t` concatenated along `dim` in rank order (for the carried state)."""
        if not self.active:
            return t
        parts = [torch.empty_like(t) for _ in range(self.size)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, dim=dim)

    def gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's same-shaped `t` (the CPU random generator states), in rank order."""
        if not self.active:
            return [t]
        device = self._device()
        parts = [torch.empty_like(t, device=device) for _ in range(self.size)]
        dist.all_gather(parts, t.to(device))
        return [p.cpu() for p in parts]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
            else torch.device("cpu")


def from_environment(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun set up (if it did); returns the world and the device
    this rank trains on (its own GPU under CUDA)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ChatbotError(f"local rank {local} has no GPU ({torch.cuda.device_count()} visible): "
                               f"start at most one process per GPU (--nproc_per_node).")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type == "mps":
        raise ChatbotError("several processes on MPS are not supported; use --device cpu with torchrun.")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
    return World(rank, size, local), device


def leave(world: World) -> None:
    """Destroy the group while Python is fully alive. The garbage collection first frees the
    DDP reducer and finished collectives still holding tensors: freed later, at interpreter
    exit, gloo aborted the process now and then ("terminate called without an active exception")."""
    if world.active and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
