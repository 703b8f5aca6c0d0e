"""The exact, event-driven engine for SRM-alpha networks (``kind="srm"``; :mod:`eventsnn.model.srm`).

The same continuous-time network the clocked engines approximate, with no time step. Between events each SRM
neuron follows the closed form of :func:`eventsnn.model.srm.evolve`; an arrival of weight ``w`` does ``I += e*w`` at
exactly ``t + d`` (delays real-valued, input times unbinned); an own spike does ``Ir += -e*scale_ref*theta``.
Readout (``li``) neurons follow :func:`eventsnn.model.contract.evolve` and are sampled at ``(n + 1) train_dt``;
a counted ``srm`` output layer gives the cumulative count per training step, as in the other engines.

When a neuron fires. ``u = v + vr`` is continuous (arrivals move ``I`` and ``Ir``), and between events

    u(t) - theta = (A1 + B1 t) e^{-t/tau_sr} + (A2 + B2 t) e^{-t/tau_ref} - theta,
    A1 = v, B1 = I/tau_sr, A2 = vr, B2 = Ir/tau_ref,

a sum of ``t*exp`` and ``exp`` terms in two time constants (one when they are equal). The first time it reaches
0 is found exactly: each term ``(A + B t) e^{-t/tau}`` has at most one extremum (at ``tau - A/B``), so its exact
range over an interval is known, and so are bounds of the sum and of its derivative (same form). An interval
whose upper bound is below 0 holds no crossing; one where the derivative's lower bound is positive holds at most
one, found by a safeguarded Newton iteration (bisection whenever a step leaves the bracket) to 1e-12 ms; others
are halved, leftmost first. A spike at exactly ``theta`` counts. Since the refractory kernel starts at 0,
``u`` is still ``theta`` just after a spike: the neuron fires again at the same instant while ``u`` would keep
rising (``du/dt > 0`` after the jump), and otherwise only after ``u`` has gone below ``theta`` and comes back.
A neuron with a dead time ``t_d`` (``refractory_ms``) cannot fire in ``(t_s, t_s + t_d)`` after a spike at
``t_s``: it is looked at again at ``t_s + t_d`` and fires there if ``u >= theta`` (as a clock of step ``t_d``
would), otherwise at its next crossing; its kernels run on meanwhile.

A layer with a learned PSP kernel (``psp_taps``) has ``v(t) = v + I t`` between events (``I`` the kernel part's
slope; the first term above with ``tau_sr`` infinite), and an arrival does ``I += c_j*w`` at each knot
``t + d + j*Delta`` of the kernel (:func:`eventsnn.model.srm.fir_kinks`): the piecewise-linear kernel exactly.

Only crossings before the neuron's horizon are computed; when a later one cannot be ruled out by the bound, the
neuron is looked at again at the horizon. The horizon of a first-layer neuron is the layer's next input delivery
(nothing else reaches it, and all of those are known when the sample starts); that of a deeper neuron is the next
event anywhere (a spike upstream may reach it at once); both are capped by the end of the sample. (With the next
event anywhere for the first layer too, a 100-neuron learned-kernel ISI network firing ~140 Hz per neuron took
2.6 times as long, the same spikes to 5e-9 ms: every spike of a neighbour cut the search short.)
"""
from __future__ import annotations

import heapq
import math
import time

import numpy as np

from eventsnn.bridge.network import Network
from eventsnn.bridge.runfile import RunResult
from eventsnn.model.contract import evolve_rates
from eventsnn.model.srm import E, evolve, fir_kinks, refractory_jump, u_slope
from eventsnn.util.errors import EventsnnError

XTOL_MS = 1e-12
_STACK = 512

from numba.extending import register_jitable

from eventsnn.util.jit import jit as _jit
from eventsnn.util.progress import progress_bar

register_jitable(evolve_rates)  # so that the compiled eventsnn.model.srm.evolve can call it

_evolve_lif = _jit(evolve_rates)
_evolve_srm = _jit(evolve)
_u_slope = _jit(u_slope)

