"""Delayed feed-forward currents: the one place delays act on a layer's input in the torch engine.

``delayed_current(x, weight, delay_steps, mode)`` returns ``I[b, t, j] = sum_i W[i, j] x[b, t - D, i]`` where the
delay ``D`` is per presynaptic neuron (axonal, ``[N_pre]``) or per synapse (synaptic, ``[N_pre, N_post]``):

* ``round`` mode: integer steps ``D = floor(d/dt + 0.5)``, exactly what Brian2 does at the same dt.
* ``interp`` mode (training): a real-valued delay ``d/dt = D0 + f`` delivers ``(1-f)`` of the spike after ``D0``
  steps and ``f`` after ``D0+1`` steps, so the loss has a gradient with respect to the delay. With integer
  delays it equals ``round`` mode.

Axonal delays are one gather over time and one matmul. Per-synapse delays have two formulations, chosen by cost:

* the *loop* (the reference): one full matmul per distinct delay value, masked to the synapses that have it.
  Its cost grows linearly with the number of distinct delays (up to ``max_delay + 1``), as DCLS's does;
* the *taps* formulation (:class:`_SynapticTaps`): every synapse's interpolation taps are addressed directly.
  The forward pass scatters each input spike to its synapses' delayed target steps and the weight gradient
  gathers the output gradient at the same places (cost ``nnz(x) * N_post`` per tap: spikes are sparse); the
  input gradient, which is dense because the surrogate derivative is, adds each synapse's time-shifted
  output-gradient row into its presynaptic row (``N_pre * N_post * B * T`` multiply-adds, a numba kernel on
  the CPU, a chunked gather on CUDA). None of it depends on the maximum delay.
"""
from __future__ import annotations

import numpy as np
import torch

from eventsnn.model import cpu_backend
from eventsnn.model.contract import round_half_up
from eventsnn.model.cpu_backend import numba_threads

DELAY_MODES = ("round", "interp")

# Relative costs per element, measured on a 2-core x86 CPU (torch 2.15, numba 0.68; benchmarks/synaptic_delays.py):
# a dense matmul multiply-add, a scatter/gather of one element (index_add_/advanced indexing), one multiply-add
# of the input-gradient kernel. They only choose between two exact formulations, never change a result.
_COST_MATMUL, _COST_INDEXED, _COST_AXPY = 0.015, 1.0, 0.35


def delayed_current(x: torch.Tensor, weight: torch.Tensor, delay_steps: torch.Tensor | None,
                    mode: str, method: str = "auto") -> torch.Tensor:
    """Feed-forward input current per step, ``[B, T, N_post]``.

    ``x``: presynaptic spikes ``[B, T, N_pre]``; ``weight`` ``[N_pre, N_post]``; ``delay_steps``: None,
    ``[N_pre]`` (axonal) or ``[N_pre, N_post]`` (synaptic), real-valued in steps (rounded half-up in ``round``
    mode). ``method`` (synaptic delays only): ``"auto"`` (the cheaper of the two), ``"loop"`` or ``"taps"``.
    """
    if mode not in DELAY_MODES:
        raise ValueError(f"unknown delay mode {mode!r}")
    if method not in ("auto", "loop", "taps"):
        raise ValueError(f"unknown synaptic-delay method {method!r}")
    if delay_steps is None:
        return input_matmul(x, weight)
    # A delay of T steps or more delivers after the sequence ends: the same as exactly T (bounds memory).
    delay_steps = delay_steps.clamp(min=0, max=float(x.shape[1]))
    if mode == "round":
        lo = round_half_up(delay_steps.detach(), torch).long()
        if lo.dim() == 1:  # axonal: gather each presynaptic neuron's delayed train
            entries = None if x.requires_grad or weight.requires_grad else _sparse_cpu_entries(x, weight)
            if entries is not None:
                return _delayed_rows_matmul(x, weight, lo, entries)
            if _fused_axonal(x, weight):  # the interp kernel with no fraction: interp = round to the bit
                return _AxonalDense.apply(x, weight, torch.zeros_like(weight[:, 0]).detach(), lo)
            return input_matmul(_gather_delayed(x, lo), weight)
        taps = weight.unsqueeze(0)
    else:
        lo_f = torch.floor(delay_steps.detach())
        frac = delay_steps - lo_f
        lo = lo_f.long()
        if lo.dim() == 1:
            entries = _sparse_cpu_entries(x, weight)
            if entries is not None:
                return _AxonalTaps.apply(x, weight, frac, lo, entries)
            if _fused_axonal(x, weight):
                return _AxonalDense.apply(x, weight, frac, lo)
            return input_matmul((1 - frac) * _gather_delayed(x, lo) + frac * _gather_delayed(x, lo + 1), weight)
        taps = torch.stack([weight * (1 - frac), weight * frac])
    if method == "auto":
        method = _cheaper_method(x, lo, taps.shape[0])
    if method == "loop":
        return _synaptic_loop(x, taps, lo)
    return _SynapticTaps.apply(x, taps, lo)


