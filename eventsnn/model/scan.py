"""The LIF time scan of the discrete-time contract (DESIGN.md §2), forward and backward.

Two implementations of the same maths, selected by ``backend``:

* ``"autograd"`` — the reference: a per-step PyTorch loop; autograd records every step and replays it
  backwards. Simple, obviously right, slow (tens of graph nodes per step).
* ``"fused"`` — :class:`LIFScan`, a custom autograd function. The forward pass runs the same per-step
  arithmetic in the same order (so spikes and traces are bit-identical to the reference) without
  recording a graph; it keeps only the pre-reset voltage (and the synaptic current when taus are
  learned). The backward pass is a hand-written reverse scan of the adjoint equations below, and the
  weight/tau gradients are formed after the scan by one matmul / reduction over the whole sequence.
  On CUDA, layers without recurrence or refractoriness run both scans in one Triton kernel per
  direction (:mod:`eventsnn.model.scan_triton`): one program per block of (sample, neuron) pairs walks
  through time in registers, touching each input once.

Forward, per step ``n`` (``s`` detached in the reset, as in the reference)::

    v'_n = a v_{n-1} + k I_{n-1}        (held at v_{n-1} while refractory)
    s_n  = H(v'_n - theta)              (0 while refractory)
    I_n  = b I_{n-1} + F_n + sum_d s_{n-d} W_d
    v_n  = v'_n (1 - s_n)   |   v'_n - theta s_n

Backward, with adjoints ``lv = dL/dv_n``, ``lI = dL/dI_n`` running from ``n = T-1`` down::

    dL/dF_n = lI
    gs      = dL/ds_n + sum_d lI_{n+d} W_d^T
    lv'     = lv (1 - s_n) | lv    + gs * surrogate'(v'_n - theta)     (spiking layer)
    lv'     = lv + dL/dout_n                                          (readout: out = v')
    lv      <- a lv'   (lv' while refractory),   lI <- k lv' (0 while refractory) + b lI
    dL/da   = sum lv'_n v_{n-1},  dL/dk = sum lv'_n I_{n-1},  dL/db = sum lI_n I_{n-1}
    dL/dW_d = sum_n s_{n-d}^T lI_n
"""
from __future__ import annotations

import math

import numpy as np
import torch

from eventsnn.model import cpu_backend
from eventsnn.model.cpu_backend import numba_threads
from eventsnn.model.delays import _shift_time, shifted_weight_grad
from eventsnn.model.surrogates import (FAST_SIGMOID, MULTI_GAUSSIAN_H, MULTI_GAUSSIAN_S,  # noqa: F401
                                       surrogate_id)

SCAN_BACKENDS = ("fused", "autograd")


# ----------------------------------------------------------------------------- surrogate gradients



def surrogate_derivative(x: torch.Tensor, kind: str, slope: float) -> torch.Tensor:
    """The pseudo-derivative of the Heaviside step used in the backward pass."""
    if kind == "fast-sigmoid":  # derivative of x/(1+slope|x|) (SuperSpike)
        return 1.0 / (slope * x.abs() + 1.0) ** 2
    if kind == "atan":  # derivative of atan(pi/2 slope x)/pi
        return 0.5 * slope / (1.0 + (math.pi / 2 * slope * x) ** 2)
    if kind == "multi-gaussian":
        sigma, h, s = 1.0 / slope, MULTI_GAUSSIAN_H, MULTI_GAUSSIAN_S

        def g(mu, sig):
            return torch.exp(-((x - mu) ** 2) / (2 * sig**2)) / (math.sqrt(2 * math.pi) * sig)
        return (1 + h) * g(0.0, sigma) - h * g(sigma, s * sigma) - h * g(-sigma, s * sigma)
    surrogate_id(kind)  # raises: unknown name
    raise AssertionError(kind)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kind: str, slope: float):
        ctx.save_for_backward(x)
        ctx.kind, ctx.slope = kind, slope
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * surrogate_derivative(x, ctx.kind, ctx.slope), None, None


def spike_fn(x: torch.Tensor, kind: str | None, slope: float) -> torch.Tensor:
    """Heaviside(x) with a surrogate gradient (``kind=None``: plain step, no gradient)."""
    if kind is None or not torch.is_grad_enabled():
        return (x >= 0).to(x.dtype)
    return _Spike.apply(x, kind, slope)


# ----------------------------------------------------------------------------- the scan

