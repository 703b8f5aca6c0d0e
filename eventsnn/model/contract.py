"""The discrete-time contract both engines obey (DESIGN.md section 2), in one place.

Model (dimensionless, threshold 1 by default)::

    tau_mem dv/dt = I - v          tau_syn dI/dt = -I
    spike when v >= theta, then v -> 0 ("zero") or v -> v - theta ("subtract")
    a presynaptic spike at time t reaches the target at t + d and does I += w

Each step n (time n*dt) does, in Brian2's default schedule order:

1. integrate   ``v = a*v + k*I ; I = b*I``  (exact solution over one step)
2. threshold   ``s[n] = v >= theta``  (not while refractory)
3. deliver     ``I += sum_j w_ji x_j[n - D_ji]``
4. reset       where ``s[n]``: ``v = 0`` or ``v -= theta``

Delays round half-up, ``D = floor(d/dt + 0.5)``; refractory periods use the same
rounding. Readout traces are the readout ``v`` at the end of each step.
This module is torch- and brian2-free so that every engine can import it.
"""
from __future__ import annotations

import math

import numpy as np

from eventsnn.util.errors import EventsnnError

RESETS = ("zero", "subtract")
READOUTS = ("max", "mean", "last", "softmax-sum", "count")
# readouts whose output layer spikes (kind "lif"); the trace is then its cumulative spike count per training step
SPIKING_READOUTS = ("count",)
def propagators(tau_mem_ms, tau_syn_ms, dt_ms: float, xp=np):
    """Exact one-step propagators ``(a, b, k)``: ``a = exp(-dt/tau_mem)``, ``b = exp(-dt/tau_syn)``,
    ``k = tau_syn/(tau_syn - tau_mem) * (b - a)``.

    ``k`` is computed in the cancellation-free form of :func:`evolve_rates` (the same expression at ``t = dt``):
    ``k = a * expm1(x)/x * dt/tau_mem`` with ``x = dt (1/tau_mem - 1/tau_syn)``, whose value at ``x = 0`` is the
    equal-tau limit ``dt/tau_mem * a`` (where Brian2's ``method='exact'`` gives NaN). It is accurate to rounding
    for every pair of taus, so there is no "nearly equal" tolerance anywhere. ``xp``: the array module
    (``numpy``, float64 arrays out; or ``torch``, differentiable, in the taus' dtype).
    """
    if xp is np:
        tm = np.asarray(tau_mem_ms, dtype=np.float64)
        ts = np.asarray(tau_syn_ms, dtype=np.float64)
    else:
        tm, ts = tau_mem_ms, tau_syn_ms
    a = xp.exp(-dt_ms / tm)
    b = xp.exp(-dt_ms / ts)
    x = dt_ms * (1.0 / tm - 1.0 / ts)
    zero = x == 0
    x_safe = xp.where(zero, xp.ones_like(x), x)  # no 0/0, not even in the branch where() discards (gradients)
    ratio = xp.where(zero, xp.ones_like(x), xp.expm1(x_safe) / x_safe)
    k = a * ratio * (dt_ms / tm)
    return a, b, k


def round_half_up(steps, xp=np):
    """Brian2's rounding of a delay given in steps: ``floor(steps + 0.5)`` (``xp``: numpy or torch)."""
    return xp.floor(steps + 0.5)


def delay_steps(delay_ms, dt_ms: float) -> np.ndarray:
    """Integer delay in steps: ``floor(d/dt + 0.5)`` (Brian2 rounds delays half-up)."""
    return round_half_up(np.asarray(delay_ms, dtype=np.float64) / dt_ms).astype(np.int64)


def refractory_steps(refractory_ms, dt_ms: float) -> np.ndarray:
    """Refractory period in steps, rounded like delays.

    A neuron that spikes at step n keeps its ``v`` fixed (``I`` still decays and
    receives input) and cannot spike during steps n+1 .. n+R-1.
    """
    return delay_steps(refractory_ms, dt_ms)


def readout_scores(trace: np.ndarray, readout: str) -> np.ndarray:
    """Class scores from a readout trace ``[S, K, N_out]`` (numpy twin of the torch one)."""
    trace = np.asarray(trace, dtype=np.float64)
    if readout == "max":
        return trace.max(axis=1)
    if readout == "mean":
        return trace.mean(axis=1)
    if readout in ("last", "count"):  # count: the trace is the cumulative spike count
        return trace[:, -1]
    if readout == "softmax-sum":
        z = trace - trace.max(axis=2, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=2, keepdims=True)).sum(axis=1)
    raise ValueError(f"unknown readout {readout!r}; choose one of {', '.join(READOUTS)}")


def whole_steps(span_ms: float, dt_ms: float, rtol: float = 1e-6) -> int | None:
    """``span_ms / dt_ms`` when it is a whole number >= 1 (to ``rtol``), else None."""
    r = span_ms / dt_ms
    ri = int(round(r))
    return ri if ri >= 1 and abs(r - ri) <= rtol * max(1.0, r) else None


def grid_ratio(train_dt_ms: float, dt_ms: float) -> int:
    """How many simulation steps make one training step; ``dt`` must divide the training dt."""
    ri = whole_steps(train_dt_ms, dt_ms)
    if ri is None:
        raise EventsnnError(f"dt {dt_ms:g} ms must divide the training dt {train_dt_ms:g} ms "
                         f"an integer number of times")
    return ri


def trace_sample_steps(n_train_steps: int, ratio: int) -> np.ndarray:
    """Simulation steps whose end-of-step readout value is sampled onto the training grid.

    Training step n ends at time (n+1)*train_dt, which is the end of simulation
    step (n+1)*ratio - 1.
    """
    return (np.arange(n_train_steps) + 1) * ratio - 1


# ----------------------------------------------------------------------------- continuous time (the event engine)

def evolve(v0: float, I0: float, t: float, tau_mem: float, tau_syn: float):
    """The exact state ``(v, I)`` a time ``t`` (ms) after ``(v0, I0)``, with no input in between.

    ``I(t) = I0 e^{-t/ts}``, ``v(t) = v0 e^{-t/tm} + I0 k(t)`` with
    ``k(t) = ts/(ts - tm) (e^{-t/ts} - e^{-t/tm})``, written in the cancellation-free form
    ``k(t) = e^{-t/tm} expm1(t d) / (d tm)``, ``d = 1/tm - 1/ts`` (equal taus: ``k = t/tm e^{-t/tm}``, its
    limit). At ``t = dt`` these are the discrete propagators ``a``, ``b``, ``k`` of :func:`propagators`.
    Plain ``math`` only, so the event engine compiles it with numba.
    """
    return evolve_rates(v0, I0, t, 1.0 / tau_mem, 1.0 / tau_syn)


def evolve_rates(v0: float, I0: float, t: float, inv_tau_mem: float, inv_tau_syn: float):
    """:func:`evolve` with the reciprocal time constants given (the event engine precomputes them)."""
    em = math.exp(-t * inv_tau_mem)
    d = inv_tau_mem - inv_tau_syn
    x = t * d
    kt = em * (t if x == 0.0 else math.expm1(x) / d) * inv_tau_mem
    return v0 * em + I0 * kt, I0 * math.exp(-t * inv_tau_syn)
