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

This module is torch- and brian2-free (plain ``math`` in the scalar functions, so numba compiles them).
"""
from __future__ import annotations

import math

import numpy as np

from eventsnn.model.contract import evolve_rates, propagators as _lif_propagators

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
