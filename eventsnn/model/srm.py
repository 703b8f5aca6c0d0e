"""The SRM-alpha neuron (``kind="srm"``, SLAYER's ``srmAlpha``): its continuous-time definition, in one place.

Model (dimensionless; ``theta`` the threshold)::

    u(t)   = sum_j w_j sum_f eps(t - t_j^f - d_j) + sum_own nu(t - t^f)      spike when u >= theta, NO reset
    eps(s) = (s/tau_sr) e^(1 - s/tau_sr)                                     (s >= 0; peak 1 at s = tau_sr)
    nu(s)  = -scale_ref * theta * (s/tau_ref) e^(1 - s/tau_ref)

Both kernels are the impulse response of two cascaded first-order filters with one time constant, so the neuron
is linear ODEs -- two pairs of the LIF contract's filters (:mod:`eventsnn.model.contract`) with equal taus::

    tau_sr  dv/dt  = I  - v      tau_sr  dI/dt  = -I       an arriving spike of weight w:  I     += e*w
    tau_ref dvr/dt = Ir - vr     tau_ref dIr/dt = -Ir      an own spike:                   Ir    += -e*scale_ref*theta
    u = v + vr

(the pair's impulse response to ``I += e`` is ``(s/tau) e^(1 - s/tau)``). Discrete time, step ``n`` (time
``n*dt``), in the LIF contract's order, which is Brian2's default schedule:

1. integrate   ``v = a*v + k*I ; I = a*I ; vr = ar*vr + kr*Ir ; Ir = ar*Ir``  (exact over one step)
2. threshold   ``s[n] = v + vr >= theta``
3. deliver     ``I += e * sum_j w_ji x_j[n - D_ji]`` and ``Ir += -e*scale_ref*theta * s[n]``
4. no reset    (the refractory kernel takes its place)

``a = exp(-dt/tau_sr)``, ``k = dt/tau_sr * a`` (the equal-tau case of :func:`eventsnn.model.contract.propagators`),
and likewise ``ar``, ``kr`` with ``tau_ref``. A spike delivered at step m adds ``w*eps(j*dt)`` to ``u`` at step
m + j: exactly SLAYER's sampled kernel -- which SLAYER truncates where it falls below 1% of its peak; we do not
truncate. Delays round half-up as for LIF (:func:`eventsnn.model.contract.delay_steps`).

In continuous time (the event engine) ``u`` is continuous (arrivals move ``I`` and ``Ir``, not ``v``), so a
spike happens when ``u`` reaches ``theta`` from below, and as the refractory kernel starts at 0, ``u`` is still
``theta`` just after it: the neuron fires again at the same instant while ``u`` would keep rising
(:func:`u_slope` > 0), the fewest spikes that turn ``u`` downward. A clocked run agrees (to first order in dt)
where the slope of ``u`` at each crossing is below half the refractory kernel's initial slope
``e*scale_ref*theta/tau_ref``; above it, a clocked run fires a burst in consecutive steps whose size depends on
where in its step the crossing falls, and has no limit as dt -> 0.

Learned PSP kernel (the authors' ISI networks learn the input layer's PSP: SLAYER's ``pspFilter``, 50 taps).
A layer with ``psp_taps = h[0..L-1]`` (spacing ``tap_ms`` = Delta) replaces ``eps`` by the piecewise-linear
kernel through the knots ``(0, 0), (Delta, h[0]), ..., (L*Delta, h[L-1]), ((L+1)*Delta, 0)`` (:func:`fir_kernel`),
its input weights carry no ``e``, and everything else is as above. The kernel is continuous, so in continuous
time ``u`` still reaches ``theta`` from below. Sampled on a clock with ``Delta/dt`` whole steps, an input spike
delivered at step m adds ``w*h_c(j*dt)`` to ``u`` at step m + j -- at ``dt = Delta``, ``w*h[j-1]``: SLAYER's
filter puts tap k at lag k, ours at lag k + 1, the one step by which every delivery here follows the threshold
(with ``eps(0) = 0`` the alpha kernel loses nothing to it). As linear ODEs: ``dv/dt = I`` (the slope of the
kernel part) with ``I += w*c_j`` at lag ``j*Delta``, ``c_j`` the change of slope at knot j (:func:`fir_kinks`);
Brian2 and the event engine run it so, the torch engine convolves with the sampled kernel (:func:`fir_sample_matrix`).

This module is torch- and brian2-free (plain ``math`` in the scalar functions, so numba compiles them).
"""
from __future__ import annotations