# event kinds, in the order they are handled at equal times: deliveries, then looks, then crossings
_DELIVER_ALL, _DELIVER_ONE, _CHECK, _CROSS = 0, 1, 2, 3


# ----------------------------------------------------------------------------- the first crossing of theta

@_jit
def _term(A, B, tau, t):
    return (A + B * t) * math.exp(-t / tau)


@_jit
def _term_range(A, B, tau, lo, hi):
    """Exact (min, max) of ``(A + B t) e^{-t/tau}`` over ``[lo, hi]``: the ends and the one extremum."""
    x, y = _term(A, B, tau, lo), _term(A, B, tau, hi)
    mn, mx = min(x, y), max(x, y)
    if B != 0.0:
        tc = tau - A / B
        if lo < tc < hi:
            z = _term(A, B, tau, tc)
            mn, mx = min(mn, z), max(mx, z)
    return mn, mx


@_jit
def _f(A1, B1, t1, A2, B2, t2, theta, t):
    return _term(A1, B1, t1, t) + _term(A2, B2, t2, t) - theta


@_jit
def _df(A1, B1, t1, A2, B2, t2, t):
    return _term(B1 - A1 / t1, -B1 / t1, t1, t) + _term(B2 - A2 / t2, -B2 / t2, t2, t)


@_jit
def _upper(A1, B1, t1, A2, B2, t2, theta, lo, hi):
    return _term_range(A1, B1, t1, lo, hi)[1] + _term_range(A2, B2, t2, lo, hi)[1] - theta


@_jit
def _root(A1, B1, t1, A2, B2, t2, theta, lo, hi):
    """The root of f on ``[lo, hi]`` where f rises, f(lo) < 0 <= f(hi): safeguarded Newton; returns the side
    where f >= 0."""
    x = 0.5 * (lo + hi)
    for _ in range(300):
        f = _f(A1, B1, t1, A2, B2, t2, theta, x)
        if f >= 0.0:
            hi = x
        else:
            lo = x
        if hi - lo <= XTOL_MS:
            break
        d = _df(A1, B1, t1, A2, B2, t2, x)
        nx = x - f / d if d > 0.0 else 0.5 * (lo + hi)
        if abs(nx - x) < 0.25 * XTOL_MS:  # converged from one side: step just across the root
            nx = x + (0.5 * XTOL_MS if f < 0.0 else -0.5 * XTOL_MS)
        if not (lo < nx < hi):
            nx = 0.5 * (lo + hi)
        x = nx
    return hi


@_jit
def first_crossing(A1, B1, t1, A2, B2, t2, theta, H, post):
    """The first ``t`` in ``[0, H]`` with ``f(t) >= 0`` (``post``: in ``(0, H]``, with ``f(0) = 0`` just after a
    spike); ``inf`` if none. ``f(t) = (A1 + B1 t) e^{-t/t1} + (A2 + B2 t) e^{-t/t2} - theta``."""
    s_lo = np.empty(_STACK)
    s_hi = np.empty(_STACK)
    s_lo[0], s_hi[0] = 0.0, H
    sp = 1
    while sp > 0:
        sp -= 1
        lo, hi = s_lo[sp], s_hi[sp]
        if _upper(A1, B1, t1, A2, B2, t2, theta, lo, hi) < 0.0:
            continue
        at_spike = post and lo == 0.0
        if not at_spike and _f(A1, B1, t1, A2, B2, t2, theta, lo) >= 0.0:
            return lo
        d1 = _term_range(B1 - A1 / t1, -B1 / t1, t1, lo, hi)
        d2 = _term_range(B2 - A2 / t2, -B2 / t2, t2, lo, hi)
        if d1[1] + d2[1] <= 0.0:
            continue  # f falls from f(lo) < 0 (or from 0 just after a spike)
        f_hi = _f(A1, B1, t1, A2, B2, t2, theta, hi)
        if d1[0] + d2[0] > 0.0:  # f rises: at most one crossing
            if f_hi >= 0.0:
                return 0.0 if at_spike else _root(A1, B1, t1, A2, B2, t2, theta, lo, hi)
            continue
        if hi - lo <= XTOL_MS or sp + 2 > _STACK:
            if f_hi >= 0.0:
                return hi
            continue
        mid = 0.5 * (lo + hi)
        s_lo[sp], s_hi[sp] = mid, hi
        s_lo[sp + 1], s_hi[sp + 1] = lo, mid
        sp += 2
    return math.inf


