"""Where this process trains: its device and its place among torchrun's processes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from archsearch.train._device import resolve_device


@dataclass(frozen=True)
class World:
    """This process's rank among `size` training processes (1 without torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: list[int], device: torch.device) -> list[int]:
        """`values` summed over every process."""
        if self.size == 1:
            return values
        t = torch.tensor(values, dtype=torch.long, device=device)
        dist.all_reduce(t)
        return [int(v) for v in t.tolist()]


def join(device_name: str) -> tuple[torch.device, World]:
    """The device to train on and this process's place: under torchrun (WORLD_SIZE > 1) it
    joins the process group (gloo on CPU, nccl on CUDA) and takes its LOCAL_RANK's GPU."""
    device = resolve_device(device_name)
    world = World()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        world = World(dist.get_rank(), dist.get_world_size())
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", world.rank)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device, world


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel and/or torch.compile wrapper."""
    inner = getattr(model, "module", model)  # DDP
    return getattr(inner, "_orig_mod", inner)  # torch.compile
