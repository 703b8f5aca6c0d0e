"""The torch engine's SRM-alpha layer (``kind="srm"``, :mod:`eventsnn.model.srm`): training and evaluation.

:class:`SRMLayer` is a spiking layer with the same interface as :class:`~eventsnn.model.layers.LIFLayer` (feed-forward
weights ``ff_weight[N_pre, N]``, optional axonal or synaptic delays acting on its input, ``clamp_``), so
:class:`~eventsnn.model.layers.SNN` stacks either. Its time scan is :func:`srm_scan`, per step (:mod:`eventsnn.model.srm`)::

    v = a v + k I ;  I = a I ;  vr = ar vr + kr Ir ;  Ir = ar Ir
    s = H(v + vr - theta)   (0 for R-1 steps after a spike: the dead time, ``refractory_ms``; none by default)
    I += F_n  (F = e * delayed input @ W) ;  Ir += jump * s   (jump = -e scale_ref theta; no reset)

The dead time only forbids spikes: unlike a LIF neuron's refractory period it holds nothing, the kernels run on.
Of one training step or less it changes nothing at that step (the clock allows one spike per step anyway); it
carries that ceiling into a finer clock and into continuous time.

With a learned PSP kernel (``psp_taps``, :func:`eventsnn.model.srm.fir_kernel`) the input is first convolved with
the kernel sampled at ``dt`` (``F = delayed (K * x) @ W``, no ``e``) and the same scan runs with ``a = 0, k = 1``:
``v[n] = F[n-1]``, so that a spike delivered at step m adds ``w h_c(j dt)`` at step m + j.

Gradients: the surrogate derivative at ``u - theta`` (0 in the dead time); the refractory path is not differentiated (``s`` is
detached where it feeds ``Ir``, as LIF detaches its reset and as SLAYER's spike function does). The rest is the
LIF adjoint with equal taus and no reset, so the fused backward *is* :func:`eventsnn.model.scan._scan_backward` (or its
numba twin) with ``v_pre = u``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from eventsnn.model import cpu_backend as cpu_kernels
from eventsnn.model import srm
from eventsnn.model.contract import refractory_steps
from eventsnn.model.delays import delayed_current
from eventsnn.model.scan import SCAN_BACKENDS, _scan_backward, _scan_backward_cpu, spike_fn
from eventsnn.model.layers import DELAY_KINDS, LIFLayer


class SRMLayer(LIFLayer):
    """SRM-alpha layer: per-neuron ``tau_sr_ms``, ``tau_ref_ms``, ``scale_ref``, ``threshold`` and dead time
    ``refractory_ms`` (fixed buffers); learnable ``ff_weight`` and (optionally) feed-forward delays. No recurrence, no reset."""

    spiking = True
    reset = "none"
    rec_weight = None

    def __init__(self, n_in: int, size: int, *, tau_sr_ms=1.0, tau_ref_ms=2.0, scale_ref=2.0, threshold=10.0,
                 refractory_ms=0.0, delays: str = "none", max_delay_ms: float = 0.0, weight_scale: float = 1.0,
                 psp_taps=None, psp_tap_ms: float = 1.0,
                 dtype=torch.float32, generator: torch.Generator | None = None):
        """``psp_taps``: None (the alpha PSP kernel of ``tau_sr_ms``) or the start values of a learned kernel,
        one per ``psp_tap_ms`` (:func:`eventsnn.model.srm.fir_kernel`; ``tau_sr_ms`` is then unused)."""
        nn.Module.__init__(self)
        if delays not in DELAY_KINDS:
            raise ValueError(f"delays must be one of {DELAY_KINDS}")
        self.n_in, self.size = n_in, size
        self.max_delay_ms = float(max_delay_ms)
        self.delays_learned = False
        self.delay_method = "auto"

        def full(v):
            return torch.as_tensor(np.broadcast_to(np.asarray(v, dtype=np.float64), (size,)).copy(), dtype=dtype)
        for name, value in (("tau_sr_ms", tau_sr_ms), ("tau_ref_ms", tau_ref_ms), ("scale_ref", scale_ref),
                            ("threshold", threshold)):
            self.register_buffer(name, full(value))
        # not in the state dict: a setting of the config (like the taus' values there), and checkpoints of
        # SRM models trained before it existed load unchanged
        self.register_buffer("refractory_ms", full(refractory_ms), persistent=False)
        w = torch.randn(n_in, size, generator=generator, dtype=torch.float64) * (weight_scale / math.sqrt(n_in))
        self.ff_weight = nn.Parameter(w.to(dtype))
        self.ff_delay_ms = self._delay_param(delays, n_in, size, max_delay_ms, dtype, generator)
        self.register_buffer("rec_delay_ms", None)
        self.psp_tap_ms = float(psp_tap_ms)
        if psp_taps is None:
            self.psp_taps = None
        else:
            taps = torch.as_tensor(np.asarray(psp_taps, dtype=np.float64).ravel(), dtype=dtype)
            if taps.numel() < 1 or not self.psp_tap_ms > 0:
                raise ValueError("a learned PSP kernel needs at least one tap and psp_tap_ms > 0")
            self.psp_taps = nn.Parameter(taps)

    @property
    def kind(self) -> str:
        return "srm"

    def clamp_(self, cap_delays: bool = True) -> None:
        with torch.no_grad():
            if self.ff_delay_ms is not None:
                self.ff_delay_ms.clamp_(0.0, self.max_delay_ms if cap_delays else None)

    def _rec_terms(self, dt_ms: float, n_steps: int):
        return []

    def constants(self, dt_ms: float):
        """``(a, k, ar, kr, jump)`` as tensors of this layer's dtype and device (float64 maths in
        :mod:`eventsnn.model.srm`, the numbers Brian2 gets)."""
        a, k, ar, kr = srm.propagators(self.tau_sr_ms.detach().cpu().numpy(), self.tau_ref_ms.detach().cpu().numpy(),
                                       dt_ms)
        if self.psp_taps is not None:  # the kernel is convolved beforehand; v[n] = F[n-1]
            a, k = np.zeros_like(a), np.ones_like(k)
        jump = srm.refractory_jump(self.scale_ref.detach().cpu().numpy(), self.threshold.detach().cpu().numpy())
        to = dict(dtype=self.threshold.dtype, device=self.threshold.device)
        return tuple(torch.as_tensor(x, **to) for x in (a, k, ar, kr, jump))

    def forward(self, x: torch.Tensor, dt_ms: float, delay_mode: str = "round",
                surrogate: str | None = None, slope: float = 10.0, backend: str = "fused") -> torch.Tensor:
        """Spikes ``[B, T, N]`` for input ``x`` ``[B, T, N_in]``: an arrival of weight w does ``I += e*w``."""
        d_steps = None if self.ff_delay_ms is None else self.ff_delay_ms / dt_ms
        if self.psp_taps is None:
            F = delayed_current(x, self.ff_weight * srm.E, d_steps, delay_mode, self.delay_method)
        else:
            F = delayed_current(self.filter_input(x, dt_ms), self.ff_weight, d_steps, delay_mode, self.delay_method)
        return self.scan(F, dt_ms, surrogate, slope, backend)

    def psp_samples(self, dt_ms: float) -> torch.Tensor:
        """The learned kernel sampled at ``dt, 2 dt, ...`` (differentiable in the taps)."""
        P = srm.fir_sample_matrix(self.psp_taps.numel(), self.psp_tap_ms, dt_ms)
        return torch.as_tensor(P, dtype=self.psp_taps.dtype, device=self.psp_taps.device) @ self.psp_taps

    def filter_input(self, x: torch.Tensor, dt_ms: float) -> torch.Tensor:
        """``y[n] = sum_i K[i] x[n - i]`` over time for every input unit, ``K`` = :meth:`psp_samples` (the
        kernel's one-step lag is the scan's). Direct convolution for very short kernels, FFT otherwise."""
        K = self.psp_samples(dt_ms).to(x.dtype)
        B, T, C = x.shape
        M = K.numel()
        xs = x.transpose(1, 2).reshape(B * C, 1, T)
        if M <= 8:
            y = torch.nn.functional.conv1d(torch.nn.functional.pad(xs, (M - 1, 0)), K.flip(0).view(1, 1, M))
        else:
            n = 1 << (T + M - 2).bit_length()
            y = torch.fft.irfft(torch.fft.rfft(xs, n) * torch.fft.rfft(K, n), n)[..., :T]
        return y.reshape(B, C, T).transpose(1, 2).contiguous()

    def scan(self, F: torch.Tensor, dt_ms: float, surrogate: str | None = None, slope: float = 10.0,
             backend: str = "fused"):
        return srm_scan(F, *self.constants(dt_ms), self.threshold, surrogate=surrogate, slope=slope, backend=backend,
                        R=self.dead_steps(dt_ms))

    def dead_steps(self, dt_ms: float) -> torch.Tensor:
        """The dead time in steps of ``dt_ms`` ``[N]`` (rounded like delays,
        :func:`eventsnn.model.contract.refractory_steps`)."""
        R = refractory_steps(self.refractory_ms.detach().cpu().numpy(), dt_ms)
        return torch.as_tensor(R, device=self.threshold.device)


def srm_scan(F, a, k, ar, kr, jump, theta, *, surrogate: str | None, slope: float, backend: str = "fused",
             return_u: bool = False, R: torch.Tensor | None = None):
    """The SRM time scan over the input current ``F [B, T, N]`` (already ``e * w``-weighted); spikes ``[B, T, N]``
    (and the pre-threshold potential ``u`` with ``return_u``; reference loop only). ``R``: dead time in steps
    ``[N]`` (long; no spike 1 .. R-1 steps after one), or None; at most one step everywhere it changes nothing
    and is dropped."""
    if R is not None and not bool((R > 1).any()):
        R = None
    if backend == "autograd" or return_u:
        out = _srm_autograd(F, a, k, ar, kr, jump, theta, R, surrogate, slope, return_u)
        return out[:2] if return_u else out
    if backend != "fused":
        raise ValueError(f"unknown scan backend {backend!r}; choose one of {', '.join(SCAN_BACKENDS)}")
    return SRMScan.apply(F, a, k, ar, kr, jump, theta, R, (surrogate, float(slope)))


def _srm_autograd(F, a, k, ar, kr, jump, theta, R, surrogate, slope, return_u=False):
    """The reference loop: spikes, or with ``return_u`` ``(spikes, u, blocked)`` (``blocked``: the dead-time
    steps, None without a dead time)."""
    B, T, N = F.shape
    v, I, vr, Ir = (F.new_zeros(B, N) for _ in range(4))
    ref = torch.zeros(B, N, dtype=torch.long, device=F.device)
    out, us, dead = [], [], []
    for n in range(T):
        v = a * v + k * I
        I = a * I
        vr = ar * vr + kr * Ir
        Ir = ar * Ir
        u = v + vr
        s = spike_fn(u - theta, surrogate, slope)
        if R is not None:
            ref = (ref - 1).clamp(min=0)
            held = ref > 0
            s = s * (~held).to(s.dtype)
            ref = torch.where(s.detach() > 0, R.expand(B, N), ref)
            dead.append(held)
        I = I + F[:, n]
        Ir = Ir + jump * s.detach()
        out.append(s)
        us.append(u)
    spikes = torch.stack(out, dim=1)
    if not return_u:
        return spikes
    return spikes, torch.stack(us, dim=1), (torch.stack(dead, dim=1) if R is not None else None)


def _srm_forward(F, a, k, ar, kr, jump, theta, R):
    """Forward of :class:`SRMScan` without a graph: ``(spikes, u, blocked)``."""
    if cpu_kernels.applies(F):
        from eventsnn.model.srm_numba import srm_forward
        out, u = torch.empty_like(F), torch.empty_like(F)
        blocked = torch.zeros(F.shape if R is not None else (0, 0, 0), dtype=torch.bool)
        Rn = np.ones(F.shape[2], np.int64) if R is None else R.detach().cpu().long().numpy()
        np_ = lambda t: t.detach().contiguous().numpy()  # noqa: E731
        with cpu_kernels.numba_threads():
            srm_forward(np_(F), np_(a), np_(k), np_(ar), np_(kr), np_(jump), np_(theta), Rn, out.numpy(), u.numpy(),
                        blocked.numpy())
        return out, u, (blocked if R is not None else None)
    with torch.no_grad():
        return _srm_autograd(F, a, k, ar, kr, jump, theta, R, None, 1.0, True)


class SRMScan(torch.autograd.Function):
    """The fused SRM scan: graph-free forward; the backward is the LIF adjoint scan (equal taus, no reset)."""

    @staticmethod
    def forward(ctx, F, a, k, ar, kr, jump, theta, R, cfg):
        out, u, blocked = _srm_forward(F.detach(), a, k, ar, kr, jump, theta, R)
        ctx.cfg = cfg
        ctx.save_for_backward(out, u, a, k, theta, blocked)
        return out

    @staticmethod
    def backward(ctx, gout):
        surrogate, slope = ctx.cfg
        out, u, a, k, theta, blocked = ctx.saved_tensors
        if surrogate is None:
            raise RuntimeError("backward through a spiking scan needs a surrogate gradient")
        if blocked is not None:  # no surrogate gradient where a spike was not allowed (the LIF scan's rule)
            gout = gout.masked_fill(blocked, 0.0)
        gout = gout.contiguous()
        args = (gout, out, u, None, a, a, k, theta, [], True, "subtract", (), surrogate, slope)
        if cpu_kernels.applies(gout):
            dF, _ = _scan_backward_cpu(*args, keep_lvp=False)
        else:
            dF, _ = _scan_backward(*args)
        return dF, None, None, None, None, None, None, None, None
