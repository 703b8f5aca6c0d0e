"""numba kernels of the per-synapse delay taps on the CPU (imported on first use: numba compiles them once and
caches them). Each parallel loop gives every thread rows that no other thread writes."""
import numba

from eventsnn.util.jit import njit
import numpy as np


@njit(parallel=True)
def forward_kernel(b_idx, t_idx, i_idx, vals, taps, lo, out):  # pragma: no cover - compiled
    """``out[b, t + lo[i, j] + k, j] += vals * taps[k, i, j]`` for every input spike ``(b, t, i)``.

    Spikes sorted by sample ``b``; ``out`` ``[B, Tp, N_post]`` with ``Tp`` past every target step.
    """
    K, n_pre, n_post = taps.shape
    B = out.shape[0]
    starts = _starts(b_idx, B)
    for b in numba.prange(B):
        ob = out[b]
        for s in range(starts[b], starts[b + 1]):
            t, i, v = t_idx[s], i_idx[s], vals[s]
            for k in range(K):
                for j in range(n_post):
                    ob[t + lo[i, j] + k, j] += v * taps[k, i, j]


@njit(parallel=True)
def weight_grad_kernel(order, b_idx, t_idx, i_idx, vals, lo, grad, g_taps):  # pragma: no cover - compiled
    """``g_taps[k, i, j] += vals * grad[b, t + lo[i, j] + k, j]`` over the input spikes (``order`` sorts them by
    presynaptic neuron ``i``); ``grad`` ``[B, Tp, N_post]`` zero past step T."""
    K, n_pre, n_post = g_taps.shape
    starts = _starts(i_idx[order], n_pre)
    for i in numba.prange(n_pre):
        for q in range(starts[i], starts[i + 1]):
            s = order[q]
            b, t, v = b_idx[s], t_idx[s], vals[s]
            gb = grad[b]
            for k in range(K):
                for j in range(n_post):
                    g_taps[k, i, j] += v * gb[t + lo[i, j] + k, j]


@njit(parallel=True)
def input_grad_kernel(g_t, taps, lo, T, B, out):  # pragma: no cover - compiled
    """``out[i, t*B + b] += sum_k sum_j taps[k, i, j] * g_t[j, (t + lo[i, j] + k)*B + b]``.

    ``g_t``: output gradient ``[N_post, Tp*B]`` (time-major, batch innermost, zero past step T); ``out``:
    ``[N_pre, T*B]``. Each synapse adds one contiguous run to its presynaptic row. One or two taps.
    """
    K, n_pre, n_post = taps.shape
    n = T * B
    for i in numba.prange(n_pre):
        row = out[i]
        for j in range(n_post):
            src = g_t[j]
            off = lo[i, j] * B
            w0 = taps[0, i, j]
            if K == 2:  # interp: both taps in one pass over the row
                w1 = taps[1, i, j]
                for m in range(n):
                    row[m] += w0 * src[off + m] + w1 * src[off + B + m]
            elif w0 != 0.0:
                for m in range(n):
                    row[m] += w0 * src[off + m]


@njit
def _starts(sorted_keys, n):  # pragma: no cover - compiled
    """CSR offsets of sorted integer keys in ``[0, n)``."""
    starts = np.zeros(n + 1, np.int64)
    for key in sorted_keys:
        starts[key + 1] += 1
    for q in range(n):
        starts[q + 1] += starts[q]
    return starts


@njit(parallel=True)
def sparse_rows_matmul(b_idx, t_idx, i_idx, vals, w, out):  # pragma: no cover - compiled
    """``out[b, t, :] += vals * w[i, :]`` for every nonzero input ``(b, t, i)`` (sorted by sample ``b``)."""
    B = out.shape[0]
    n_post = w.shape[1]
    starts = _starts(b_idx, B)
    for b in numba.prange(B):
        ob = out[b]
        for s in range(starts[b], starts[b + 1]):
            row, wi, v = ob[t_idx[s]], w[i_idx[s]], vals[s]
            for j in range(n_post):
                row[j] += v * wi[j]


