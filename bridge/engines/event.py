"""The exact, event-driven engine (``engine="event"``): the network file's model with no time step.

The same continuous-time network the discrete contract approximates (DESIGN.md section 2), simulated
exactly: between events every neuron follows the closed form of :func:`eventsnn.model.contract.evolve`; an
arriving spike does ``I += w`` at exactly ``t + d`` (delays real-valued, input times unbinned, several
spikes of one unit at one time all delivered); a neuron spikes at the first time its ``v`` reaches
``theta`` (``>=``), found by a safeguarded Newton iteration to 1e-12 ms inside an analytic bracket; reset
to ``0`` or ``v - theta``; refractory neurons hold ``v`` for ``t_ref`` while ``I`` keeps evolving and
receiving input. Readout neurons (``li``) are sampled at the end of every training step,
``t = (n + 1) train_dt`` -- the limit of the clock-driven engines' samples -- so ``compare`` and ``verify``
treat the run like any other.

Where a crossing can be (``v`` is a sum of two exponentials, so it has at most one extremum):
``tm dv/dt = I - v``, so an extremum sits where ``v = I``, and ``v`` is at most ``I`` there; with ``I``
decaying, ``v`` can reach ``theta`` only if ``I > theta`` and ``I > v`` now. Then the maximum ``t*`` (the
root of ``I - v``) is bracketed by doubling and found by Newton; if ``v(t*) >= theta`` the crossing is the
root of ``v - theta`` on ``[0, t*]``, where ``v`` rises monotonically.

Cost grows with the number of spikes and deliveries, not with the number of steps. The default path
(:mod:`bridge.event_layers`) runs the network layer by layer, shares decay factors over a layer's fan-out
and rules crossings out by a bound before any root is sought; samples run in parallel threads
(``workers``). The reference path below (``method="reference"``) keeps one priority queue (a binary heap)
of pending deliveries, threshold crossings and refractory ends for the whole network per sample; the
default is checked against it. Both are compiled with numba (chosen over C++ through Brian2's toolchain
because it compiles once per machine, needs no build directory, and runs the same code in tests and worker
processes), cached in the user's cache directory (:mod:`eventsnn.util.jit`).
"""
from __future__ import annotations

import heapq
import math
import time

import numpy as np

from eventsnn.bridge.engines import check_compatible
from eventsnn.bridge.network import Network
from eventsnn.bridge.runfile import LayerSpikes, RunResult, run_sample_chunks
from eventsnn.data.events import n_steps, time_to_step
from eventsnn.model.contract import SPIKING_READOUTS, evolve_rates, readout_scores
from eventsnn.util.errors import EventsnnError
from eventsnn.util.jit import jit as _jit
from eventsnn.util.progress import progress_bar

XTOL_MS = 1e-12

_evolve_rates = _jit(evolve_rates)


@_jit
def _evolve(v0, I0, t, tm, ts):
    return _evolve_rates(v0, I0, t, 1.0 / tm, 1.0 / ts)

# event kinds, in the order they are handled at equal times (deliveries before crossings does not matter for
# v, which is continuous; the order only makes runs reproducible)
_DELIVER_ALL, _DELIVER_ONE, _REF_END, _CROSS, _CHECK = 0, 1, 2, 3, 4


@_jit
def _v_minus(v0, I0, t, tm, ts, theta):
    v, I = _evolve(v0, I0, t, tm, ts)
    return v - theta, (I - v) / tm  # f and f' = dv/dt


@_jit
def _i_minus_v(v0, I0, t, tm, ts):
    v, I = _evolve(v0, I0, t, tm, ts)
    return I - v, -I / ts - (I - v) / tm  # h = I - v and h'