SPARSE_DENSITY = 0.05  # inputs at most this dense take the sparse path of input_matmul on the CPU


def input_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight`` for a whole sequence ``x [B, T, N_pre]``. Spike trains are sparse: on the CPU, an input
    with at most :data:`SPARSE_DENSITY` nonzeros adds one weight row per nonzero (and the weight gradient one
    output-gradient row per nonzero) instead of multiplying its zeros; the input gradient stays one matmul."""
    entries = _sparse_cpu_entries(x, weight)
    if entries is None:
        return x @ weight
    return _SparseInputMatmul.apply(x, weight, entries)


def _sparse_cpu_entries(x: torch.Tensor, other: torch.Tensor):
    """Where the CPU kernels apply (to ``x`` and ``other``, the weight or gradient it meets) and ``x [B, T, N]``
    has at most :data:`SPARSE_DENSITY` nonzeros: ``(b, t, i, values)`` of its nonzeros in row-major order
    (``torch.nonzero``'s). Otherwise None. One counting pass and one gathering pass, parallel over samples (a
    hidden layer's spikes at 1 ms are tens of millions of entries)."""
    if not (cpu_backend.applies(x, other) and x.dim() == 3) or x.numel() == 0:
        return None
    from eventsnn.model.delays_numba import count_nonzero_per_sample, nonzero_entries
    xd = x.detach().contiguous()
    xn = xd.numpy()
    with numba_threads():
        counts = count_nonzero_per_sample(xn)
        total = int(counts.sum())
        if total > SPARSE_DENSITY * x.numel():
            return None
        starts = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=starts[1:])
        t, i, vals = (torch.empty(total, dtype=torch.long), torch.empty(total, dtype=torch.long),
                      torch.empty(total, dtype=xd.dtype))
        nonzero_entries(xn, starts, t.numpy(), i.numpy(), vals.numpy())
    b = torch.repeat_interleave(torch.arange(len(counts)), torch.from_numpy(counts))
    return b, t, i, vals


NARROW = 4  # output gradients at most this wide go through narrow_matmul_t instead of BLAS