# ----------------------------------------------------------------------------- the event loop

@_jit
def _slope(g, v, I, vr, Ir, p1, p2, fir):
    """``du/dt`` of SRM neuron g now."""
    if fir[g]:
        return I[g] + (Ir[g] - vr[g]) / p2[g]
    return _u_slope(v[g], I[g], vr[g], Ir[g], p1[g], p2[g])


@_jit
def _advance(g, t, v, I, vr, Ir, t_last, p1, p2, srm, fir):
    dt = t - t_last[g]
    if dt > 0.0:
        if fir[g]:
            v[g] += I[g] * dt
            vr[g], Ir[g] = _evolve_lif(vr[g], Ir[g], dt, 1.0 / p2[g], 1.0 / p2[g])
        elif srm:
            v[g], I[g], vr[g], Ir[g] = _evolve_srm(v[g], I[g], vr[g], Ir[g], dt, p1[g], p2[g])
        else:
            v[g], I[g] = _evolve_lif(v[g], I[g], dt, 1.0 / p1[g], 1.0 / p2[g])
        t_last[g] = t


@_jit
def _schedule(heap, g, layer, i, t, T_end, v, I, vr, Ir, p1, p2, theta, version, spiked_at, fir, first_t, nxt,
              first_all, dead):
    """Queue neuron g's next crossing (or a look at it at its horizon, unless the event there is a delivery to its
    whole layer, which looks at it anyway). The horizon of the first layer is its next input delivery (``first_t``,
    sorted, ``nxt[0]`` the first not yet past; ``first_all``: each reaches the whole layer): it gets nothing else.
    A deeper layer's is the next event anywhere, since a spike upstream may reach it at once. In its dead time
    (``dead``) a neuron is only looked at when it ends; a delivery before then looks at it again anyway."""
    if dead[g] > 0.0 and spiked_at[g] >= 0.0 and t < spiked_at[g] + dead[g]:
        t_free = spiked_at[g] + dead[g]
        if t_free < T_end:
            heapq.heappush(heap, (t_free, _CHECK, layer, 0, i, version[g]))
        return
    if layer == 0:
        p = nxt[0]
        while p < len(first_t) and first_t[p] <= t:
            p += 1
        nxt[0] = p
        t_next = first_t[p] if p < len(first_t) else T_end
        covered = first_all and p < len(first_t)
    else:
        t_next = heap[0][0] if len(heap) > 0 else T_end
        covered = len(heap) > 0 and heap[0][1] == _DELIVER_ALL and heap[0][2] == layer
    rem = T_end - t
    H = min(t_next - t, rem) if t_next > t else rem
    post = spiked_at[g] == t
    if post:
        if _slope(g, v, I, vr, Ir, p1, p2, fir) > 0.0:  # still rising through theta: fire again
            heapq.heappush(heap, (t, _CROSS, layer, 0, i, version[g]))
            return
    elif v[g] + vr[g] >= theta[g]:
        heapq.heappush(heap, (t, _CROSS, layer, 0, i, version[g]))
        return
    if fir[g]:  # v + I t: the first term with an infinite time constant
        # the refractory term is never positive (vr, Ir <= 0), so u <= v + I t: no crossing while that stays below
        if max(v[g], v[g] + I[g] * H) < theta[g]:
            if not covered and H < rem and v[g] + I[g] * rem >= theta[g]:
                heapq.heappush(heap, (t + H, _CHECK, layer, 0, i, version[g]))
            return
        A1, B1, t1 = v[g], I[g], math.inf
    else:
        A1, B1, t1 = v[g], I[g] / p1[g], p1[g]
    A2, B2 = vr[g], Ir[g] / p2[g]
    tc = first_crossing(A1, B1, t1, A2, B2, p2[g], theta[g], H, post)
    if tc < math.inf:
        if t + tc < T_end:
            heapq.heappush(heap, (t + tc, _CROSS, layer, 0, i, version[g]))
    elif not covered and H < rem and _upper(A1, B1, t1, A2, B2, p2[g], theta[g], H, rem) >= 0.0:
        heapq.heappush(heap, (t + H, _CHECK, layer, 0, i, version[g]))