@_jit
def _newton_root(kind, v0, I0, tm, ts, theta, lo, hi):
    """Root in [lo, hi] (f(lo) < 0 <= f(hi) for kind 0: v - theta; h(lo) > 0 >= h(hi) for kind 1: I - v),
    Newton steps kept inside a shrinking bracket, bisection when a step leaves it."""
    x = 0.5 * (lo + hi)
    for _ in range(200):
        if kind == 0:
            f, df = _v_minus(v0, I0, x, tm, ts, theta)
            if f >= 0.0:
                hi = x
            else:
                lo = x
        else:
            f, df = _i_minus_v(v0, I0, x, tm, ts)
            if f <= 0.0:
                hi = x
            else:
                lo = x
        if hi - lo <= XTOL_MS:
            break
        nx = x - f / df if df != 0.0 else 0.5 * (lo + hi)
        if not (lo < nx < hi):
            nx = 0.5 * (lo + hi)
        elif abs(nx - x) < 0.5 * XTOL_MS:
            # converged from one side (Newton on a concave or convex stretch never crosses the root): probe just
            # past it to close the bracket, instead of bisecting the far side down
            nx = x + 0.5 * XTOL_MS if x == lo else x - 0.5 * XTOL_MS
            if not (lo < nx < hi):
                nx = 0.5 * (lo + hi)
        x = nx
    return hi  # the side where v >= theta (kind 0): a spike at exactly theta counts


@_jit
def _time_of_max(v0, I0, tm, ts, theta):
    """Time of the maximum of v from a state where v rises (I0 > v0): where v = I. Closed form
    ``ln(-B tm / (A ts)) / (1/ts - 1/tm)`` of the two-exponential form ``A e^{-t/tm} + B e^{-t/ts}`` when the
    taus are apart; a bracketed Newton iteration on ``I - v`` when they are (nearly) equal."""
    if abs(ts - tm) > 1e-6 * max(tm, ts):
        B = I0 * ts / (ts - tm)
        A = v0 - B
        r = -B * tm / (A * ts) if A != 0.0 else -1.0
        if r > 0.0:
            t = math.log(r) / (1.0 / ts - 1.0 / tm)
            if t > 0.0:
                return t
    hi = min(tm, ts)
    for _ in range(200):
        h, _d = _i_minus_v(v0, I0, hi, tm, ts)
        if h <= 0.0:
            break
        hi *= 2.0
    return _newton_root(1, v0, I0, tm, ts, theta, 0.0, hi)


@_jit
def crossing_within(v0, I0, tm, ts, theta, horizon):
    """When ``v`` first reaches ``theta`` with no further input, deciding only what happens before ``horizon``
    (the next event anywhere, after which the neuron may be looked at again).

    Returns ``(0, inf)``: never; ``(1, t)``: at time t from now (exact); ``(2, horizon)``: not before the horizon
    but later unless new input arrives -- look again then. Root finding runs only for crossings before the
    horizon, so crossings that later input would cancel are never computed.
    """
    if v0 >= theta:
        return 1, 0.0
    if I0 <= theta or I0 <= v0:
        return 0, math.inf  # the maximum of v is at most I, which only decays
    t_max = _time_of_max(v0, I0, tm, ts, theta)
    if horizon < t_max:  # v rises monotonically up to the horizon
        f, _d = _v_minus(v0, I0, horizon, tm, ts, theta)
        if f >= 0.0:
            return 1, _newton_root(0, v0, I0, tm, ts, theta, 0.0, horizon)
    f, _d = _v_minus(v0, I0, t_max, tm, ts, theta)
    if f < 0.0:
        return 0, math.inf
    if horizon < t_max:
        return 2, horizon
    return 1, _newton_root(0, v0, I0, tm, ts, theta, 0.0, t_max)


