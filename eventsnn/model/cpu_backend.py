"""One switch for eventsnn's numba kernels on the CPU (the fused scan and the delayed currents).

``ENABLED = True`` (default): CPU float32/float64 tensors go through the numba kernels
(:mod:`eventsnn.model.scan_numba`, :mod:`eventsnn.model.delays_numba`); ``False``: the same maths in torch ops, the path
CUDA takes (tests flip it to check that path on the CPU). Both give the same results.
"""
from __future__ import annotations

import torch

ENABLED = True


def applies(*tensors: torch.Tensor) -> bool:
    """True when the numba kernels handle these tensors: enabled, all on the CPU, float32/float64, one dtype."""
    if not ENABLED or not tensors:
        return False
    dt = tensors[0].dtype
    return dt in (torch.float32, torch.float64) and all(t.device.type == "cpu" and t.dtype == dt for t in tensors)


# Partial sums (and sample groups) a parallel kernel splits its work into: a constant, never the number of threads,
# so that results are the same bits on a laptop and on a 64-core node, at any torch.set_num_threads.
WORK_CHUNKS = 8


class numba_threads:
    """numba's threads for one kernel call: as many as torch uses (``torch.set_num_threads``).

    numba's OpenMP threading layer shares the OpenMP runtime with torch: its first use, and every
    ``numba.set_num_threads``, also sets torch's thread count (measured: torch at 1 thread, numba started with 8
    cores -> torch at 8). torch's count is read first and put back on exit."""

    def __enter__(self):
        import numba
        self.torch_threads = torch.get_num_threads()
        self.before = numba.get_num_threads()
        numba.set_num_threads(max(1, min(self.torch_threads, numba.config.NUMBA_NUM_THREADS)))

    def __exit__(self, *exc):
        import numba
        numba.set_num_threads(self.before)
        if torch.get_num_threads() != self.torch_threads:
            torch.set_num_threads(self.torch_threads)


class blas_threads:
    """BLAS (the library numba's ``np.dot`` calls) limited to ``n`` threads for a parallel kernel whose threads
    each call BLAS: a multi-threaded BLAS inside them oversubscribes the cores (and OpenBLAS warns on every call
    made from an OpenMP loop)."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        from threadpoolctl import threadpool_limits
        self.limits = threadpool_limits(limits=self.n, user_api="blas")
        self.limits.__enter__()

    def __exit__(self, *exc):
        self.limits.__exit__(*exc)
