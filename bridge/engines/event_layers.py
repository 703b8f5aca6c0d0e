"""The exact event engine run layer by layer: the default path of ``engine="event"``.

The network is strictly layered: a layer hears only the layer before it (feed-forward) and itself (recurrent).
So one sample can be simulated one layer at a time: when layer ``l`` starts, every spike of layer ``l - 1`` is
known, hence every feed-forward arrival ``t + d`` at layer ``l``, sorted before the layer's first event (for the
first layer: the input times plus the input delays). Only a layer's own threshold crossings, refractory ends and
recurrent deliveries need a queue, and that queue is the layer's alone. Within a layer:

* **Shared decay factors.** An arrival that reaches the whole layer (no delay or axonal delays) advances every
  neuron; neurons last touched at the same time advance by the same interval, and when the layer's neurons share
  ``tau_mem`` and ``tau_syn`` (every trained model) the three factors of the closed form (``exp``, ``expm1``,
  ``exp``) are computed once for the whole fan-out, not once per neuron. They are the same float operations as
  :func:`eventsnn.model.contract.evolve_rates`, so the state is bit for bit the one the per-neuron form gives.
  Per-neuron time constants take the per-neuron closed form (slower, as exact).
* **Bound before root.** ``tm dv/dt = I - v`` and ``I`` decays towards 0, so while ``I0 > 0``,
  ``v(t) <= I0 + (v0 - I0) e^{-t/tm} <= v0 + (I0 - v0) t / tm``. When that is below ``theta`` at the next event
  that can change the neuron, no crossing can happen before it, and no root is sought (the analytic bracket and
  the Newton iteration of :func:`bridge.event_engine.crossing_within` run only for the few neurons near
  threshold).
* **Samples in parallel threads** of one process (the compiled code releases the GIL), compiled once and cached
  in the user's cache directory (:mod:`eventsnn.util.jit`).

Each layer kind has its own layer function, chosen per layer by :data:`KIND_CODES` in :func:`_run_sample`:
a new neuron model adds a code and a branch there.

Exactness: the first layer (when it has no recurrence) and every non-spiking readout layer are computed by the
same float operations, in the same order, as the reference engine (``method="reference"``,
:func:`bridge.event_engine._simulate_sample`, one queue for the whole network): bit for bit the same spikes and
trace. A recurrent layer, or a spiking layer after the first, differs from the reference only in where it stops
to look again at a neuron (here: the next delivery to its own layer; there: the next event anywhere), so the
state is advanced in other pieces and each crossing lands elsewhere inside the root finder's 1e-12 ms bracket;
through the later dynamics spike times then agree to ~1e-10 ms (the tests require 1e-9 ms, and every spike).
"""
from __future__ import annotations

import heapq
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from eventsnn.bridge.engines.event import (
    _CHECK,
    _CROSS,
    _DELIVER_ALL,
    _DELIVER_ONE,
    _REF_END,
    _evolve_rates,
    crossing_within,
    order_spikes,
)
from eventsnn.util.errors import EventsnnError
from eventsnn.util.jit import njit

# the neuron model of each layer kind, as the compiled driver knows it (li is lif without a threshold)
KIND_LIF = 0
NONE_LEFT = (math.inf, 0, 0, 0, 0)  # the next arrival when none is left
KIND_CODES = {"lif": KIND_LIF, "li": KIND_LIF}

_jit = njit(nogil=True)
_jit_inline = njit(nogil=True, inline="always")  # small helpers of the layer loop, inlined into it


@_jit
def _factors(dt, inv_tm, inv_ts, c):
    """The closed form's factors over ``dt`` into ``c = [dt, e^{-dt/tm}, k(dt), e^{-dt/ts}]``: exactly the
    operations of :func:`eventsnn.model.contract.evolve_rates` (``v = v e + I k``, ``I = I b``)."""
    em = math.exp(-dt * inv_tm)
    d = inv_tm - inv_ts
    x = dt * d
    c[0] = dt
    c[1] = em
    c[2] = em * (dt if x == 0.0 else math.expm1(x) / d) * inv_tm
    c[3] = math.exp(-dt * inv_ts)


