"""Data-parallel training over processes (``torchrun``), on torch.distributed: gloo on CPU, NCCL on GPU.

Every rank builds the same model (same seed) and walks the same shuffled global batches; rank ``r`` of ``W``
takes samples ``r, r + W, ...`` of each batch. Each rank's loss is its samples' share of the *global* batch mean
(sum over its samples / global batch size), so summing the gradients over ranks (``all_reduce``) gives exactly
the one-process gradient up to floating-point reduction order -- also when the last batch does not divide evenly
or a rank gets no sample of it. Metrics are summed the same way; only rank 0 writes files and shows progress.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where the reduced tensors live (NCCL needs them on the GPU)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """This process writes files and prints (rank 0)."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device_hint: str = "auto") -> "Dist":
        """Join the process group when started by torchrun (``WORLD_SIZE`` > 1); one process otherwise."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist
        use_nccl = torch.cuda.is_available() and device_hint != "cpu"
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_nccl else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return cls(dist.get_rank(), dist.get_world_size(), local, f"cuda:{local}" if use_nccl else "cpu")

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's samples of a batch."""
        return idx[self.rank::self.world]

    def sum_(self, *tensors: torch.Tensor) -> None:
        """In-place sum over ranks."""
        if self.enabled:
            import torch.distributed as dist
            for t in tensors:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def sum_grads(self, params) -> None:
        """Sum every parameter's gradient over ranks (a missing gradient counts as zero)."""
        if not self.enabled:
            return
        for p in params:
            if p.requires_grad:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                self.sum_(p.grad)

    def sum_floats(self, *values: float) -> list[float]:
        """Sum Python numbers over ranks (float64)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        self.sum_(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist
            dist.barrier()

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()