@njit(parallel=True)
def sparse_rows_weight_grad(b_idx, t_idx, i_idx, vals, grad, partial):  # pragma: no cover - compiled
    """``g_w[i, :] += vals * grad[b, t, :]`` over the nonzero inputs (sorted by sample ``b``); returns ``g_w``.

    Each of the ``len(partial)`` threads takes a contiguous group of samples and accumulates into its own
    ``partial[c]`` (``[N_pre, N_post]``, small enough to stay in cache) while it streams through its samples'
    output-gradient rows once; the partial sums are added at the end."""
    n_chunks = partial.shape[0]
    B = grad.shape[0]
    n_post = grad.shape[2]
    starts = _starts(b_idx, B)
    for c in numba.prange(n_chunks):
        acc = partial[c]
        acc[:] = 0.0
        for s in range(starts[c * B // n_chunks], starts[(c + 1) * B // n_chunks]):
            row, gi, v = grad[b_idx[s], t_idx[s]], acc[i_idx[s]], vals[s]
            for j in range(n_post):
                gi[j] += v * row[j]
    out = partial[0].copy()
    for c in range(1, n_chunks):
        out += partial[c]
    return out


@njit(parallel=True)
def axonal_input_grad(G, lo, w0, w1, out):  # pragma: no cover - compiled
    """``out[b, t, i] = w0[i] * G[b, t + lo[i], i] + w1[i] * G[b, t + lo[i] + 1, i]`` (zero past the end):
    the input gradient of axonal interpolated delays, ``G = grad @ W^T`` ``[B, T, N_pre]``."""
    B, T, n_pre = G.shape
    for b in numba.prange(B):
        Gb, ob = G[b], out[b]
        for t in range(T):
            row = ob[t]
            for i in range(n_pre):
                m = t + lo[i]
                acc = 0.0
                if m < T:
                    acc += w0[i] * Gb[m, i]
                    if m + 1 < T:
                        acc += w1[i] * Gb[m + 1, i]
                row[i] = acc


@njit(parallel=True)
def count_nonzero_per_sample(x):  # pragma: no cover - compiled
    """The number of nonzeros of each sample ``x[b]`` (``x [B, T, N]``, C-contiguous)."""
    B = x.shape[0]
    counts = np.zeros(B, np.int64)
    for b in numba.prange(B):
        flat = x[b].ravel()
        c = 0
        for m in range(flat.size):
            c += flat[m] != 0
        counts[b] = c
    return counts


@njit(parallel=True)
def nonzero_entries(x, starts, t_idx, i_idx, vals):  # pragma: no cover - compiled
    """The nonzeros of ``x [B, T, N]`` in row-major order (as ``torch.nonzero``): sample ``b``'s go to
    ``starts[b]:starts[b + 1]`` of ``t_idx``, ``i_idx`` and ``vals``."""
    B, T, N = x.shape
    for b in numba.prange(B):
        s = starts[b]
        for t in range(T):
            row = x[b, t]
            for i in range(N):
                if row[i] != 0:
                    t_idx[s] = t
                    i_idx[s] = i
                    vals[s] = row[i]
                    s += 1


@njit(parallel=True)
def narrow_matmul_t(grad, weight, out):  # pragma: no cover - compiled
    """``out[r, i] = sum_c grad[r, c] * weight[i, c]`` for a narrow ``grad [R, K]`` (``weight [N, K]``): the sum
    in the order c = 0, 1, ..., one rounding per operation (no fused multiply-add), so the same bits on every
    CPU. Rows in blocks, one block per thread at a time."""
    R, K = grad.shape
    N = weight.shape[0]
    wt = np.ascontiguousarray(weight.T)  # [K, N]: each c's row is contiguous
    block = 256
    for r0 in numba.prange((R + block - 1) // block):
        for r in range(r0 * block, min(R, r0 * block + block)):
            o = out[r]
            g0 = grad[r, 0]
            w0 = wt[0]
            for i in range(N):
                o[i] = g0 * w0[i]
            for c in range(1, K):
                gc = grad[r, c]
                wc = wt[c]
                for i in range(N):
                    o[i] = o[i] + gc * wc[i]


@njit(parallel=True)
def axonal_dense_forward(x, w, lo, w0, w1, out):  # pragma: no cover - compiled
    """``out[b, t, :] += sum_i (w0[i] x[b, t - lo[i], i] + w1[i] x[b, t - lo[i] - 1, i]) w[i, :]``, reading
    ``x`` ``[B, T, N_pre]`` once in order and skipping its zeros (``out`` zeroed, ``[B, T, N_post]``)."""
    B, T, n_pre = x.shape
    n_post = w.shape[1]
    for b in numba.prange(B):
        xb, ob = x[b], out[b]
        for s in range(T):
            row = xb[s]
            for i in range(n_pre):
                v = row[i]
                if v == 0:
                    continue
                m = s + lo[i]
                if m >= T:
                    continue
                a = w0[i] * v
                for j in range(n_post):
                    ob[m, j] += a * w[i, j]
                if m + 1 < T:
                    c = w1[i] * v
                    for j in range(n_post):
                        ob[m + 1, j] += c * w[i, j]


@njit(parallel=True)
def axonal_dense_backward(g, x, wt, lo, w0, w1, gx, gw, gf):  # pragma: no cover - compiled
    """The gradients of :func:`axonal_dense_forward` from ``g = dL/dout`` ``[B, T, N_post]`` and ``wt = w.T``
    ``[N_post, N_pre]``: ``gx`` ``[B, T, N_pre]`` (input), and per sample ``gw[b]`` ``[N_pre, N_post]``
    (weights) and ``gf[b]`` ``[N_pre]`` (the fractional delays), which the caller sums over samples in order
    (the same bits at any thread count). Per sample, ``G = g[b] @ w.T`` first (one row per step, plus a zero row
    past the end), then each input element reads its two shifted rows."""
    B, T, n_pre = x.shape
    n_post = wt.shape[0]
    for b in numba.prange(B):
        gb, xb, gxb, gwb, gfb = g[b], x[b], gx[b], gw[b], gf[b]
        G = np.zeros((T + 2, n_pre), dtype=gx.dtype)
        for t in range(T):
            Gt = G[t]
            for j in range(n_post):
                c = gb[t, j]
                if c != 0:
                    wj = wt[j]
                    for i in range(n_pre):
                        Gt[i] += c * wj[i]
        for s in range(T):
            xs, gxs = xb[s], gxb[s]
            for i in range(n_pre):
                m = min(s + lo[i], T)  # rows T and T + 1 are zero: past the end
                a0 = G[m, i]
                a1 = G[min(m + 1, T), i]
                gxs[i] = w0[i] * a0 + w1[i] * a1
                v = xs[i]
                if v == 0:
                    continue
                gfb[i] += v * (a1 - a0)
                if m < T:
                    c0 = v * w0[i]
                    for j in range(n_post):
                        gwb[i, j] += c0 * gb[m, j]
                    if m + 1 < T:
                        c1 = v * w1[i]
                        for j in range(n_post):
                            gwb[i, j] += c1 * gb[m + 1, j]