@_jit_inline
def _advance(t, vi, Ii, tl, ru, inv_tm, inv_ts, shared, c):
    """A neuron's state ``(v, I, t_last)`` brought from ``tl`` to time t: v held while refractory (until ``ru``),
    I decaying all along; the factors of ``c`` reused when the interval is the one they were made for (shared
    time constants). Scalars in and out: the layer loop calls it per neuron without passing its arrays."""
    dt = t - tl
    if dt <= 0.0:
        return vi, Ii, tl
    if tl < ru:
        held = min(t, ru) - tl
        Ii *= math.exp(-held * inv_ts)
        tl += held
        dt = t - tl
        if dt <= 0.0:
            return vi, Ii, t
        vi, Ii = _evolve_rates(vi, Ii, dt, inv_tm, inv_ts)
    elif shared:
        if dt != c[0]:
            _factors(dt, inv_tm, inv_ts, c)
        vi, Ii = vi * c[1] + Ii * c[2], Ii * c[3]
    else:
        vi, Ii = _evolve_rates(vi, Ii, dt, inv_tm, inv_ts)
    return vi, Ii, t


@_jit_inline
def _next_event(dheap, a, T_end):
    """The next delivery to this layer -- the next feed-forward arrival ``a`` (``(time, kind, source, target,
    0)``, time inf when none is left) or the first queued recurrent delivery, the only events that change a neuron
    other than its own: its time (``T_end`` when none); when it reaches the whole layer, the row of the weights it
    adds (else -1), and whether they are the recurrent ones."""
    if len(dheap) > 0 and not a < dheap[0]:
        top = dheap[0]
        if top[1] == _DELIVER_ALL:
            return top[0], top[2], True
        return top[0], -1, False
    if a[0] < math.inf:
        return a[0], a[2] if a[1] == _DELIVER_ALL else -1, False
    return T_end, -1, False


@_jit_inline
def _schedule(heap, i, t, v0, I0, tm, ts, th, ver, T_end, t_next, again):
    """Queue neuron i's next threshold crossing (state ``v0, I0`` at t, time constants ``tm, ts``, threshold
    ``th``, version ``ver``), or a look at it at its horizon ``t_next``: the next delivery to the layer
    (:func:`_next_event`), before which nothing changes it -- unless that delivery reaches i (``again``), which
    looks at it again anyway. (A delivery queued later, from a crossing not yet known, comes to i, if at all, as a
    delivery too: it looks at i again.)"""
    if v0 < th and (I0 <= th or I0 <= v0):
        return  # never: the maximum of v is at most I, which only decays
    horizon = min(t_next, T_end) - t if t_next > t else math.inf
    if again and t_next <= t and v0 < th:
        return  # the next delivery to i is now (inputs arriving together): it looks at i again, unchanged till then
    if again and v0 < th and I0 > 0.0 and horizon < math.inf and _below(v0, I0, th, horizon / tm):
        return  # no crossing before the next event, which looks at i again (or ends the sample)
    status, dt = crossing_within(v0, I0, tm, ts, th, horizon)
    if status == 1:
        if t + dt < T_end:
            heapq.heappush(heap, (t + dt, _CROSS, 0, i, ver))
    elif status == 2 and not again:
        heapq.heappush(heap, (t_next, _CHECK, 0, i, ver))


@_jit_inline
def _below(v0, I0, th, h):
    """The bound ``v0 + (I0 - v0) h`` (``h`` = horizon / tau_mem) below ``th`` with a margin for rounding: no
    crossing within the horizon (valid for ``I0 > 0``)."""
    bound = v0 + (I0 - v0) * h
    return bound + 1e-12 * (abs(bound) + abs(th)) < th