@_jit
def _simulate_sample(arr_t, arr_kind, arr_j, arr_i, T_end, sample_t, offsets, tm, ts, theta, tref, spiking,
                     subtract, ff_w, ff_w_off, ff_kind, ff_d, ff_d_off, rec_kind, rec_w, rec_w_off, rec_d, rec_d_off,
                     sizes, max_spikes):
    """One sample. ``arr_*``: the input spikes' arrivals at the first layer, sorted (time, kind, source,
    target) -- known in advance, so they need no queue and tell the first layer its next input exactly.
    Returns (spike layer, unit, time) arrays and the readout trace [len(sample_t), N_out]; stops early, with
    ``max_spikes`` spikes, when the hidden layers fire that many (the caller reports it)."""
    L = len(sizes)
    G = offsets[L]
    inv_tm, inv_ts = 1.0 / tm, 1.0 / ts
    v = np.zeros(G)
    I = np.zeros(G)
    t_last = np.zeros(G)
    ref_until = np.full(G, -1.0)
    version = np.zeros(G, np.int64)
    out_l, out_u, out_t = [0], [0], [0.0]
    out_l.pop(), out_u.pop(), out_t.pop()
    n_out = sizes[L - 1]
    trace = np.zeros((len(sample_t), n_out))
    next_sample = 0
    n_arr = len(arr_t)
    nxt = np.zeros(1, np.int64)  # position of the next input arrival (an array so helpers can read it)
    # heap entries: (time, kind, layer, source index, target index, version or recurrent tag)
    heap = [(0.0, 0, 0, 0, 0, 0)]
    heap.pop()
    while len(heap) > 0 or nxt[0] < n_arr:
        p = nxt[0]
        if p < n_arr and (len(heap) == 0 or (arr_t[p], arr_kind[p], 0, arr_j[p], arr_i[p], 0) < heap[0]):
            t, kind, layer, src, tgt, ver = arr_t[p], arr_kind[p], 0, arr_j[p], arr_i[p], 0
            nxt[0] = p + 1
        else:
            t, kind, layer, src, tgt, ver = heapq.heappop(heap)
        # readout samples due before this event (v is continuous: deliveries at t do not change v(t))
        while next_sample < len(sample_t) and sample_t[next_sample] <= t:
            _sample(trace, next_sample, sample_t[next_sample], offsets[L - 1], n_out, v, I, t_last, tm, ts)
            next_sample += 1
        if kind == _CROSS:
            g = offsets[layer] + tgt
            if ver != version[g]:
                continue
            _advance(g, t, v, I, t_last, ref_until, inv_tm, inv_ts)
            out_l.append(layer)
            out_u.append(tgt)
            out_t.append(t)
            if len(out_t) >= max_spikes:
                break
            v[g] = v[g] - theta[g] if subtract[layer] else 0.0
            version[g] += 1
            if tref[g] > 0.0:
                ref_until[g] = t + tref[g]
                if ref_until[g] < T_end:
                    heapq.heappush(heap, (ref_until[g], _REF_END, layer, 0, tgt, version[g]))
            else:
                _schedule(heap, g, layer, tgt, t, v, I, tm, ts, theta, version, T_end, ff_w, ff_w_off, sizes, arr_t, arr_kind, arr_j, arr_i, nxt, rec_kind)
            # this spike travels to the next layer and, through recurrent weights, to this one
            if layer + 1 < L:
                _push_spike(heap, t, layer + 1, tgt, T_end, ff_kind, ff_d, ff_d_off, sizes, False)
            if rec_kind[layer] >= 0:
                _push_spike(heap, t, layer, tgt, T_end, rec_kind, rec_d, rec_d_off, sizes, True)
        elif kind == _REF_END or kind == _CHECK:
            g = offsets[layer] + tgt
            if ver != version[g]:
                continue
            _advance(g, t, v, I, t_last, ref_until, inv_tm, inv_ts)
            _schedule(heap, g, layer, tgt, t, v, I, tm, ts, theta, version, T_end, ff_w, ff_w_off, sizes, arr_t, arr_kind, arr_j, arr_i, nxt, rec_kind)
        else:
            # a delivery of presynaptic neuron `src` (of layer-1, or of this layer when recurrent: ver == 1)
            N = sizes[layer]
            lo, hi = (tgt, tgt + 1) if kind == _DELIVER_ONE else (0, N)
            for i in range(lo, hi):
                g = offsets[layer] + i
                if ver == 1:
                    w = rec_w[rec_w_off[layer] + src * N + i]
                else:
                    w = ff_w[ff_w_off[layer] + src * N + i]
                if w == 0.0:
                    continue
                _advance(g, t, v, I, t_last, ref_until, inv_tm, inv_ts)
                I[g] += w
                if spiking[layer] and t >= ref_until[g]:
                    version[g] += 1
                    _schedule(heap, g, layer, i, t, v, I, tm, ts, theta, version, T_end, ff_w, ff_w_off, sizes, arr_t, arr_kind, arr_j, arr_i, nxt, rec_kind)
    while next_sample < len(sample_t):
        _sample(trace, next_sample, sample_t[next_sample], offsets[L - 1], n_out, v, I, t_last, tm, ts)
        next_sample += 1
    return np.array(out_l, np.int64), np.array(out_u, np.int64), np.array(out_t), trace