def lif_scan(F: torch.Tensor, a: torch.Tensor, b: torch.Tensor, k: torch.Tensor, theta: torch.Tensor,
             R: torch.Tensor, rec: list[tuple[int, torch.Tensor]], *, spiking: bool, reset: str,
             surrogate: str | None, slope: float, backend: str = "fused") -> torch.Tensor:
    """Run the contract's time scan over input current ``F [B, T, N]``.

    ``a, b, k``: propagators ``[N]``; ``theta``: thresholds ``[N]``; ``R``: refractory steps ``[N]`` (long);
    ``rec``: recurrent terms ``(delay_steps, W [N, N])``. Returns spikes (or, for a readout, the voltage
    trace) ``[B, T, N]``.
    """
    if backend == "autograd":
        return _scan_autograd(F, a, b, k, theta, R, rec, spiking, reset, surrogate, slope)
    if backend != "fused":
        raise ValueError(f"unknown scan backend {backend!r}; choose one of {', '.join(SCAN_BACKENDS)}")
    delays = tuple(d for d, _ in rec)
    cfg = (spiking, reset, surrogate, float(slope), delays)
    return LIFScan.apply(F, a, b, k, theta, R, cfg, *[w for _, w in rec])


def _scan_autograd(F, a, b, k, theta, R, rec, spiking, reset, surrogate, slope):
    B, T, N = F.shape
    v = F.new_zeros(B, N)
    I = F.new_zeros(B, N)
    use_ref = spiking and bool((R > 1).any())
    ref = torch.zeros(B, N, dtype=torch.long, device=F.device)
    out = []
    for n in range(T):
        v_new = a * v + k * I
        if use_ref:
            ref = (ref - 1).clamp(min=0)
            held = ref > 0
            v = torch.where(held, v, v_new)
        else:
            v = v_new
        I = b * I
        if spiking:
            s = spike_fn(v - theta, surrogate, slope)
            if use_ref:
                s = s * (~held).to(s.dtype)
            inp = F[:, n]
            for d, w in rec:
                if d == 0:
                    inp = inp + s @ w
                elif n - d >= 0:
                    inp = inp + out[n - d] @ w
            I = I + inp
            sd = s.detach()
            if reset == "zero":
                v = v * (1 - sd)
            else:
                v = v - theta * sd
            if use_ref:
                ref = torch.where(sd > 0, R.expand(B, N), ref)
            out.append(s)
        else:
            I = I + F[:, n]
            out.append(v)
    return torch.stack(out, dim=1)


def _scan_forward(F, a, b, k, theta, R, ws, spiking, reset, delays, keep_I):
    """Forward of :class:`LIFScan` without a graph: ``(out, v_pre, held, I_hist)``."""
    B, T, N = F.shape
    v = F.new_zeros(B, N)
    I = F.new_zeros(B, N)
    use_ref = spiking and bool((R > 1).any())
    ref = torch.zeros(B, N, dtype=torch.long, device=F.device)
    out = torch.empty_like(F)
    v_pre = torch.empty_like(F) if spiking else out
    held_hist = torch.zeros(B, T, N, dtype=torch.bool, device=F.device) if use_ref else None
    I_hist = torch.empty_like(F) if keep_I else None
    for n in range(T):
        v_new = a * v + k * I
        if use_ref:
            ref = (ref - 1).clamp(min=0)
            held = ref > 0
            held_hist[:, n] = held
            v = torch.where(held, v, v_new)
        else:
            v = v_new
        I = b * I
        if spiking:
            v_pre[:, n] = v
            s = (v - theta >= 0).to(v.dtype)
            if use_ref:
                s = s * (~held).to(s.dtype)
            out[:, n] = s
            inp = F[:, n]
            for d, w in zip(delays, ws):
                if d == 0:
                    inp = inp + s @ w
                elif n - d >= 0:
                    inp = inp + out[:, n - d] @ w
            I = I + inp
            if reset == "zero":
                v = v * (1 - s)
            else:
                v = v - theta * s
            if use_ref:
                ref = torch.where(s > 0, R.expand(B, N), ref)
        else:
            I = I + F[:, n]
            out[:, n] = v
        if keep_I:
            I_hist[:, n] = I
    return out, v_pre, held_hist, I_hist


