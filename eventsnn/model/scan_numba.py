"""numba kernels of the fused LIF scan on the CPU (imported on first use; compiled once and cached).

Same per-step arithmetic, in the same order, as :func:`eventsnn.model.scan._scan_forward` / ``_scan_backward`` (see
:mod:`eventsnn.model.scan` for the equations); one compiled loop instead of about a dozen torch operations per step.

* Forward: samples are independent, so each thread runs whole samples through time. Recurrent input is
  accumulated from the rows of the spiking neurons (spikes are 0/1 and sparse).
* Backward: without recurrence, again whole samples per thread. With recurrence, the adjoint needs ``dF @ W^T``
  at every step: each thread takes a contiguous group of samples through time with one single-threaded BLAS
  call per step for its group, and the elementwise work follows it.
"""
import numba

from eventsnn.util.jit import njit
import numpy as np

from eventsnn.model.surrogates import ATAN, FAST_SIGMOID, MULTI_GAUSSIAN_H, MULTI_GAUSSIAN_S


@njit(inline="always")
def _lif_step(f, a, b, k, theta, subtract, keep_state, keep_I, v, I, o, vp, ih):  # pragma: no cover - compiled
    """One step of a spiking layer without recurrence or refractoriness for one sample: the general loop's
    arithmetic in its order, on the step's rows (``f`` input, ``o`` spikes, ``vp`` pre-reset voltage, ``ih`` the
    current), with the flags tested outside the loops so that they vectorise."""
    N = v.shape[0]
    if subtract:
        for j in range(N):
            vj = a[j] * v[j] + k[j] * I[j]
            spike = 1.0 if vj - theta[j] >= 0 else 0.0
            o[j] = spike
            I[j] = b[j] * I[j] + f[j]
            v[j] = vj - theta[j] * spike
            if keep_state:
                vp[j] = vj
    else:
        for j in range(N):
            vj = a[j] * v[j] + k[j] * I[j]
            spike = 1.0 if vj - theta[j] >= 0 else 0.0
            o[j] = spike
            I[j] = b[j] * I[j] + f[j]
            v[j] = vj * (1 - spike)
            if keep_state:
                vp[j] = vj
    if keep_I:
        for j in range(N):
            ih[j] = I[j]


@njit(parallel=True)
def scan_forward(F, a, b, k, theta, R, rec_w, rec_d, rec_ptr, rec_rows, spiking, subtract, use_ref, keep_I,
                 keep_state, out, v_pre, held, I_hist):  # pragma: no cover - compiled; tested through eventsnn.model.scan
    """``out`` (spikes, or the trace of a readout) and ``I_hist`` (if ``keep_I``) ``[B, T, N]`` are written, and
    ``v_pre`` and ``held`` if ``keep_state`` (the backward pass reads them; an evaluation passes dummies).
    ``rec_rows[rec_ptr[q]:rec_ptr[q + 1]]``: the rows of ``rec_w[q]`` that are not all zero, ascending (a
    recurrent layer with per-neuron delays has one term per distinct delay, each with the rows of the neurons
    that have it: only those are looked at)."""
    B, T, N = F.shape
    n_rec = rec_d.shape[0]
    for s_ in numba.prange(B):
        v = np.zeros(N, F.dtype)
        I = np.zeros(N, F.dtype)
        ref = np.zeros(N, np.int64)
        inp = np.zeros(N, F.dtype)
        acc = np.zeros(N, F.dtype)
        hold = np.zeros(N, np.bool_)
        for n in range(T):
            if spiking and n_rec == 0 and not use_ref:  # the common layer, fused: one vectorisable loop per step
                _lif_step(F[s_, n], a, b, k, theta, subtract, keep_state, keep_I, v, I, out[s_, n],
                          v_pre[s_, n] if keep_state else v_pre[0, 0], I_hist[s_, n] if keep_I else I_hist[0, 0])
                continue
            for j in range(N):
                v_new = a[j] * v[j] + k[j] * I[j]
                if use_ref:
                    ref[j] = max(ref[j] - 1, 0)
                    h = ref[j] > 0
                    hold[j] = h
                    if keep_state:
                        held[s_, n, j] = h
                    if not h:
                        v[j] = v_new
                else:
                    v[j] = v_new
                I[j] = b[j] * I[j]
            if spiking:
                for j in range(N):
                    if keep_state:
                        v_pre[s_, n, j] = v[j]
                    spike = 1.0 if v[j] - theta[j] >= 0 else 0.0
                    if use_ref and hold[j]:
                        spike = 0.0
                    out[s_, n, j] = spike
                    inp[j] = F[s_, n, j]
                for q in range(n_rec):
                    m = n - rec_d[q]
                    if m < 0:
                        continue
                    fired = False  # a term none of whose neurons fired adds zero: skipped
                    for r in range(rec_ptr[q], rec_ptr[q + 1]):
                        i = rec_rows[r]
                        if out[s_, m, i] != 0.0:
                            if not fired:
                                acc[:] = 0.0
                                fired = True
                            w = rec_w[q, i]
                            for j in range(N):
                                acc[j] += w[j]
                    if fired:
                        for j in range(N):
                            inp[j] = inp[j] + acc[j]
                for j in range(N):
                    spike = out[s_, n, j]
                    I[j] = I[j] + inp[j]
                    if subtract:
                        v[j] = v[j] - theta[j] * spike
                    else:
                        v[j] = v[j] * (1 - spike)
                    if use_ref and spike > 0:
                        ref[j] = R[j]
            else:
                for j in range(N):
                    I[j] = I[j] + F[s_, n, j]
                    out[s_, n, j] = v[j]
            if keep_I:
                for j in range(N):
                    I_hist[s_, n, j] = I[j]