@_jit_inline
def _sample_trace(trace, k, st, v, I, t_last, tc, shared, inv_tm, inv_ts, ct):
    """Row k of the trace: every neuron's membrane at time ``st`` (no event between its last one and ``st``). The
    neurons in step (last touched at ``tc``) share one set of decay factors in ``ct``; the float operations are
    those of :func:`eventsnn.model.contract.evolve_rates`, so the trace is the same bit for bit."""
    if shared and st - tc != ct[0]:
        _factors(st - tc, inv_tm[0], inv_ts[0], ct)
    for i in range(len(v)):
        if shared and t_last[i] == tc:
            trace[k, i] = v[i] * ct[1] + I[i] * ct[2]
        else:
            trace[k, i] = _evolve_rates(v[i], I[i], st - t_last[i], inv_tm[i], inv_ts[i])[0]


@_jit
def _dense_rows(W, N):
    """Which rows of a flattened [N_pre, N] weight matrix have no zero."""
    n_pre = len(W) // N if N > 0 else 0
    out = np.ones(n_pre, np.bool_)
    for j in range(n_pre):
        for i in range(N):
            if W[j * N + i] == 0.0:
                out[j] = False
                break
    return out


@_jit_inline
def _push_own(heap, t, j, T_end, rec_kind, rec_d, N):
    """Queue the recurrent deliveries of a spike of neuron j of this layer (at time t)."""
    if rec_kind <= 0:
        heapq.heappush(heap, (t, _DELIVER_ALL, j, 0, 1))
    elif rec_kind == 1:
        ta = t + rec_d[j]
        if ta < T_end:
            heapq.heappush(heap, (ta, _DELIVER_ALL, j, 0, 1))
    else:
        for i in range(N):
            ta = t + rec_d[j * N + i]
            if ta < T_end:
                heapq.heappush(heap, (ta, _DELIVER_ONE, j, i, 1))


