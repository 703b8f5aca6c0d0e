"""numba kernel of the SRM scan's forward on the CPU (:mod:`eventsnn.model.srm_layer`; imported on first use).

Same per-step arithmetic, in the same order, as :func:`eventsnn.model.srm_layer._srm_autograd`; samples are
independent, so each thread runs whole samples through time.
"""
import numba

from eventsnn.util.jit import njit
import numpy as np


@njit(parallel=True)
def srm_forward(F, a, k, ar, kr, jump, theta, R, out, u_hist, blocked):  # pragma: no cover - compiled; tested via srm_layer
    """``out`` (spikes) and ``u_hist`` (the potential before the threshold) ``[B, T, N]`` are written; with a
    dead time (some ``R > 1``, ``blocked`` of shape ``[B, T, N]``) also ``blocked``: the steps where a neuron may
    not fire (1 .. R-1 steps after its spike). ``blocked`` of size 0: no dead time."""
    B, T, N = F.shape
    dead = blocked.size > 0
    for s_ in numba.prange(B):
        v = np.zeros(N, F.dtype)
        I = np.zeros(N, F.dtype)
        vr = np.zeros(N, F.dtype)
        Ir = np.zeros(N, F.dtype)
        ref = np.zeros(N, np.int64)
        for n in range(T):
            for j in range(N):
                v[j] = a[j] * v[j] + k[j] * I[j]
                I[j] = a[j] * I[j]
                vr[j] = ar[j] * vr[j] + kr[j] * Ir[j]
                Ir[j] = ar[j] * Ir[j]
                u = v[j] + vr[j]
                u_hist[s_, n, j] = u
                spike = 1.0 if u - theta[j] >= 0 else 0.0
                if dead:
                    if ref[j] > 0:
                        ref[j] -= 1
                    held = ref[j] > 0
                    blocked[s_, n, j] = held
                    if held:
                        spike = 0.0
                    elif spike > 0:
                        ref[j] = R[j]
                out[s_, n, j] = spike
                I[j] = I[j] + F[s_, n, j]
                Ir[j] = Ir[j] + jump[j] * spike