@njit(inline="always")
def _surrogate(x, kind, slope):  # pragma: no cover - compiled
    """:func:`eventsnn.model.scan.surrogate_derivative` for one value; ``kind``: an id of
    :mod:`eventsnn.model.surrogates`."""
    if kind == FAST_SIGMOID:
        d = slope * abs(x) + 1.0
        return 1.0 / (d * d)
    if kind == ATAN:
        z = np.pi / 2 * slope * x
        return 0.5 * slope / (1.0 + z * z)
    sigma = 1.0 / slope
    wide = MULTI_GAUSSIAN_S * sigma
    c = 1.0 / np.sqrt(2 * np.pi)
    return ((1 + MULTI_GAUSSIAN_H) * c / sigma * np.exp(-x * x / (2 * sigma * sigma))
            - MULTI_GAUSSIAN_H * c / wide * np.exp(-(x - sigma) ** 2 / (2 * wide * wide))
            - MULTI_GAUSSIAN_H * c / wide * np.exp(-(x + sigma) ** 2 / (2 * wide * wide)))


@njit(inline="always")
def _adjoint_step(s_, n, lv, lI, gs, out, v_pre, theta, kind, slope, held, a, b, k, spiking, subtract, use_ref,
                  keep_lvp, dF, lvp_hist):  # pragma: no cover - compiled
    """One reverse step for one sample, given ``gs`` (``dL/ds_n`` for a spiking layer, ``dL/dout_n`` else)."""
    N = lv.shape[0]
    for j in range(N):
        if spiking:
            keep = lv[j] if subtract else lv[j] * (1 - out[s_, n, j])
            sg = 0.0 if use_ref and held[s_, n, j] else _surrogate(v_pre[s_, n, j] - theta[j], kind, slope)
            lvp = keep + gs[j] * sg
        else:
            lvp = lv[j] + gs[j]
        if keep_lvp:
            lvp_hist[s_, n, j] = lvp
        if use_ref and held[s_, n, j]:
            lv[j] = lvp
            lI[j] = 0.0 + b[j] * lI[j]
        else:
            lv[j] = a[j] * lvp
            lI[j] = k[j] * lvp + b[j] * lI[j]