@_jit
def _lif_layer(arr_t, arr_kind, arr_j, arr_i, W, N, tm, ts, theta, tref, spiking, subtract, rec_kind, rec_w,
               rec_d, T_end, sample_t, trace, cap):
    """One LIF (or, ``spiking`` False, leaky readout) layer over one sample, from its sorted feed-forward
    arrivals ``(time, kind, source, target)``; ``W`` is ``ff_weight`` flattened. Samples the membrane into
    ``trace`` [len(sample_t), N] (pass a [0, N] array to skip). Returns the layer's spikes (unit, time), in time
    order, at most ``cap`` of them.

    Most neurons are *in step*: last touched at the same time ``tc`` (the last arrival that reached the whole
    layer) and not refractory. A whole-layer arrival advances them in one pass with one set of decay factors; the
    few others (touched since by their own crossing, refractory end or a look) are listed in ``odd`` and advanced
    one by one, after which they are in step again unless still refractory."""
    inv_tm, inv_ts = 1.0 / tm, 1.0 / ts
    shared = bool(np.all(tm == tm[0]) and np.all(ts == ts[0]))
    c = np.array([-1.0, 0.0, 0.0, 0.0])
    ct = np.array([-1.0, 0.0, 0.0, 0.0])  # the factors of the last trace sample
    v = np.zeros(N)
    I = np.zeros(N)
    t_last = np.zeros(N)
    ref_until = np.full(N, -1.0)
    version = np.zeros(N, np.int64)
    recurrent = rec_kind >= 0
    dense_ff = _dense_rows(W, N)
    dense_rec = _dense_rows(rec_w, N)
    is_odd = np.zeros(N, np.bool_)
    odd = np.empty(N, np.int64)
    n_odd = 0
    saved = np.empty((N, 3))
    maybe = np.zeros(N, np.bool_)
    tc = 0.0
    out_u = np.empty(64, np.int64)
    out_t = np.empty(64)
    n_out = 0
    K = trace.shape[0]
    next_sample = 0
    n_arr = len(arr_t)
    p = 0
    # queue entries: (time, kind, source, target, version or recurrent tag), taken in the reference's order; the
    # recurrent deliveries in a queue of their own (dheap), the looks at single neurons in another (heap)
    heap = [(0.0, 0, 0, 0, 0)]
    heap.pop()
    dheap = [(0.0, 0, 0, 0, 0)]
    dheap.pop()
    while len(heap) > 0 or len(dheap) > 0 or p < n_arr:
        src_q = 0  # where the next event is: 0 the arrivals, 1 heap, 2 dheap
        if p < n_arr:
            best = (arr_t[p], arr_kind[p], arr_j[p], arr_i[p], 0)
        else:
            best = (math.inf, 0, 0, 0, 0)
            src_q = -1
        if len(heap) > 0 and (src_q < 0 or heap[0] < best):
            best = heap[0]
            src_q = 1
        if len(dheap) > 0 and (src_q < 0 or dheap[0] < best):
            best = dheap[0]
            src_q = 2
        if src_q == 0:
            p += 1
        elif src_q == 1:
            heapq.heappop(heap)
        else:
            heapq.heappop(dheap)
        t, kind, src, tgt, ver = best
        while next_sample < K and sample_t[next_sample] <= t:
            _sample_trace(trace, next_sample, sample_t[next_sample], v, I, t_last, tc, shared, inv_tm, inv_ts, ct)
            next_sample += 1
        if kind == _CROSS or kind == _REF_END or kind == _CHECK:
            i = tgt
            if ver != version[i]:
                continue
            v[i], I[i], t_last[i] = _advance(t, v[i], I[i], t_last[i], ref_until[i], inv_tm[i], inv_ts[i],
                                             shared, c)
            if not is_odd[i]:
                is_odd[i] = True
                odd[n_odd] = i
                n_odd += 1
            if kind == _CROSS:
                if n_out == len(out_t):
                    out_u = np.concatenate((out_u, np.empty(n_out, np.int64)))
                    out_t = np.concatenate((out_t, np.empty(n_out)))
                out_u[n_out] = i
                out_t[n_out] = t
                n_out += 1
                if n_out >= cap:
                    break
                v[i] = v[i] - theta[i] if subtract else 0.0
                version[i] += 1
                if recurrent:
                    _push_own(dheap, t, i, T_end, rec_kind, rec_d, N)
                if tref[i] > 0.0:
                    ref_until[i] = t + tref[i]
                    if ref_until[i] < T_end:
                        heapq.heappush(heap, (ref_until[i], _REF_END, 0, i, version[i]))
                    continue
            nxt_a = (arr_t[p], arr_kind[p], arr_j[p], arr_i[p], 0) if p < n_arr else NONE_LEFT
            t_next, nxt_row, nxt_rec = _next_event(dheap, nxt_a, T_end)
            wk = nxt_row * N + i  # does the next delivery reach i (then it looks at i again)?
            again = t_next >= T_end or (nxt_row >= 0 and (rec_w[wk] if nxt_rec else W[wk]) != 0.0)
            _schedule(heap, i, t, v[i], I[i], tm[i], ts[i], theta[i], version[i], T_end, t_next, again)
            continue
        # a delivery of presynaptic neuron `src` (of the layer before, or of this layer when ver == 1)
        Wm = rec_w if ver == 1 else W
        base = src * N
        # what comes next in this layer: nothing changes neuron i before it (a crossing this loop queues for
        # another neuron reaches i, if at all, by a delivery, which looks at i again); when it is a delivery to
        # i, i is looked at again then
        nxt_a = (arr_t[p], arr_kind[p], arr_j[p], arr_i[p], 0) if p < n_arr else NONE_LEFT
        t_next, nxt_row, nxt_rec = _next_event(dheap, nxt_a, T_end)
        horizon = min(t_next, T_end) - t if t_next > t else math.inf
        if kind == _DELIVER_ALL and shared and (dense_rec[src] if ver == 1 else dense_ff[src]) and \
                (t_next >= T_end or not spiking or
                 (nxt_row >= 0 and (dense_rec[nxt_row] if nxt_rec else dense_ff[nxt_row]))):
            # the common case: the arrival reaches every neuron, and so does the next event. Neurons in step
            # advance in one pass the compiler vectorises (the odd ones are put back and advanced on their own)
            for q in range(n_odd):
                i = odd[q]
                saved[q, 0], saved[q, 1], saved[q, 2] = v[i], I[i], t_last[i]
            # every neuron not refractory has changed: its queued look or crossing is void (version). Then, without
            # branches, which neurons may cross before the next event (which looks at all of them again). When that
            # event is now too (inputs binned to a grid arrive together), only a neuron already at threshold can
            # cross before it: a root sought for any other would be voided by it unused (h = 0)
            if t_next <= t and spiking:
                h = 0.0
            else:
                h = horizon * inv_tm[0] if horizon < math.inf else math.inf
            n_maybe = 0
            b = 1.0
            if t > tc:
                if t - tc != c[0]:
                    _factors(t - tc, inv_tm[0], inv_ts[0], c)
                e, k, b = c[1], c[2], c[3]  # (kept: advancing an odd neuron below may refill c)
                for i in range(N):
                    vi = v[i] * e + I[i] * k
                    Ii = I[i] * b + Wm[base + i]
                    v[i] = vi
                    I[i] = Ii
                    t_last[i] = t
                    version[i] += 1
                    th = theta[i]
                    bound = vi + (Ii - vi) * h
                    m = (vi >= th) | ((Ii > th) & (Ii > vi) & (bound + 1e-12 * (abs(bound) + abs(th)) >= th))
                    maybe[i] = m
                    n_maybe += m
            else:
                for i in range(N):
                    I[i] += Wm[base + i]
                    version[i] += 1
                    vi, Ii, th = v[i], I[i], theta[i]
                    bound = vi + (Ii - vi) * h
                    m = (vi >= th) | ((Ii > th) & (Ii > vi) & (bound + 1e-12 * (abs(bound) + abs(th)) >= th))
                    maybe[i] = m
                    n_maybe += m
            for q in range(n_odd):
                i = odd[q]
                sv, sI, st = saved[q, 0], saved[q, 1], saved[q, 2]
                if st == tc and tc < t <= ref_until[i]:
                    # refractory over the whole interval: v held, I decays by the interval's shared factor --
                    # :func:`_advance`'s operations, without its exponential
                    v[i] = sv
                    I[i] = sI * b
                    tl = st + (t - st)
                    if t - tl > 0.0:
                        t_last[i] = tl
                        v[i], I[i], t_last[i] = _advance(t, v[i], I[i], t_last[i], ref_until[i], inv_tm[i], inv_ts[i],
                                                         shared, c)
                    t_last[i] = t
                else:
                    v[i], I[i], t_last[i] = sv, sI, st
                    v[i], I[i], t_last[i] = _advance(t, v[i], I[i], t_last[i], ref_until[i], inv_tm[i], inv_ts[i],
                                                     shared, c)
                I[i] += Wm[base + i]
                if t < ref_until[i]:
                    version[i] -= 1  # refractory: v held, its end still due
                    n_maybe -= maybe[i]
                    maybe[i] = False
                else:
                    vi, Ii, th = v[i], I[i], theta[i]
                    bound = vi + (Ii - vi) * h
                    m = (vi >= th) | ((Ii > th) & (Ii > vi) & (bound + 1e-12 * (abs(bound) + abs(th)) >= th))
                    n_maybe += m - maybe[i]
                    maybe[i] = m
            tc = t
            if spiking and n_maybe > 0:
                for i in range(N):
                    if maybe[i]:
                        wk = nxt_row * N + i  # does the next delivery reach i (then it looks at i again)?
                        again = t_next >= T_end or (nxt_row >= 0 and (rec_w[wk] if nxt_rec else W[wk]) != 0.0)
                        _schedule(heap, i, t, v[i], I[i], tm[i], ts[i], theta[i], version[i], T_end, t_next, again)
            # the odd neurons are in step again, but for those still refractory
            m = 0
            for q in range(n_odd):
                i = odd[q]
                if ref_until[i] > t:
                    odd[m] = i
                    m += 1
                else:
                    is_odd[i] = False
            n_odd = m
            continue
        lo, hi = (tgt, tgt + 1) if kind == _DELIVER_ONE else (0, N)
        for i in range(lo, hi):
            w = Wm[base + i]
            if w == 0.0:
                continue
            v[i], I[i], t_last[i] = _advance(t, v[i], I[i], t_last[i], ref_until[i], inv_tm[i], inv_ts[i],
                                             shared, c)
            if not is_odd[i]:
                is_odd[i] = True
                odd[n_odd] = i
                n_odd += 1
            I[i] += w
            if spiking and t >= ref_until[i]:
                version[i] += 1
                wk = nxt_row * N + i  # does the next delivery reach i (then it looks at i again)?
                again = t_next >= T_end or (nxt_row >= 0 and (rec_w[wk] if nxt_rec else W[wk]) != 0.0)
                _schedule(heap, i, t, v[i], I[i], tm[i], ts[i], theta[i], version[i], T_end, t_next, again)
    while next_sample < K:
        _sample_trace(trace, next_sample, sample_t[next_sample], v, I, t_last, tc, shared, inv_tm, inv_ts, ct)
        next_sample += 1
    return out_u[:n_out].copy(), out_t[:n_out].copy()