def _scan_backward(gout, out, v_pre, held, a, b, k, theta, ws, spiking, reset, delays, surrogate, slope):
    """Reverse scan: ``(dF, lvp)`` — the adjoints of the input current and of the pre-reset voltage."""
    B, T, N = gout.shape
    dF = torch.empty_like(gout)
    lvp_hist = torch.empty_like(gout)
    lv = gout.new_zeros(B, N)
    lI = gout.new_zeros(B, N)
    wts = [w.t() for w in ws]
    for n in range(T - 1, -1, -1):
        dF[:, n] = lI
        if spiking:
            gs = gout[:, n]
            for d, wt in zip(delays, wts):
                if n + d < T:
                    gs = gs + dF[:, n + d] @ wt
            sg = surrogate_derivative(v_pre[:, n] - theta, surrogate, slope)
            if held is not None:
                sg = sg * (~held[:, n]).to(sg.dtype)
            lvp = (lv * (1 - out[:, n]) if reset == "zero" else lv) + gs * sg
        else:
            lvp = lv + gout[:, n]
        lvp_hist[:, n] = lvp
        if held is not None:
            h = held[:, n]
            lv = torch.where(h, lvp, a * lvp)
            lI = torch.where(h, torch.zeros_like(lvp), k * lvp) + b * lI
        else:
            lv = a * lvp
            lI = k * lvp + b * lI
    return dF, lvp_hist


def _np(t: torch.Tensor):
    return t.detach().contiguous().numpy()


def _scan_forward_cpu(F, a, b, k, theta, R, ws, spiking, reset, delays, keep_I, keep_state=True):
    """:func:`_scan_forward` as one numba kernel (:mod:`eventsnn.model.scan_numba`); same outputs.
    ``keep_state=False`` (nothing will be differentiated): ``v_pre`` and ``held`` are not stored (None)."""
    from eventsnn.model.scan_numba import scan_forward
    B, T, N = F.shape
    use_ref = spiking and bool((R > 1).any())
    out = torch.empty_like(F)
    dummy_b, dummy_f = torch.zeros(1, 1, 1, dtype=torch.bool), F.new_zeros(1, 1, 1)
    v_pre = (torch.empty_like(F) if spiking else out) if keep_state else None
    held = torch.zeros(B, T, N, dtype=torch.bool) if use_ref and keep_state else None
    I_hist = torch.empty_like(F) if keep_I else None
    rec_w = torch.stack([w.detach() for w in ws]) if ws else F.new_zeros(0, N, N)
    live = (rec_w != 0).any(dim=2).numpy()  # [terms, N]: the rows each term can add (a zero row adds nothing)
    rec_ptr = np.zeros(len(live) + 1, np.int64)
    rec_ptr[1:] = np.cumsum(live.sum(axis=1))
    rec_rows = np.nonzero(live)[1].astype(np.int64)  # row-major: each term's rows, ascending
    with numba_threads():
        scan_forward(_np(F), _np(a), _np(b), _np(k), _np(theta), _np(R.long()), _np(rec_w),
                     np.asarray(delays, dtype=np.int64), rec_ptr, rec_rows, spiking, reset == "subtract", use_ref,
                     keep_I, keep_state,
                     out.numpy(), (v_pre if v_pre is not None else dummy_f).numpy(),
                     (held if held is not None else dummy_b).numpy(), (I_hist if keep_I else dummy_f).numpy())
    return out, v_pre, held, I_hist


def _scan_backward_cpu(gout, out, v_pre, held, a, b, k, theta, ws, spiking, reset, delays, surrogate, slope,
                       keep_lvp=True):
    """:func:`_scan_backward` as numba kernels (the surrogate derivative evaluated inside, per element).
    ``keep_lvp=False``: the adjoint history (only the time constants' gradients read it) is not kept (None)."""
    from eventsnn.model.scan_numba import scan_backward, scan_backward_recurrent
    from eventsnn.model.scan_numba import MULTI_GAUSSIAN_H as H, MULTI_GAUSSIAN_S as S
    assert (H, S) == (MULTI_GAUSSIAN_H, MULTI_GAUSSIAN_S)
    dF = torch.empty_like(gout)
    lvp = torch.empty_like(gout) if keep_lvp else gout.new_zeros(1, 1, 1)
    kind = surrogate_id(surrogate) if spiking else FAST_SIGMOID
    v = _np(v_pre) if spiking else gout.new_zeros(1, 1, 1).numpy()
    held_np = (held if held is not None else torch.zeros(1, 1, 1, dtype=torch.bool)).numpy()
    args = (_np(gout), _np(out), v, _np(theta), kind, float(slope), held_np, _np(a), _np(b), _np(k))
    with numba_threads():
        if ws:
            rec_wt = torch.stack([w.detach().t() for w in ws]).contiguous()
            chunks = max(1, min(cpu_backend.WORK_CHUNKS, gout.shape[0]))  # not the thread count: same bits anywhere
            with cpu_backend.blas_threads(1):  # BLAS inside numba's parallel region: one thread per call
                scan_backward_recurrent(*args, _np(rec_wt), np.asarray(delays, dtype=np.int64), reset == "subtract",
                                        held is not None, chunks, keep_lvp, dF.numpy(), lvp.numpy())
        else:
            scan_backward(*args, spiking, reset == "subtract", held is not None, keep_lvp, dF.numpy(), lvp.numpy())
    return dF, (lvp if keep_lvp else None)