@_jit
def _advance(g, t, v, I, t_last, ref_until, inv_tm, inv_ts):
    """Bring neuron g's state to time t (v held while refractory, I decaying all along)."""
    dt = t - t_last[g]
    if dt <= 0.0:
        return
    if t_last[g] < ref_until[g]:
        held = min(t, ref_until[g]) - t_last[g]
        I[g] *= math.exp(-held * inv_ts[g])
        t_last[g] += held
        dt = t - t_last[g]
        if dt <= 0.0:
            t_last[g] = t
            return
    v[g], I[g] = _evolve_rates(v[g], I[g], dt, inv_tm[g], inv_ts[g])
    t_last[g] = t


@_jit
def _schedule(heap, g, layer, i, t, v, I, tm, ts, theta, version, T_end, ff_w, ff_w_off, sizes,
              arr_t, arr_kind, arr_j, arr_i, nxt, rec_kind):
    """Queue neuron g's next threshold crossing, or a look at it at its horizon: the next event that can change
    it. For the first layer without recurrence that is its next input arrival; otherwise the next event of
    any kind (a safe, earlier bound)."""
    p = nxt[0]
    first = layer == 0 and rec_kind[0] < 0
    if first:
        t_next = arr_t[p] if p < len(arr_t) else T_end
    else:
        t_next = heap[0][0] if len(heap) > 0 else T_end
        if p < len(arr_t) and arr_t[p] < t_next:
            t_next = arr_t[p]
    # with no later event to look again at (the next one is now), decide completely now
    horizon = min(t_next, T_end) - t if t_next > t else math.inf
    status, dt = crossing_within(v[g], I[g], tm[g], ts[g], theta[g], horizon)
    if status == 1:
        if t + dt < T_end:
            heapq.heappush(heap, (t + dt, _CROSS, layer, 0, i, version[g]))
    elif status == 2 and t_next < T_end:
        if first and arr_kind[p] == _DELIVER_ALL and ff_w[ff_w_off[0] + arr_j[p] * sizes[0] + i] != 0.0:
            return  # the next event is an input delivery to this neuron: it will look again then
        heapq.heappush(heap, (t_next, _CHECK, layer, 0, i, version[g]))


@_jit
def _push_spike(heap, t, layer, j, T_end, kinds, d, d_off, sizes, recurrent):
    """Queue the deliveries of a spike of presynaptic neuron j (at time t) into ``layer``."""
    kind = kinds[layer]
    tag = 1 if recurrent else 0
    N = sizes[layer]
    if kind <= 0:  # no delay (0) -- for feed-forward connections -1 also means none
        heapq.heappush(heap, (t, _DELIVER_ALL, layer, j, 0, tag))
    elif kind == 1:  # axonal: one delay per presynaptic neuron
        ta = t + d[d_off[layer] + j]
        if ta < T_end:
            heapq.heappush(heap, (ta, _DELIVER_ALL, layer, j, 0, tag))
    else:  # synaptic: one delay per synapse
        base = d_off[layer] + j * N
        for i in range(N):
            ta = t + d[base + i]
            if ta < T_end:
                heapq.heappush(heap, (ta, _DELIVER_ONE, layer, j, i, tag))