@njit(inline="always")
def _adjoint_step_fast(gs, o, vp, theta, slope, a, b, k, subtract, keep_lvp, lv, lI, df, lh):  # pragma: no cover
    """:func:`_adjoint_step` with ``dF`` written first, for a spiking layer without refractoriness and the
    fast-sigmoid surrogate, on the step's rows: the same arithmetic, the flags tested outside the loop."""
    N = lv.shape[0]
    if subtract:
        for j in range(N):
            df[j] = lI[j]
            d = slope * abs(vp[j] - theta[j]) + 1.0
            lvp = lv[j] + gs[j] * (1.0 / (d * d))
            if keep_lvp:
                lh[j] = lvp
            lv[j] = a[j] * lvp
            lI[j] = k[j] * lvp + b[j] * lI[j]
    else:
        for j in range(N):
            df[j] = lI[j]
            d = slope * abs(vp[j] - theta[j]) + 1.0
            lvp = lv[j] * (1 - o[j]) + gs[j] * (1.0 / (d * d))
            if keep_lvp:
                lh[j] = lvp
            lv[j] = a[j] * lvp
            lI[j] = k[j] * lvp + b[j] * lI[j]


@njit(parallel=True)
def scan_backward(gout, out, v_pre, theta, kind, slope, held, a, b, k, spiking, subtract, use_ref, keep_lvp,
                  dF, lvp_hist):  # pragma: no cover - compiled
    """Reverse scan without recurrence: whole samples per thread; writes ``dF`` and (``keep_lvp``) ``lvp_hist``."""
    B, T, N = gout.shape
    for s_ in numba.prange(B):
        lv = np.zeros(N, gout.dtype)
        lI = np.zeros(N, gout.dtype)
        fast = spiking and not use_ref and kind == FAST_SIGMOID
        for n in range(T - 1, -1, -1):
            if fast:
                _adjoint_step_fast(gout[s_, n], out[s_, n], v_pre[s_, n], theta, slope, a, b, k, subtract,
                                   keep_lvp, lv, lI, dF[s_, n], lvp_hist[s_, n] if keep_lvp else lvp_hist[0, 0])
                continue
            for j in range(N):
                dF[s_, n, j] = lI[j]
            _adjoint_step(s_, n, lv, lI, gout[s_, n], out, v_pre, theta, kind, slope, held, a, b, k, spiking,
                          subtract, use_ref, keep_lvp, dF, lvp_hist)


@njit(parallel=True)
def scan_backward_recurrent(gout, out, v_pre, theta, kind, slope, held, a, b, k, rec_wt, rec_d, subtract, use_ref,
                            n_chunks, keep_lvp, dF, lvp_hist):  # pragma: no cover - compiled
    """Reverse scan of a recurrent spiking layer. Samples are independent, so the batch is cut into ``n_chunks``
    contiguous groups, one per thread; each group goes through time together, with one BLAS product per step
    and delay term for its rows (the caller keeps BLAS to one thread while the groups run)."""
    B, T, N = gout.shape
    for c in numba.prange(n_chunks):
        s0 = c * B // n_chunks
        nb = (c + 1) * B // n_chunks - s0
        lv = np.zeros((nb, N), gout.dtype)
        lI = np.zeros((nb, N), gout.dtype)
        buf = np.empty((nb, N), gout.dtype)
        prod = np.empty((nb, N), gout.dtype)
        gs = np.empty((nb, N), gout.dtype)
        for n in range(T - 1, -1, -1):
            for r in range(nb):
                for j in range(N):
                    dF[s0 + r, n, j] = lI[r, j]
                    gs[r, j] = gout[s0 + r, n, j]
            for q in range(rec_d.shape[0]):
                m = n + rec_d[q]
                if m < T:
                    for r in range(nb):
                        for j in range(N):
                            buf[r, j] = dF[s0 + r, m, j]
                    np.dot(buf, rec_wt[q], prod)
                    for r in range(nb):
                        for j in range(N):
                            gs[r, j] = gs[r, j] + prod[r, j]
            for r in range(nb):
                _adjoint_step(s0 + r, n, lv[r], lI[r], gs[r], out, v_pre, theta, kind, slope, held, a, b, k, True,
                              subtract, use_ref, keep_lvp, dF, lvp_hist)