class LIFScan(torch.autograd.Function):
    """The fused scan: graph-free forward, hand-written reverse scan (see the module docstring)."""

    @staticmethod
    def forward(ctx, F, a, b, k, theta, R, cfg, *ws):
        spiking, reset, _, _, delays = cfg
        needs_tau = any(ctx.needs_input_grad[1:4])
        triton_ok = _triton_applies(F, spiking, R, delays)
        if triton_ok:
            from eventsnn.model.scan_triton import scan_forward_triton
            out, v_pre, I_hist = scan_forward_triton(F, a, b, k, theta, spiking, reset, needs_tau)
            held = None
        elif cpu_backend.applies(F):
            out, v_pre, held, I_hist = _scan_forward_cpu(F, a, b, k, theta, R, ws, spiking, reset, delays, needs_tau,
                                                         keep_state=any(ctx.needs_input_grad))
        else:
            out, v_pre, held, I_hist = _scan_forward(F, a, b, k, theta, R, ws, spiking, reset, delays, needs_tau)
        ctx.cfg, ctx.triton = cfg, triton_ok
        ctx.save_for_backward(out, v_pre if spiking else None, held, I_hist, a, b, k, theta, *ws)
        return out

    @staticmethod
    def backward(ctx, gout):
        spiking, reset, surrogate, slope, delays = ctx.cfg
        out, v_pre, held, I_hist, a, b, k, theta, *ws = ctx.saved_tensors
        if surrogate is None and spiking:
            raise RuntimeError("backward through a spiking scan needs a surrogate gradient")
        gout = gout.contiguous()
        if ctx.triton:
            from eventsnn.model.scan_triton import scan_backward_triton
            dF, lvp = scan_backward_triton(gout, out, v_pre, a, b, k, theta, spiking, reset, surrogate, slope)
        elif cpu_backend.applies(gout):
            dF, lvp = _scan_backward_cpu(gout, out, v_pre if spiking else None, held, a, b, k, theta, ws,
                                         spiking, reset, delays, surrogate, slope, any(ctx.needs_input_grad[1:4]))
        else:
            dF, lvp = _scan_backward(gout, out, v_pre if spiking else None, held, a, b, k, theta, ws,
                                     spiking, reset, delays, surrogate, slope)
        ga = gb = gk = None
        if any(ctx.needs_input_grad[1:4]):
            if spiking:
                v_post = v_pre * (1 - out) if reset == "zero" else v_pre - theta * out
            else:
                v_post = out
            v_prev, I_prev = _shift_time(v_post, 1), _shift_time(I_hist, 1)
            live = lvp if held is None else lvp * (~held).to(lvp.dtype)
            ga = (live * v_prev).sum(dim=(0, 1))
            gk = (live * I_prev).sum(dim=(0, 1))
            gb = (dF * I_prev).sum(dim=(0, 1))
        gws = []
        for i, d in enumerate(delays):
            if ctx.needs_input_grad[7 + i]:
                gws.append(shifted_weight_grad(out, dF, d))
            else:
                gws.append(None)
        return (dF, ga, gb, gk, None, None, None, *gws)


def _triton_applies(F: torch.Tensor, spiking: bool, R: torch.Tensor, delays) -> bool:
    """The Triton kernels cover CUDA layers without recurrence or refractoriness (and CPU tensors
    when Triton's interpreter is on, which is how they are tested without a GPU)."""
    if delays or (spiking and bool((R > 1).any())):
        return False
    from eventsnn.model import scan_triton
    return scan_triton.available() and (F.device.type == "cuda" or scan_triton.INTERPRET)
