"""Training on several processes (`torchrun`): the process group and the few collectives the trainer needs.

Every helper is the identity in a single process, so the trainer has one code path whether or not
torchrun started it. The backend follows the device: gloo on CPU, NCCL on CUDA.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist

from gaitcam.model.sgela import pick_device


@contextmanager
def process_group(device: str = "auto") -> Iterator[None]:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1) for the
    block, and leave it after; on CUDA each process takes the GPU of its LOCAL_RANK."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield
        return
    cuda = pick_device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def owned(units: np.ndarray) -> np.ndarray:
    """Which units (recordings, sequences) this process reads and trains on: every world-th one.
    Each unit has exactly one owner, so no recording is read twice."""
    return np.asarray(units) % world() == rank()


def _tensor(values: list[float]) -> torch.Tensor:
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    return torch.tensor(values, dtype=torch.float64, device=device)


def sum_all(values: list[float]) -> list[float]:
    """Each value summed over all processes (every process gets the same sums)."""
    if not dist.is_initialized():
        return list(values)
    t = _tensor(values)
    dist.all_reduce(t)
    return t.tolist()


def from_main(value: float) -> float:
    """Rank 0's value on every process: for decisions that must agree, such as a time budget."""
    if not dist.is_initialized():
        return value
    t = _tensor([value])
    dist.broadcast(t, 0)
    return float(t.item())


def gather(obj: object) -> list:
    """Every process's `obj`, in rank order, on every process."""
    if not dist.is_initialized():
        return [obj]
    out: list = [None] * world()
    dist.all_gather_object(out, obj)
    return out
