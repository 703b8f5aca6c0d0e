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


class numba_threads:
    """numba's threads for one kernel call: as many as torch uses (``torch.set_num_threads``)."""

    def __enter__(self):
        import numba
        self.before = numba.get_num_threads()
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))

    def __exit__(self, *exc):
        import numba
        numba.set_num_threads(self.before)


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