@_jit
def _push_spike(heap, t, layer, j, T_end, kinds, d, d_off, sizes, k_lag, k_off):
    """Queue the deliveries of a spike of presynaptic neuron j (at time t) into ``layer``: one, or one per knot
    of a learned PSP kernel (the last field: the knot)."""
    kind = kinds[layer]
    N = sizes[layer]
    for q in range(k_off[layer], k_off[layer + 1]):
        lag = k_lag[q]
        knot = q - k_off[layer]
        if kind == 0:
            if t + lag < T_end:
                heapq.heappush(heap, (t + lag, _DELIVER_ALL, layer, j, 0, knot))
        elif kind == 1:  # axonal
            ta = t + d[d_off[layer] + j] + lag
            if ta < T_end:
                heapq.heappush(heap, (ta, _DELIVER_ALL, layer, j, 0, knot))
        else:  # synaptic
            base = d_off[layer] + j * N
            for i in range(N):
                ta = t + d[base + i] + lag
                if ta < T_end:
                    heapq.heappush(heap, (ta, _DELIVER_ONE, layer, j, i, knot))


@_jit
def _simulate_sample(in_t, in_u, T_end, sample_t, offsets, sizes, srm_layer, p1, p2, theta, jump, w, w_off,
                     d_kind, d, d_off, fir, k_lag, k_c, k_off, dead, max_spikes):
    """One sample: input spikes ``(in_t, in_u)`` (ms, unit). Returns (layer, unit, time) of every spike of the
    spiking layers and the readout trace ``[len(sample_t), N_out]`` (zeros when the output layer spikes)."""
    L = len(sizes)
    G = offsets[L]
    v, I, vr, Ir = np.zeros(G), np.zeros(G), np.zeros(G), np.zeros(G)
    t_last = np.zeros(G)
    version = np.zeros(G, np.int64)
    spiked_at = np.full(G, -1.0)
    out_l, out_u, out_t = [0], [0], [0.0]
    out_l.pop(), out_u.pop(), out_t.pop()
    steep = 0  # crossings steeper than half the refractory kernel's initial slope (see simulate_event_srm)
    n_out = sizes[L - 1]
    trace = np.zeros((len(sample_t), n_out))
    next_sample = 0
    heap = [(0.0, 0, 0, 0, 0, 0)]
    heap.pop()
    # neurons moved by deliveries at the current time, scheduled once after the last of them (on-grid inputs, and
    # the knots of a learned kernel, put many deliveries at one time)
    dirty = np.zeros(G, np.bool_)
    dirty_g = np.empty(G, np.int64)
    dirty_l = np.empty(G, np.int64)
    n_dirty = 0
    for q in range(len(in_t)):
        _push_spike(heap, in_t[q], 0, in_u[q], T_end, d_kind, d, d_off, sizes, k_lag, k_off)
    # the first layer's deliveries, all known now (the heap holds nothing else yet): its neurons' horizon
    first_t = np.empty(len(heap))
    for q in range(len(heap)):
        first_t[q] = heap[q][0]
    first_t.sort()
    nxt = np.zeros(1, np.int64)
    first_all = d_kind[0] != 2
    while len(heap) > 0:
        t, kind, layer, src, tgt, ver = heapq.heappop(heap)
        while next_sample < len(sample_t) and sample_t[next_sample] <= t:
            if not srm_layer[L - 1]:
                for i in range(n_out):
                    g = offsets[L - 1] + i
                    trace[next_sample, i] = _evolve_lif(v[g], I[g], sample_t[next_sample] - t_last[g],
                                                        1.0 / p1[g], 1.0 / p2[g])[0]
            next_sample += 1
        if kind == _CROSS or kind == _CHECK:
            g = offsets[layer] + tgt
            if ver != version[g]:
                continue
            _advance(g, t, v, I, vr, Ir, t_last, p1, p2, True, fir)
            version[g] += 1
            if kind == _CROSS:
                if spiked_at[g] != t and _slope(g, v, I, vr, Ir, p1, p2, fir) > -0.5 * jump[g] / p2[g]:
                    steep += 1
                out_l.append(layer)
                out_u.append(tgt)
                out_t.append(t)
                if len(out_t) >= max_spikes:
                    break
                Ir[g] += jump[g]
                spiked_at[g] = t
                if layer + 1 < L:
                    _push_spike(heap, t, layer + 1, tgt, T_end, d_kind, d, d_off, sizes, k_lag, k_off)
            _schedule(heap, g, layer, tgt, t, T_end, v, I, vr, Ir, p1, p2, theta, version, spiked_at, fir, first_t,
                      nxt, first_all, dead)
        else:
            N = sizes[layer]
            lo, hi = (tgt, tgt + 1) if kind == _DELIVER_ONE else (0, N)
            srm = srm_layer[layer]
            gain = E
            if fir[offsets[layer]]:
                gain = k_c[k_off[layer] + ver]
            for i in range(lo, hi):
                wi = w[w_off[layer] + src * N + i]
                if wi == 0.0 and not srm:  # (an srm neuron is looked at even so: see _schedule)
                    continue
                g = offsets[layer] + i
                _advance(g, t, v, I, vr, Ir, t_last, p1, p2, srm, fir)
                if srm:
                    I[g] += gain * wi
                    version[g] += 1
                    if not dirty[g]:
                        dirty[g] = True
                        dirty_g[n_dirty], dirty_l[n_dirty] = g, layer
                        n_dirty += 1
                else:
                    I[g] += wi
            if n_dirty and (len(heap) == 0 or heap[0][0] != t or heap[0][1] > _DELIVER_ONE):
                for q in range(n_dirty):
                    g, lq = dirty_g[q], dirty_l[q]
                    dirty[g] = False
                    _schedule(heap, g, lq, g - offsets[lq], t, T_end, v, I, vr, Ir, p1, p2, theta, version,
                              spiked_at, fir, first_t, nxt, first_all, dead)
                n_dirty = 0
    if not srm_layer[L - 1]:
        while next_sample < len(sample_t):
            for i in range(n_out):
                g = offsets[L - 1] + i
                trace[next_sample, i] = _evolve_lif(v[g], I[g], sample_t[next_sample] - t_last[g],
                                                    1.0 / p1[g], 1.0 / p2[g])[0]
            next_sample += 1
    return np.array(out_l, np.int64), np.array(out_u, np.int64), np.array(out_t), trace, steep


