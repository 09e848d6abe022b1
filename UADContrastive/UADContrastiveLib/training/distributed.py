"""Several training processes under torchrun (WORLD_SIZE > 1): DistributedDataParallel with
gloo on CPU, nccl on CUDA; a no-op wrapper for the usual single process."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


class Dist:
    """The processes of this training as torchrun started them; with from_environment=False a
    single process whatever the environment says (a stage that never runs distributed)."""

    def __init__(self, device: torch.device, from_environment: bool = True):
        self.world = int(os.environ.get("WORLD_SIZE", "1")) if from_environment else 1
        self.rank = int(os.environ.get("RANK", "0")) if from_environment else 0
        self.enabled = self.world > 1
        self.device = device
        if self.enabled and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
        if self.enabled and device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        if not self.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def agree(self, flag: bool) -> bool:
        """True when any rank says True (used to stop all ranks together)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(value)
        return bool(value.item() > 0)


def gather(obj, dist_: Dist) -> list:
    if not dist_.enabled:
        return [obj]
    gathered = [None] * dist_.world
    dist.all_gather_object(gathered, obj)
    return gathered