import math

import numpy as np

from eventsnn.model.contract import evolve_rates, propagators as _lif_propagators, whole_steps

E = math.e  # the alpha kernel's normalisation: an arrival of weight w does I += E*w (peak PSP = w)

#: Paper (speech) setting, in steps of the training grid: theta, tau_sr, tau_ref, scale_ref.
PAPER_SPEECH = {"threshold": 10.0, "tau_sr_steps": 1.0, "tau_ref_steps": 2.0, "scale_ref": 2.0}


def eps(s, tau_sr):
    """The PSP kernel ``(s/tau_sr) e^(1 - s/tau_sr)`` for ``s >= 0`` (0 before)."""
    s = np.asarray(s, dtype=np.float64)
    x = np.maximum(s, 0.0) / tau_sr
    return np.where(s >= 0, x * np.exp(1.0 - x), 0.0)


def nu(s, tau_ref, scale_ref, theta):
    """The refractory kernel ``-scale_ref*theta*(s/tau_ref) e^(1 - s/tau_ref)`` for ``s >= 0`` (0 before)."""
    return -scale_ref * theta * eps(s, tau_ref)


def propagators(tau_sr_ms, tau_ref_ms, dt_ms: float):
    """Exact one-step propagators ``(a, k, ar, kr)`` as float64 arrays: the PSP pair (``tau_sr``) and the
    refractory pair (``tau_ref``), each the equal-tau case of :func:`eventsnn.model.contract.propagators`."""
    a, _, k = _lif_propagators(tau_sr_ms, tau_sr_ms, dt_ms)
    ar, _, kr = _lif_propagators(tau_ref_ms, tau_ref_ms, dt_ms)
    return a, k, ar, kr


def refractory_jump(scale_ref, theta) -> np.ndarray:
    """What an own spike adds to ``Ir``: ``-e * scale_ref * theta`` (float64, per neuron)."""
    return -E * np.asarray(scale_ref, dtype=np.float64) * np.asarray(theta, dtype=np.float64)


# ----------------------------------------------------------------------------- continuous time (the event engine)

def evolve(v0, I0, vr0, Ir0, t, tau_sr, tau_ref):
    """The exact state ``(v, I, vr, Ir)`` a time ``t`` (ms) after ``(v0, I0, vr0, Ir0)`` with no input:
    ``v(t) = (v0 + I0 t/tau_sr) e^{-t/tau_sr}``, ``I(t) = I0 e^{-t/tau_sr}``, and likewise for the refractory
    pair. At ``t = dt`` these are the discrete propagators of :func:`propagators`."""
    v, I = evolve_rates(v0, I0, t, 1.0 / tau_sr, 1.0 / tau_sr)
    vr, Ir = evolve_rates(vr0, Ir0, t, 1.0 / tau_ref, 1.0 / tau_ref)
    return v, I, vr, Ir


def u_slope(v, I, vr, Ir, tau_sr, tau_ref):
    """``du/dt`` in the state ``(v, I, vr, Ir)``: ``(I - v)/tau_sr + (Ir - vr)/tau_ref``."""
    return (I - v) / tau_sr + (Ir - vr) / tau_ref


def potential(t, in_times, in_weights, own_times, tau_sr, tau_ref, scale_ref, theta):
    """``u(t)`` summed from the kernels directly (the definition, for tests and checks): input arrivals at
    ``in_times`` (delays included) with weights ``in_weights``, own spikes at ``own_times``."""
    t = np.asarray(t, dtype=np.float64)[..., None]
    u = (np.asarray(in_weights, np.float64) * eps(t - np.asarray(in_times, np.float64), tau_sr)).sum(-1)
    return u + nu(t - np.asarray(own_times, np.float64), tau_ref, scale_ref, theta).sum(-1)