@_jit
def _sample(trace, n, t, off, n_out, v, I, t_last, tm, ts):
    for i in range(n_out):
        g = off + i
        vv, _ = _evolve(v[g], I[g], t - t_last[g], tm[g], ts[g])
        trace[n, i] = vv


def _flatten(net: Network):
    """The network as flat float64/int64 arrays for the compiled loop."""
    sizes = np.array([L.size for L in net.layers], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    tm = cat([L.tau_mem_ms for L in net.layers])
    ts = cat([L.tau_syn_ms for L in net.layers])
    theta = cat([L.threshold if L.threshold is not None else np.full(L.size, np.inf) for L in net.layers])
    tref = cat([L.refractory_ms if L.refractory_ms is not None else np.zeros(L.size) for L in net.layers])
    spiking = np.array([L.kind == "lif" for L in net.layers])
    subtract = np.array([L.reset == "subtract" for L in net.layers])

    def pack(arrays):
        offs = np.concatenate([[0], np.cumsum([a.size for a in arrays])]).astype(np.int64)
        return cat([a.ravel() for a in arrays]).astype(np.float64), offs

    ff_w, ff_w_off = pack([L.ff_weight for L in net.layers])
    ff_kind = np.array([{"none": 0, "axonal": 1, "synaptic": 2}[L.delay_kind] for L in net.layers], np.int64)
    ff_d, ff_d_off = pack([np.zeros(0) if L.ff_delay_ms is None else L.ff_delay_ms for L in net.layers])
    rec_kind = np.array([-1 if L.rec_weight is None else 0 if L.rec_delay_ms is None else
                         (1 if L.rec_delay_ms.ndim == 1 else 2) for L in net.layers], np.int64)
    rec_w, rec_w_off = pack([np.zeros(0) if L.rec_weight is None else L.rec_weight for L in net.layers])
    rec_d, rec_d_off = pack([np.zeros(0) if L.rec_delay_ms is None else L.rec_delay_ms for L in net.layers])
    return (offsets, tm, ts, theta, tref, spiking, subtract, ff_w, ff_w_off, ff_kind, ff_d, ff_d_off,
            rec_kind, rec_w, rec_w_off, rec_d, rec_d_off, sizes)


def input_arrivals(net: Network, t_ms: np.ndarray, units: np.ndarray, T_end: float):
    """When each input spike reaches the first layer, sorted like the queue orders events: ``(time, kind,
    source, target)``; one arrival per spike (``target`` -1, all neurons) without or with axonal delays, one per
    synapse with synaptic delays. Arrivals at or after the end of the sample are dropped."""
    L0 = net.layers[0]
    if L0.delay_kind == "synaptic":
        N = L0.size
        at = (t_ms[:, None] + L0.ff_delay_ms[units, :]).ravel()
        kind = np.full(at.shape, _DELIVER_ONE, np.int64)
        j = np.repeat(units, N)
        i = np.tile(np.arange(N, dtype=np.int64), len(units))
    else:
        at = t_ms + (0.0 if L0.ff_delay_ms is None else L0.ff_delay_ms[units])
        kind = np.full(at.shape, _DELIVER_ALL, np.int64)
        j = units.astype(np.int64)
        i = np.zeros(len(units), np.int64)
    keep = at < T_end
    at, kind, j, i = at[keep], kind[keep], j[keep], i[keep]
    order = np.lexsort((i, j, kind, at))
    return at[order], kind[order], j[order], i[order]


MAX_RATE_HZ = 1000.0  # mean rate per hidden neuron at which an exact run is stopped (a 1 ms clock's own cap)
SPIKE_CAP_FLOOR = 200_000  # ... but never below this many spikes per sample (a small network is cheap at any rate)


def simulate_event(net: Network, events, indices=None, *, progress: bool = False, workers: int = 1,
                   max_rate_hz: float = MAX_RATE_HZ, method: str = "layers") -> RunResult:
    """Simulate ``events[indices]`` exactly, in continuous time.

    Parameters
    ----------
    net : Network
        The network file's contents (delays used unrounded).
    events : Events
        Input samples (times unbinned; every spike delivered).
    indices : array of int, optional
        Which samples (default: all).
    workers : int
        Samples run in parallel: threads of this process (``method="layers"``), processes (``"reference"``).
    max_rate_hz : float
        Stop with an error when one sample's spikes exceed this mean rate per hidden neuron (default 1000 Hz,
        what a 1 ms clock can give at most) and :data:`SPIKE_CAP_FLOOR` (200,000: below it a run is cheap at any
        rate). A network with no refractory period can fire without bound at fine time scales; an exact run of
        it is an event per spike and would not finish.
    method : str
        ``"layers"`` (default): the network layer by layer, decay factors shared by a layer's fan-out, crossings
        ruled out by a bound before any root is sought (:mod:`bridge.event_layers`). ``"reference"``: one
        event queue for the whole network, every neuron's closed form on its own (:func:`_simulate_sample`);
        kept to check the default against. Both are exact; they agree bit for bit on the first layer and the
        readout trace of feed-forward networks, and to 1e-12 ms elsewhere.

    Returns
    -------
    RunResult
        ``engine="event"``, ``dt_ms=0``; hidden spike times in float64 ms (``step`` is the training-grid
        step of each spike, ``floor(t / train_dt + 1e-3)``); the readout trace at ``t = (n + 1) train_dt``.

    Raises
    ------
    EventsnnError
        If the events do not fit the network, or a sample fires beyond ``max_rate_hz``.
    """

    if net.has_srm:  # SRM-alpha networks have their own exact event loop (bridge/event_srm.py)
        from eventsnn.bridge.engines.event_srm import simulate_event_srm
        return simulate_event_srm(net, events, indices, progress=progress, workers=workers, max_rate_hz=max_rate_hz)
    if indices is None:
        indices = np.arange(len(events))
    indices = np.asarray(indices, dtype=np.int64)
    check_compatible(net, events)
    if method not in ("layers", "reference"):
        raise EventsnnError(f"unknown event engine method {method!r}; choose 'layers' or 'reference'")
    workers = max(1, min(int(workers), len(indices)))
    t0 = time.perf_counter()
    if workers > 1 and method == "reference":
        run = _in_workers(net, events, indices, workers, progress, max_rate_hz)
        run.attrs["wall_s"] = time.perf_counter() - t0
        return run
    flat = _flatten(net)
    run = ExactRun(net, events, indices, max_rate_hz)

    def done(pos, result):
        run.add(pos, *result[:4], ordered=method == "layers")  # the layered path orders them in its threads
        bar.update(1)

    with progress_bar(total=len(indices), desc="event engine", disable=not progress) as bar:
        if method == "layers":
            from eventsnn.bridge.engines.event_layers import run_samples
            run_samples(net, events, indices, flat, run.T_end, run.sample_t, run.cap, workers, done)
        else:
            for pos, s in enumerate(indices):
                t, u = events.sample(int(s))
                arrivals = input_arrivals(net, np.asarray(t, np.float64) * 1e3, np.asarray(u, np.int64), run.T_end)
                done(pos, _simulate_sample(*arrivals, run.T_end, run.sample_t, *flat, run.cap))
    attrs = {"wall_s": time.perf_counter() - t0}
    if workers > 1:
        attrs["workers"] = workers  # threads over the samples
    return run.result(attrs)


class ExactRun:
    """The samples of one exact run gathered into a :class:`RunResult` (shared by the LIF and the SRM engines):
    the spike cap that stops a runaway sample, the readout trace (sampled, or a count readout's cumulative counts)
    and the hidden spikes, sorted by sample, time and unit."""

    def __init__(self, net: Network, events, indices, max_rate_hz: float):
        self.net, self.events, self.indices, self.max_rate_hz = net, events, indices, max_rate_hz
        n_hidden_units = sum(L.size for L in net.layers[:-1])
        self.cap = max(SPIKE_CAP_FLOOR, int(max_rate_hz * events.duration_ms * 1e-3 * max(1, n_hidden_units)))
        self.K = n_steps(events.duration_ms, net.dt_ms)
        self.sample_t = (np.arange(self.K) + 1) * net.dt_ms
        self.T_end = events.duration_ms
        self.n_hidden = len(net.layers) - 1
        self.counted = net.readout in SPIKING_READOUTS
        self.spikes = [[] for _ in range(self.n_hidden)]
        self.trace = np.zeros((len(indices), self.K, net.n_outputs))

    def add(self, pos: int, lay, unit, tt, tr, ordered: bool = False) -> None:
        """One sample's spikes (layer, unit, time in ms) and readout trace; the error if it hit the cap.
        ``ordered``: the spikes are already sorted by layer, time and unit (:func:`order_spikes`)."""
        net = self.net
        if len(tt) >= self.cap:
            raise EventsnnError(
                f"sample {int(self.indices[pos])}: the exact run reached {self.cap} spikes by t = {tt.max():.1f} ms "
                f"(more than {self.max_rate_hz:g} Hz per hidden neuron over the sample) and was stopped: without a "
                "clock to cap it at one spike per step, this network fires without bound and an exact run would "
                "take hours. Verify with --no-event, or give the network a refractory period; "
                "max_rate_hz raises the cap")
        if self.counted:  # count readout: the trace is the output layer's cumulative spike count per training step
            m = lay == self.n_hidden
            self.trace[pos] = cumulative_counts(time_to_step(tt[m], net.dt_ms), unit[m], self.K, net.n_outputs)
        else:
            self.trace[pos] = tr
        if not ordered:
            lay, unit, tt = order_spikes(lay, unit, tt)
        for li in range(self.n_hidden):
            m = lay == li
            self.spikes[li].append((np.full(int(m.sum()), pos), unit[m], tt[m]))

    def result(self, attrs: dict) -> RunResult:
        net, layers = self.net, []
        for parts in self.spikes:
            smp = np.concatenate([p[0] for p in parts]).astype(np.int64) if parts else np.zeros(0, np.int64)
            un = np.concatenate([p[1] for p in parts]).astype(np.int64) if parts else np.zeros(0, np.int64)
            tt = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
            if np.any(np.diff(smp) < 0):  # parts added out of position order: sort by sample (stable)
                order = np.argsort(smp, kind="stable")
                smp, un, tt = smp[order], un[order], tt[order]
            layers.append(LayerSpikes(smp, un, time_to_step(tt, net.dt_ms), tt))
        pred = readout_scores(self.trace, net.readout).argmax(axis=1)
        return RunResult("event", 0.0, net.dt_ms, "exact", "exact", "cpu", net.readout, layers, self.trace, pred,
                         self.events.labels[self.indices].copy(), self.indices, attrs)


def order_spikes(lay, unit, tt):
    """One sample's spikes sorted by layer, then time, then unit (the order of a run file within a sample).
    Spikes already in that order (the layered engine emits each layer's in time order) are returned as they are."""
    dl, dt, du = np.diff(lay), np.diff(tt), np.diff(unit)
    if np.all((dl > 0) | ((dl == 0) & ((dt > 0) | ((dt == 0) & (du >= 0))))):
        return lay, unit, tt
    order = np.lexsort((unit, tt, lay))
    return lay[order], unit[order], tt[order]


def cumulative_counts(step: np.ndarray, unit: np.ndarray, K: int, n: int) -> np.ndarray:
    """[K, n] spikes of each unit in training steps 0..k (the trace of a count readout; steps >= K dropped)."""
    c = np.zeros((K + 1, n))
    np.add.at(c, (np.minimum(step, K), unit), 1.0)
    return np.cumsum(c[:K], axis=0)


def _part(args):
    net, events, max_rate_hz = args
    return simulate_event(net, events, progress=False, workers=1, max_rate_hz=max_rate_hz, method="reference")


def _in_workers(net, events, indices, workers, progress, max_rate_hz) -> RunResult:
    return run_sample_chunks(_part, lambda i, ev: (net, ev, max_rate_hz), events, indices, workers, "event engine parts",
                             progress)