@_jit
def _arrivals(t, u, dkind, d, N, T_end):
    """Feed-forward arrivals of spikes ``(t, u)`` at a layer of N neurons, sorted like the queue orders events
    ``(time, kind, source, target)``: one per spike (target 0, all neurons) without or with axonal delays
    (``dkind`` 0 or 1), one per synapse with synaptic delays (2). Arrivals at or after ``T_end`` are dropped.

    Arrivals that are already in that order (spikes of the layer before, without delays) are not sorted again;
    otherwise one sort by time, then each run of equal times by (source, target)."""
    per = N if dkind == 2 else 1
    n = len(t) * per
    at = np.empty(n)
    aj = np.empty(n, np.int64)
    ai = np.zeros(n, np.int64)
    k = 0
    for q in range(len(t)):
        j = u[q]
        for i in range(per):
            if dkind == 2:
                a = t[q] + d[j * N + i]
            elif dkind == 1:
                a = t[q] + d[j]
            else:
                a = t[q] + 0.0
            if a < T_end:
                at[k] = a
                aj[k] = j
                ai[k] = i
                k += 1
    at, aj, ai = at[:k], aj[:k], ai[:k]
    kind = np.full(k, _DELIVER_ONE if dkind == 2 else _DELIVER_ALL, np.int64)
    in_order = True
    for q in range(1, k):
        if at[q] < at[q - 1] or (at[q] == at[q - 1] and (aj[q] < aj[q - 1] or
                                                       (aj[q] == aj[q - 1] and ai[q] < ai[q - 1]))):
            in_order = False
            break
    if in_order:
        return at, kind, aj, ai
    order = np.argsort(at)
    q = 0
    while q < k:  # equal times: by (source, target); equal (time, source, target) are the same arrival
        m = q + 1
        while m < k and at[order[m]] == at[order[q]]:
            m += 1
        if m - q > 1:
            run = order[q:m].copy()
            key = np.empty(m - q, np.int64)
            for r in range(m - q):
                key[r] = aj[run[r]] * per + ai[run[r]]
            sub = np.argsort(key)
            for r in range(m - q):
                order[q + r] = run[sub[r]]
        q = m
    return at[order], kind, aj[order], ai[order]


