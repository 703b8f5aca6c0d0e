"""Peak memory of one measured configuration.

On the CPU a process's resident set does not shrink when tensors are freed (the allocator keeps the pages), so a
configuration's peak is only honest in a fresh process: :func:`in_child` runs the script again with the given
arguments and reads the JSON it prints, whose ``peak_mb`` comes from :func:`peak_mb` (VmHWM, the resident-set
high-water mark). On CUDA the allocator's own peak is exact within one process.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys

import torch


def peak_mb(device: torch.device | str = "cpu") -> float:
    """Peak memory in MiB: CUDA tensors on the device, else the whole process's resident-set high-water mark."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # VmHWM, not getrusage's ru_maxrss: Linux copies ru_maxrss into a forked child, so a child started from a big
    # parent would report the parent's peak
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_child(script: str, args: list[str]) -> dict:
    """Run ``python script args`` and return the JSON object on its last line of output."""
    p = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])