def check_network(net: Network) -> None:
    """What this engine runs: spiking layers all ``srm`` with a refractory kernel, no recurrence; one-line
    errors otherwise."""
    for i, L in enumerate(net.layers):
        if L.kind == "lif":
            raise EventsnnError(f"layers/{i}: the event engine runs networks whose spiking layers are all 'lif' or "
                                "all 'srm', not a mix")
        if L.rec_weight is not None:
            raise EventsnnError(f"layers/{i}: the event engine runs SRM networks without recurrent weights")
        if L.kind == "srm" and np.any(L.scale_ref <= 0):
            raise EventsnnError(f"layers/{i}: scale_ref 0 (no refractory kernel): in continuous time such a "
                                "neuron fires without bound once u reaches theta; the exact engine needs "
                                "scale_ref > 0")


def _flatten(net: Network):
    sizes = np.array([L.size for L in net.layers], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    srm_layer = np.array([L.kind == "srm" for L in net.layers])
    p1 = np.concatenate([L.tau_sr_ms if L.kind == "srm" else L.tau_mem_ms for L in net.layers])
    p2 = np.concatenate([L.tau_ref_ms if L.kind == "srm" else L.tau_syn_ms for L in net.layers])
    theta = np.concatenate([L.threshold if L.kind == "srm" else np.full(L.size, np.inf) for L in net.layers])
    jump = np.concatenate([refractory_jump(L.scale_ref, L.threshold) if L.kind == "srm" else np.zeros(L.size)
                           for L in net.layers])

    def pack(arrays):
        offs = np.concatenate([[0], np.cumsum([a.size for a in arrays])]).astype(np.int64)
        return np.concatenate([a.ravel() for a in arrays]).astype(np.float64), offs

    w, w_off = pack([L.ff_weight for L in net.layers])
    d_kind = np.array([{"none": 0, "axonal": 1, "synaptic": 2}[L.delay_kind] for L in net.layers], np.int64)
    d, d_off = pack([np.zeros(0) if L.ff_delay_ms is None else L.ff_delay_ms for L in net.layers])
    fir = np.concatenate([np.full(L.size, L.psp_taps is not None) for L in net.layers])
    # deliveries per arriving spike: one at lag 0 (the kernel's own ODEs), or one per knot of a learned kernel
    kinks = [fir_kinks(L.psp_taps, L.psp_tap_ms) if L.psp_taps is not None else (np.zeros(1), np.full(1, E))
             for L in net.layers]
    k_lag, k_off = pack([k[0] for k in kinks])
    k_c, _ = pack([k[1] for k in kinks])
    dead = np.concatenate([np.zeros(L.size) if L.refractory_ms is None or L.kind != "srm"
                           else np.asarray(L.refractory_ms, np.float64) for L in net.layers])
    return offsets, sizes, srm_layer, p1, p2, theta, jump, w, w_off, d_kind, d, d_off, fir, k_lag, k_c, k_off, dead


def simulate_event_srm(net: Network, events, indices=None, *, progress: bool = False, workers: int = 1,
                       max_rate_hz: float = 1000.0) -> RunResult:
    """Simulate ``events[indices]`` through an SRM network exactly (the arguments and result of
    :func:`eventsnn.bridge.engines.event.simulate_event`, which calls this for networks with ``srm`` layers).

    ``attrs["srm_steep_crossings"]`` counts the threshold crossings (the first spike of each) where ``u`` rose
    faster than half the refractory kernel's initial slope, ``e*scale_ref*theta/(2*tau_ref)``: there a clocked run
    fires a burst in consecutive steps whose size depends on where in its step the crossing falls, so clocked runs
    agree with this one spike for spike only where this count is 0 (:mod:`eventsnn.model.srm`). Single-process runs
    only (``workers=1``)."""

    from eventsnn.bridge.engines import check_compatible
    from eventsnn.bridge.engines.event import ExactRun

    check_network(net)
    if indices is None:
        indices = np.arange(len(events))
    indices = np.asarray(indices, dtype=np.int64)
    check_compatible(net, events)
    workers = max(1, min(int(workers), len(indices)))
    t0 = time.perf_counter()
    if workers > 1:
        from eventsnn.bridge.runfile import run_sample_chunks
        run = run_sample_chunks(_part, lambda i, ev: (net, ev, max_rate_hz), events, indices, workers,
                                "event engine parts", progress)
        run.attrs["wall_s"] = time.perf_counter() - t0
        run.attrs.pop("srm_steep_crossings", None)  # the joined run holds the first part's attrs only
        return run
    flat = _flatten(net)
    run = ExactRun(net, events, indices, max_rate_hz)
    steep = 0
    with progress_bar(total=len(indices), desc="event engine (srm)", disable=not progress) as bar:
        for pos, s in enumerate(indices):
            t, u = events.sample(int(s))
            t = np.asarray(t, np.float64) * 1e3
            u = np.asarray(u, np.int64)
            o = np.lexsort((u, t))
            lay, unit, tt, tr, n_steep = _simulate_sample(t[o], u[o], run.T_end, run.sample_t, *flat, run.cap)
            steep += n_steep
            run.add(pos, lay, unit, tt, tr)
            bar.update(1)
    return run.result({"wall_s": time.perf_counter() - t0, "srm_steep_crossings": int(steep)})


def _part(args):
    net, events, max_rate_hz = args
    return simulate_event_srm(net, events, progress=False, workers=1, max_rate_hz=max_rate_hz)