@_jit
def _run_sample(t_in, u_in, T_end, sample_t, kind_code, offsets, tm, ts, theta, tref, spiking, subtract, ff_w,
                ff_w_off, ff_kind, ff_d, ff_d_off, rec_kind, rec_w, rec_w_off, rec_d, rec_d_off, sizes, cap):
    """One sample through every layer in turn. Returns (layer, unit, time) of every spike, the last layer's
    trace [len(sample_t), N_out], and whether the run stopped at ``cap`` spikes."""
    L = len(sizes)
    n_tot = 0
    lay_parts, u_parts, t_parts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    src_t, src_u = t_in, u_in
    trace = np.zeros((len(sample_t), sizes[L - 1]))
    stopped = False
    for li in range(L):
        N = sizes[li]
        a, b = offsets[li], offsets[li + 1]
        arr_t, arr_kind, arr_j, arr_i = _arrivals(src_t, src_u, ff_kind[li], ff_d[ff_d_off[li]:ff_d_off[li + 1]],
                                                  N, T_end)
        tr = trace if li == L - 1 else np.zeros((0, N))
        if kind_code[li] == KIND_LIF:
            u, t = _lif_layer(arr_t, arr_kind, arr_j, arr_i, ff_w[ff_w_off[li]:ff_w_off[li + 1]], N, tm[a:b],
                              ts[a:b], theta[a:b], tref[a:b], spiking[li], subtract[li], rec_kind[li],
                              rec_w[rec_w_off[li]:rec_w_off[li + 1]], rec_d[rec_d_off[li]:rec_d_off[li + 1]],
                              T_end, sample_t, tr, cap - n_tot)
        else:
            raise ValueError("unknown layer kind")
        lay_parts.append(np.full(len(u), li, np.int64))
        u_parts.append(u)
        t_parts.append(t)
        n_tot += len(u)
        if n_tot >= cap:
            stopped = True
            break
        src_t, src_u = t, u
    n = 0
    for x in u_parts:
        n += len(x)
    lay, unit, tt = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n)
    k = 0
    for q in range(len(u_parts)):
        m = len(u_parts[q])
        lay[k:k + m] = lay_parts[q]
        unit[k:k + m] = u_parts[q]
        tt[k:k + m] = t_parts[q]
        k += m
    return lay, unit, tt, trace, stopped