# ----------------------------------------------------------------------------- the learned PSP kernel

def fir_knots(taps) -> np.ndarray:
    """The kernel's values at lags ``0, Delta, ..., (L+1) Delta``: ``[0, h[0], ..., h[L-1], 0]``."""
    h = np.asarray(taps, dtype=np.float64).ravel()
    return np.concatenate([[0.0], h, [0.0]])


def fir_kernel(s, taps, tap_ms: float):
    """The learned PSP kernel ``h_c(s)``: linear between the knots of :func:`fir_knots`, 0 outside
    ``[0, (L+1) Delta]``."""
    p = fir_knots(taps)
    s = np.asarray(s, dtype=np.float64)
    return np.interp(s / tap_ms, np.arange(len(p), dtype=np.float64), p, left=0.0, right=0.0)


def fir_kinks(taps, tap_ms: float):
    """``(lags_ms, c)``: the kernel as changes of slope (per ms) at the knots ``j*Delta``, ``j = 0..L+1``, so
    that ``h_c(s) = sum_j c_j max(s - lag_j, 0)``. ``sum(c) = 0``: a spike's slope is 0 again after the last knot."""
    p = fir_knots(taps)
    slopes = np.concatenate([np.diff(p) / tap_ms, [0.0]])
    c = np.diff(np.concatenate([[0.0], slopes]))
    return np.arange(len(p), dtype=np.float64) * tap_ms, c


def fir_sample_matrix(n_taps: int, tap_ms: float, dt_ms: float) -> np.ndarray:
    """``P [M, L]`` with ``P @ h = [h_c(dt), h_c(2 dt), ..., h_c(M dt)]``, the kernel sampled on a clock of step
    ``dt_ms`` (``tap_ms/dt_ms`` whole steps; ``M = (L+1) tap_ms/dt_ms - 1``, the last nonzero sample)."""
    ri = whole_steps(tap_ms, dt_ms, rtol=1e-9)
    if ri is None:
        raise ValueError(f"the PSP kernel's tap spacing {tap_ms:g} ms is not a whole number of steps of {dt_ms:g} ms")
    s = np.arange(1, (n_taps + 1) * ri) * (tap_ms / ri)
    return np.stack([fir_kernel(s, e, tap_ms) for e in np.eye(n_taps)], axis=1)  # the kernel is linear in h


def start_taps(n_taps: int, tau_ms: float, tap_ms: float, shape: str = "alpha", peak: float = 1.0) -> np.ndarray:
    """The authors' starts for the learned kernel, at ``k*Delta`` for ``k = 0..L-1``, scaled to a peak of
    ``peak``: ``shape="alpha"``, ``eps`` of time constant ``tau_ms`` (their ISI and cross-channel ISI scripts:
    50 ms, peak 1); ``"exponential"``, ``e^(-t/tau_ms)`` (their coincidence script: 50 ms, peak 0.1)."""
    t = np.arange(n_taps) * tap_ms
    if shape == "alpha":
        h = eps(t, tau_ms)
    elif shape == "exponential":
        h = np.exp(-t / tau_ms)
    else:
        raise ValueError(f"unknown kernel shape {shape!r}; choose alpha or exponential")
    return h * (peak / h.max()) if h.max() > 0 else h


def fir_potential(t, in_times, in_weights, own_times, taps, tap_ms, tau_ref, scale_ref, theta):
    """``u(t)`` of a learned-kernel neuron summed from the kernels directly (the definition, for tests)."""
    t = np.asarray(t, dtype=np.float64)[..., None]
    u = (np.asarray(in_weights, np.float64) * fir_kernel(t - np.asarray(in_times, np.float64), taps, tap_ms)).sum(-1)
    return u + nu(t - np.asarray(own_times, np.float64), tau_ref, scale_ref, theta).sum(-1)