def grad_times_weight_t(grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``grad @ weight.T`` (``grad [B, T, K]``, ``weight [N, K]``): the input gradient of a layer's current. For a
    narrow ``grad`` on the CPU (a readout of a few classes), a numba kernel: BLAS spends most of its time on the
    call for ``K`` of 2 or 3 and its fused multiply-adds differ by CPU; the kernel rounds every product and sum."""
    if grad.shape[-1] > NARROW or not cpu_backend.applies(grad, weight):
        return grad @ weight.t()
    from eventsnn.model.delays_numba import narrow_matmul_t
    g = grad.detach().contiguous()
    out = g.new_empty(*g.shape[:-1], weight.shape[0])
    with numba_threads():
        narrow_matmul_t(g.reshape(-1, g.shape[-1]).numpy(), weight.detach().contiguous().numpy(),
                        out.reshape(-1, weight.shape[0]).numpy())
    return out


class _SparseInputMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, entries):
        from eventsnn.model.delays_numba import sparse_rows_matmul
        b, t, i, vals = entries  # row-major: sorted by sample
        out = x.new_zeros(x.shape[0], x.shape[1], weight.shape[1])
        with numba_threads():
            sparse_rows_matmul(b.numpy(), t.numpy(), i.numpy(), vals.numpy(), weight.detach().contiguous().numpy(),
                               out.numpy())
        ctx.save_for_backward(weight, b, t, i, vals)
        return out

    @staticmethod
    def backward(ctx, grad):
        weight, b, t, i, vals = ctx.saved_tensors
        grad = grad.contiguous()
        g_x = grad_times_weight_t(grad, weight) if ctx.needs_input_grad[0] else None
        g_w = _rows_weight_grad(b, t, i, vals, grad, weight.shape[0]) if ctx.needs_input_grad[1] else None
        return g_x, g_w, None


def _rows_weight_grad(b, t, i, vals, grad: torch.Tensor, n_pre: int) -> torch.Tensor:
    """``g[i, :] = sum vals * grad[b, t, :]`` over the listed nonzero inputs ``(b, t, i)``, sorted by sample
    ``b`` (CPU kernel; partial sums over a fixed number of sample groups, whatever the number of threads)."""
    from eventsnn.model.cpu_backend import WORK_CHUNKS
    from eventsnn.model.delays_numba import sparse_rows_weight_grad
    with numba_threads():
        chunks = max(1, min(WORK_CHUNKS, grad.shape[0]))
        partial = np.empty((chunks, n_pre, grad.shape[2]), dtype=grad.numpy().dtype)
        return torch.from_numpy(sparse_rows_weight_grad(b.numpy(), t.numpy(), i.numpy(), vals.numpy(),
                                                        grad.numpy(), partial))


def shifted_weight_grad(x: torch.Tensor, grad: torch.Tensor, shift: int = 0) -> torch.Tensor:
    """``sum_{b,t} x[b, t - shift]^T grad[b, t]`` (``[N_pre, N_post]``): the weight gradient of a current driven
    by ``x`` delayed ``shift`` steps (the recurrent weights' gradient). From ``x``'s nonzeros where it is
    sparse on the CPU, else one matmul."""
    B, T, n_pre = x.shape
    entries = _sparse_cpu_entries(x, grad)
    if entries is not None:
        b, t, i, vals = _moved_spikes(*entries, shift, T)
        return _rows_weight_grad(b, t, i, vals, grad.contiguous(), n_pre)
    x = _shift_time(x, shift)
    return x.reshape(-1, n_pre).t() @ grad.reshape(-1, grad.shape[2])


class _AxonalTaps(torch.autograd.Function):
    """Interpolated axonal delays and the matmul in one, from the input's nonzeros (CPU, sparse input):
    ``out[b, t, :] = sum_i ((1 - f_i) x[b, t - lo_i, i] + f_i x[b, t - lo_i - 1, i]) W[i, :]``.

    Each input spike ``(b, t, i)`` becomes two shifted ones, ``(b, t + lo_i, i)`` and ``(b, t + lo_i + 1, i)``;
    the forward adds their weight rows and the weight/delay gradients gather the output gradient there (cost
    ``nnz * N_post`` each); the input gradient is one matmul ``grad @ W^T`` read back at the shifted steps. The
    whole-sequence delayed copies of the input (``[B, T, N_pre]``, dense) are never formed.
    """

    @staticmethod
    def forward(ctx, x, weight, frac, lo, entries):
        from eventsnn.model.delays_numba import sparse_rows_matmul
        B, T, _ = x.shape
        b, t, i, vals = entries  # row-major: sorted by sample
        f = frac.detach()
        taps = []  # per tap: (sample, target step, neuron, spike value); each stays sorted by sample
        for k in (0, 1):
            taps.append(_moved_spikes(b, t, i, vals, lo[i] + k, T))
        # both taps in one list, still sorted by sample (stable sort of the concatenation)
        bb = torch.cat([taps[0][0], taps[1][0]])
        order = torch.argsort(bb, stable=True)
        w = torch.cat([1 - f[taps[0][2]], f[taps[1][2]]])
        cat = [torch.cat([taps[0][q], taps[1][q]])[order] for q in (1, 2, 3)]
        out = x.new_zeros(B, T, weight.shape[1])
        with numba_threads():
            sparse_rows_matmul(bb[order].numpy(), cat[0].numpy(), cat[1].numpy(), (cat[2] * w[order]).numpy(),
                               weight.detach().contiguous().numpy(), out.numpy())
        ctx.save_for_backward(weight, frac, lo, *taps[0], *taps[1])
        return out

    @staticmethod
    def backward(ctx, grad):
        from eventsnn.model.delays_numba import axonal_input_grad
        weight, frac, lo, *flat = ctx.saved_tensors
        taps = (flat[:4], flat[4:])
        grad = grad.contiguous()
        f = frac.detach()
        g_x = g_w = g_f = None
        if ctx.needs_input_grad[0]:
            G = grad_times_weight_t(grad, weight.detach())
            g_x = torch.empty_like(G)
            with numba_threads():
                axonal_input_grad(G.numpy(), lo.numpy(), (1 - f).contiguous().numpy(), f.contiguous().numpy(),
                                  g_x.numpy())
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            # R[k][i, :] = sum over the spikes of tap k: value * grad at the shifted step
            R = [_rows_weight_grad(b, tk, i, vals, grad, weight.shape[0]) for b, tk, i, vals in taps]
            if ctx.needs_input_grad[1]:
                g_w = (1 - f)[:, None] * R[0] + f[:, None] * R[1]
            if ctx.needs_input_grad[2]:
                g_f = (weight.detach() * (R[1] - R[0])).sum(1)
        return g_x, g_w, g_f, None, None


FUSED_AXONAL_MAX_POST = 32  # axonal delays of a dense input into at most this many neurons: one fused kernel (CPU)
FUSED_AXONAL_DENSITY = 0.25  # ... into more than NARROW of them: for inputs with at most this share of nonzeros


def _fused_axonal(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Where :class:`_AxonalDense` takes axonal delays of an input too dense for the spike paths (CPU): into at
    most :data:`NARROW` neurons, or at most :data:`FUSED_AXONAL_MAX_POST` when at most
    :data:`FUSED_AXONAL_DENSITY` of the input is nonzero. Measured (``benchmarks/narrow_delays.py``, one core,
    input ``[32, T, 100]``): at T = 10,000, 4.6-6.1x faster than the gather + matmul into 2-32 neurons at 8%
    density and 2-4.6x at 100%; at T = 1000, 1.6-2.9x into 2-4 at any density and 1.8-2.3x into 20-32 at 8%,
    but 0.6x into 20 at 100%; even with it into 64."""
    n_post = weight.shape[1]
    if n_post > FUSED_AXONAL_MAX_POST or not cpu_backend.applies(x, weight):
        return False
    return n_post <= NARROW or int(torch.count_nonzero(x.detach())) <= FUSED_AXONAL_DENSITY * x.numel()


class _AxonalDense(torch.autograd.Function):
    """Interpolated axonal delays and the matmul in one numba pass over a dense input (CPU), for a narrow layer
    (a readout): ``out[b, t, :] = sum_i ((1 - f_i) x[b, t - lo_i, i] + f_i x[b, t - lo_i - 1, i]) W[i, :]``.

    The torch formulation forms two delayed copies of the whole input and their blend (``[B, T, N_pre]`` each)
    and runs a matmul of width ``N_post``, and its backward as many again; here each pass reads the input once in
    order (skipping its zeros in the forward pass and the weight and delay gradients) and the input gradient's
    dot products are ``N_post`` long, so for few postsynaptic neurons the cost is a few passes over the input.
    """

    @staticmethod
    def forward(ctx, x, weight, frac, lo):
        from eventsnn.model.delays_numba import axonal_dense_forward
        xd, w, f = x.detach().contiguous(), weight.detach().contiguous(), frac.detach().contiguous()
        out = x.new_zeros(x.shape[0], x.shape[1], w.shape[1])
        w0 = (1 - f).contiguous()
        with numba_threads():
            axonal_dense_forward(xd.numpy(), w.numpy(), lo.contiguous().numpy(), w0.numpy(), f.numpy(), out.numpy())
        ctx.save_for_backward(xd, w, w0, f, lo)
        return out

    @staticmethod
    def backward(ctx, grad):
        from eventsnn.model.delays_numba import axonal_dense_backward
        xd, w, w0, f, lo = ctx.saved_tensors
        B, _, n_pre = xd.shape
        gx = torch.empty_like(xd)
        gw = xd.new_zeros(B, n_pre, w.shape[1])
        gf = xd.new_zeros(B, n_pre)
        with numba_threads():
            axonal_dense_backward(grad.contiguous().numpy(), xd.numpy(), w.t().contiguous().numpy(),
                                  lo.contiguous().numpy(),
                                  w0.numpy(), f.numpy(), gx.numpy(), gw.numpy(), gf.numpy())
        # per-sample partial sums added in sample order (numpy's axis-0 sum): no dependence on the threads
        g_w = torch.from_numpy(gw.numpy().sum(0)) if ctx.needs_input_grad[1] else None
        g_f = torch.from_numpy(gf.numpy().sum(0)) if ctx.needs_input_grad[2] else None
        return (gx if ctx.needs_input_grad[0] else None), g_w, g_f, None


def _cheaper_method(x: torch.Tensor, lo: torch.Tensor, n_taps: int) -> str:
    """Estimated cost of a training step (forward + the gradients autograd will ask for) of each formulation."""
    B, T, n_pre = x.shape
    dense = B * T * n_pre * lo.shape[1]
    need_grad = torch.is_grad_enabled()
    n_mats = 3 if need_grad and x.requires_grad else (2 if need_grad else 1)
    distinct = int(torch.unique(torch.cat([lo.flatten() + k for k in range(n_taps)])).numel())
    loop = n_mats * distinct * dense * _COST_MATMUL
    density = float((x != 0).sum()) / max(1, x.numel())
    taps = (2 if need_grad else 1) * n_taps * density * dense * _COST_INDEXED
    if need_grad and x.requires_grad:
        taps += n_taps * dense * (_COST_AXPY if x.device.type == "cpu" else _COST_INDEXED)
    return "loop" if loop <= taps else "taps"


def _shift_time(x: torch.Tensor, d: int) -> torch.Tensor:
    """x delayed by d steps along dim 1 (zeros enter at the start)."""
    if d == 0:
        return x
    T = x.shape[1]
    if d >= T:
        return torch.zeros_like(x)
    return torch.nn.functional.pad(x[:, : T - d], (0, 0, d, 0))


def _moved_spikes(b, t, i, vals, steps, T):
    """Input spikes ``(b, t, i, vals)`` moved ``steps`` later (per spike), those landing past step ``T - 1``
    dropped; the order is kept."""
    t = t + steps
    keep = t < T
    return b[keep], t[keep], i[keep], vals[keep]


def _delayed_rows_matmul(x: torch.Tensor, weight: torch.Tensor, D: torch.Tensor, entries) -> torch.Tensor:
    """``_gather_delayed(x, D) @ weight`` without a gradient, from ``x``'s nonzeros ``entries`` (of
    :func:`_sparse_cpu_entries`) moved ``D[i]`` steps later (sparse inputs on the CPU: evaluation at the training
    step). The moved spikes are ordered as the delayed raster's nonzeros are, so every sum is taken in the same
    order as by the gather and the result is the same to the bit."""
    from eventsnn.model.delays_numba import sparse_rows_matmul
    B, T, n_pre = x.shape
    b, t, i, vals = _moved_spikes(*entries, D[entries[2]], T)
    order = np.argsort(((b * T + t) * n_pre + i).numpy())  # the keys are distinct: any sort gives this order
    out = x.new_zeros(B, T, weight.shape[1])
    with numba_threads():
        sparse_rows_matmul(b.numpy()[order], t.numpy()[order], i.numpy()[order], vals.numpy()[order],
                           weight.contiguous().numpy(), out.numpy())
    return out


def _gather_delayed(x: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """``out[:, t, j] = x[:, t - D[j], j]`` (zero before the start)."""
    B, T, N = x.shape
    Dmax = int(D.max().item()) if D.numel() else 0
    if Dmax == 0:
        return x
    xp = torch.nn.functional.pad(x, (0, 0, Dmax, 0))
    idx = (torch.arange(T, device=x.device)[:, None] + Dmax - D[None, :]).clamp(min=0)
    return torch.gather(xp, 1, idx.unsqueeze(0).expand(B, T, N))


def _synaptic_loop(x: torch.Tensor, taps: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """Reference formulation: one matmul per step shift ``s``, with the weights of the taps landing there."""
    out = None
    for s in torch.unique(torch.cat([lo.flatten() + k for k in range(taps.shape[0])])).tolist():
        w = sum(taps[k] * (lo + k == s).to(taps.dtype) for k in range(taps.shape[0]))
        term = _shift_time(x, s) @ w
        out = term if out is None else out + term
    return out


_CHUNK = 1 << 22  # elements of index per scatter/gather call of the torch path (32 MiB of int64)
class _SynapticTaps(torch.autograd.Function):
    """``out[b, t, j] = sum_k sum_i taps[k, i, j] * x[b, t - lo[i, j] - k, i]``; cost independent of ``max(lo)``."""

    @staticmethod
    def forward(ctx, x, taps, lo):
        B, T, _ = x.shape
        K, _, n_post = taps.shape
        Tp = T + int(lo.max()) + K  # padded so that every target step exists; the tail is dropped
        b, t, i = x.nonzero(as_tuple=True)  # row-major: sorted by sample
        vals = x[b, t, i]
        out = x.new_zeros(B, Tp, n_post)
        if cpu_backend.applies(x, taps):
            from eventsnn.model.delays_numba import forward_kernel
            with numba_threads():
                forward_kernel(b.numpy(), t.numpy(), i.numpy(), vals.numpy(), taps.detach().numpy(), lo.numpy(),
                               out.numpy())
        else:
            flat = out.view(-1)
            for s, pos in _positions(b * Tp + t, i, lo, n_post):
                for k in range(K):
                    flat.index_add_(0, (pos + k * n_post).view(-1), (vals[s, None] * taps[k, i[s]]).view(-1))
        ctx.save_for_backward(taps, lo, b, t, i, vals)
        ctx.dims = (B, T, Tp)
        return out[:, :T].contiguous()

    @staticmethod
    def backward(ctx, grad):
        taps, lo, b, t, i, vals = ctx.saved_tensors
        B, T, Tp = ctx.dims
        K, n_pre, n_post = taps.shape
        g_x = g_taps = None
        if ctx.needs_input_grad[1]:
            gp = grad.new_zeros(B, Tp, n_post)
            gp[:, :T] = grad
            g_taps = torch.zeros_like(taps)
            if cpu_backend.applies(grad, taps):
                from eventsnn.model.delays_numba import weight_grad_kernel
                order = torch.argsort(i, stable=True)
                with numba_threads():
                    weight_grad_kernel(order.numpy(), b.numpy(), t.numpy(), i.numpy(), vals.numpy(), lo.numpy(),
                                       gp.numpy(), g_taps.numpy())
            else:
                flat = gp.view(-1)
                for s, pos in _positions(b * Tp + t, i, lo, n_post):
                    for k in range(K):
                        g_taps[k].index_add_(0, i[s], vals[s, None] * flat[pos + k * n_post])
        if ctx.needs_input_grad[0]:
            g_x = _input_grad(grad.contiguous(), taps.detach(), lo, Tp)
        return g_x, g_taps, None


def _positions(row, i, lo, n_post):
    """Chunks of (spike slice, flat target index ``[spikes, N_post]`` of tap 0)."""
    cols = torch.arange(n_post, device=lo.device)
    step = max(1, _CHUNK // n_post)
    for start in range(0, row.numel(), step):
        s = slice(start, start + step)
        yield s, (row[s, None] + lo[i[s]]) * n_post + cols


def _input_grad(grad: torch.Tensor, taps: torch.Tensor, lo: torch.Tensor, Tp: int) -> torch.Tensor:
    """``g_x[b, t, i] = sum_k sum_j taps[k, i, j] * grad[b, t + lo[i, j] + k, j]`` (zero past the end)."""
    B, T, n_post = grad.shape
    K, n_pre, _ = taps.shape
    if cpu_backend.applies(grad, taps):
        from eventsnn.model.delays_numba import input_grad_kernel
        g_t = grad.new_zeros(n_post, Tp, B)  # time-major, batch innermost: each synapse reads one contiguous run
        g_t[:, :T] = grad.permute(2, 1, 0)
        out = grad.new_zeros(n_pre, T, B)
        with numba_threads():
            input_grad_kernel(g_t.view(n_post, -1).numpy(), taps.numpy(), lo.numpy(), T, B, out.view(n_pre, -1).numpy())
        return out.permute(2, 1, 0).contiguous()
    gp = grad.new_zeros(B, Tp * n_post)
    gp[:, : T * n_post] = grad.reshape(B, -1)
    out = grad.new_zeros(B, T, n_pre)
    cols = torch.arange(n_post, device=grad.device)
    step = max(1, _CHUNK // (B * n_pre * n_post))
    for t0 in range(0, T, step):
        t = torch.arange(t0, min(T, t0 + step), device=grad.device)
        for k in range(K):
            idx = (t[:, None, None] + lo[None] + k) * n_post + cols
            g = gp[:, idx.view(-1)].view(B, len(t), n_pre, n_post)
            out[:, t0: t0 + len(t)] += torch.einsum("btij,ij->bti", g, taps[k])
    return out