def layer_kind_codes(net) -> np.ndarray:
    """The compiled driver's code of each layer's kind (:data:`KIND_CODES`)."""
    try:
        return np.array([KIND_CODES[L.kind] for L in net.layers], np.int64)
    except KeyError as e:
        raise EventsnnError(f"the event engine has no layer kind {e.args[0]!r}") from None


def run_samples(net, events, indices, flat, T_end, sample_t, cap, workers, on_done):
    """Simulate ``events[indices]`` in ``workers`` threads; ``on_done(position, (layer, unit, time, trace,
    stopped))`` is called for each sample, in the calling thread, in order of positions."""

    codes = layer_kind_codes(net)
    times = np.ascontiguousarray(events.times, dtype=np.float64)
    units = np.ascontiguousarray(events.units, dtype=np.int64)
    offs = events.offsets

    def one(s):
        a, b = offs[s], offs[s + 1]
        lay, unit, tt, trace, stopped = _run_sample(times[a:b] * 1e3, units[a:b], T_end, sample_t, codes, *flat, cap)
        return (*order_spikes(lay, unit, tt), trace, stopped)  # sorted here, in the worker thread

    if workers <= 1 or len(indices) <= 1:
        for pos, s in enumerate(indices):
            on_done(pos, one(int(s)))
        return
    with ThreadPoolExecutor(workers) as ex:
        # submit in windows so results can be consumed (and freed) in order while later samples run
        window = 4 * workers
        futs = {}
        nxt = 0
        for pos in range(len(indices)):
            while nxt < len(indices) and nxt < pos + window:
                futs[nxt] = ex.submit(one, int(indices[nxt]))
                nxt += 1
            on_done(pos, futs.pop(pos).result())
