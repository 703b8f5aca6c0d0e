"""Triton kernels for the fused LIF scan (layers without recurrence or refractoriness).

Without recurrence every (sample, neuron) pair evolves independently, so one program takes a block of
neurons of one sample and walks through all time steps with ``v`` and ``I`` in registers: the input
current is read once, spikes and the pre-reset voltage written once (forward); the reverse scan reads
them back once and writes the current's adjoint (backward). Memory access is coalesced along the
neuron axis. The maths is :mod:`eventsnn.model.scan`'s; the kernels are tested against its pure-torch path.

``TRITON_INTERPRET=1`` (set before this module is imported) runs the kernels in Triton's interpreter on
CPU tensors — that is how CI, which has no GPU, tests them.
"""
from __future__ import annotations

import math
import os

import torch

from eventsnn.model.surrogates import MULTI_GAUSSIAN_H, MULTI_GAUSSIAN_S, surrogate_id

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with the Linux torch wheels
    triton = None

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> bool:
    """True where the kernels can run: Triton importable, and a GPU or the interpreter."""
    return triton is not None and (INTERPRET or torch.cuda.is_available())


if triton is not None:

    @triton.jit
    def _program_neurons(A, Bp, K, TH, N, BLOCK: tl.constexpr):
        """This program's sample, its block of neurons (offsets, mask) and their constants a, b, k, theta."""
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        m = offs < N
        return (tl.program_id(0), offs, m, tl.load(A + offs, mask=m, other=0.0), tl.load(Bp + offs, mask=m, other=0.0),
                tl.load(K + offs, mask=m, other=0.0), tl.load(TH + offs, mask=m, other=0.0))

    @triton.jit
    def _fwd_kernel(F, OUT, VPRE, IH, A, Bp, K, TH, T, N,
                    SPIKING: tl.constexpr, RESET_ZERO: tl.constexpr, KEEP_I: tl.constexpr,
                    BLOCK: tl.constexpr):
        pid_b, offs, m, a, b, k, th = _program_neurons(A, Bp, K, TH, N, BLOCK)
        v = tl.zeros_like(a)
        cur = tl.zeros_like(a)
        base = pid_b.to(tl.int64) * T * N
        for n in range(T):
            p = base + n * N + offs
            f = tl.load(F + p, mask=m, other=0.0)
            v = a * v + k * cur
            cur = b * cur
            if SPIKING:
                tl.store(VPRE + p, v, mask=m)
                s = tl.where(v - th >= 0, 1.0, 0.0).to(a.dtype)
                tl.store(OUT + p, s, mask=m)
                cur = cur + f
                if RESET_ZERO:
                    v = v * (1 - s)
                else:
                    v = v - th * s
            else:
                cur = cur + f
                tl.store(OUT + p, v, mask=m)
            if KEEP_I:
                tl.store(IH + p, cur, mask=m)

    @triton.jit
    def _surrogate(x, P, KIND: tl.constexpr):
        # P = [slope, pi/2, 1/sqrt(2 pi), h, s] in the data's dtype (Triton's float literals are float32)
        slope = tl.load(P)
        if KIND == 0:  # the ids of eventsnn.model.surrogates: 0 fast-sigmoid, 1 atan, 2 multi-gaussian
            d = slope * tl.abs(x) + 1.0
            r = 1.0 / (d * d)
        elif KIND == 1:
            z = tl.load(P + 1) * slope * x
            r = 0.5 * slope / (1.0 + z * z)
        else:  # multi-Gaussian
            c = tl.load(P + 2)
            h = tl.load(P + 3)
            sig = 1.0 / slope
            wide = tl.load(P + 4) * sig
            g0 = tl.exp(-(x * x) / (2 * sig * sig)) * (c / sig)
            gp = tl.exp(-((x - sig) * (x - sig)) / (2 * wide * wide)) * (c / wide)
            gm = tl.exp(-((x + sig) * (x + sig)) / (2 * wide * wide)) * (c / wide)
            r = (1.0 + h) * g0 - h * gp - h * gm
        return r

    @triton.jit
    def _bwd_kernel(G, OUT, VPRE, DF, LVP, A, Bp, K, TH, P, T, N,
                    SPIKING: tl.constexpr, RESET_ZERO: tl.constexpr, SURR: tl.constexpr,
                    BLOCK: tl.constexpr):
        pid_b, offs, m, a, b, k, th = _program_neurons(A, Bp, K, TH, N, BLOCK)
        lv = tl.zeros_like(a)
        li = tl.zeros_like(a)
        base = pid_b.to(tl.int64) * T * N
        for i in range(T):
            p = base + (T - 1 - i) * N + offs
            tl.store(DF + p, li, mask=m)
            g = tl.load(G + p, mask=m, other=0.0)
            if SPIKING:
                s = tl.load(OUT + p, mask=m, other=0.0)
                vp = tl.load(VPRE + p, mask=m, other=0.0)
                sg = _surrogate(vp - th, P, SURR)
                if RESET_ZERO:
                    lvp = lv * (1 - s) + g * sg
                else:
                    lvp = lv + g * sg
            else:
                lvp = lv + g
            tl.store(LVP + p, lvp, mask=m)
            lv = a * lvp
            li = k * lvp + b * li


def _grid(F: torch.Tensor):
    B, _, N = F.shape
    block = min(128, triton.next_power_of_2(N))
    return (B, math.ceil(N / block)), block


def scan_forward_triton(F, a, b, k, theta, spiking: bool, reset: str, keep_I: bool):
    """``(out, v_pre, I_hist)`` of the forward scan (``v_pre`` is ``out`` for a readout)."""
    F = F.contiguous()
    out = torch.empty_like(F)
    v_pre = torch.empty_like(F) if spiking else out
    I_hist = torch.empty_like(F) if keep_I else out
    grid, block = _grid(F)
    cast = [t.to(F.dtype).contiguous() for t in (a, b, k, theta)]
    _fwd_kernel[grid](F, out, v_pre, I_hist, *cast, F.shape[1], F.shape[2],
                      SPIKING=spiking, RESET_ZERO=reset == "zero", KEEP_I=keep_I, BLOCK=block)
    return out, v_pre, (I_hist if keep_I else None)


def scan_backward_triton(gout, out, v_pre, a, b, k, theta, spiking: bool, reset: str, surrogate, slope):
    """``(dF, lvp)``: adjoints of the input current and of the pre-reset voltage."""
    dF = torch.empty_like(gout)
    lvp = torch.empty_like(gout)
    grid, block = _grid(gout)
    cast = [t.to(gout.dtype).contiguous() for t in (a, b, k, theta)]
    P = torch.tensor([float(slope), math.pi / 2, 1 / math.sqrt(2 * math.pi), MULTI_GAUSSIAN_H,
                      MULTI_GAUSSIAN_S], dtype=gout.dtype,
                     device=gout.device)
    _bwd_kernel[grid](gout, out, v_pre if spiking else out, dF, lvp, *cast, P, gout.shape[1], gout.shape[2],
                      SPIKING=spiking, RESET_ZERO=reset == "zero",
                      SURR=surrogate_id(surrogate), BLOCK=block)
    return dF, lvp
