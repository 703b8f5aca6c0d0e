"""Compare two runs: predictions, readout traces, and spike-by-spike timing per hidden layer."""
from __future__ import annotations

import numpy as np

from eventsnn.util.errors import EventsnnError
from eventsnn.bridge.runfile import LayerSpikes, RunReader, RunResult, sample_chunks
from eventsnn.util.jit import jit


def match_spikes(a_ms: np.ndarray, b_ms: np.ndarray, tol_ms: float):
    """Optimal one-to-one matching of two spike trains of one unit.

    Among the pairings of spikes at most ``tol_ms`` apart (inclusive), the one with the most pairs and, among
    those, the smallest total absolute shift. For costs ``|t_a - t_b|`` an optimum exists that keeps time order
    (two crossing pairs, uncrossed, stay within the tolerance and cost no more), so a dynamic programme over the
    two sorted trains finds it, visiting only the pairs within the tolerance: time O((n + m) w) for w spikes per
    tolerance window, however dense the trains (a cluster-wise assignment is cubic in the cluster, and a fast-firing
    unit is one cluster). A greedy walk in time order can pair a spike with an early neighbour and leave a closer
    one unmatched. Returns ``(matched_a_idx, matched_b_idx)``, sorted by ``a``.
    """
    a_ms, b_ms = np.asarray(a_ms, float), np.asarray(b_ms, float)
    if not len(a_ms) or not len(b_ms):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    oa, ob = np.argsort(a_ms, kind="stable"), np.argsort(b_ms, kind="stable")
    a, b = a_ms[oa], b_ms[ob]
    tol = tol_ms + 1e-12
    lo = np.searchsorted(b, a - tol, "left")
    hi = np.searchsorted(b, a + tol, "right")
    ia, ib = _match_sorted(a, b, lo.astype(np.int64), hi.astype(np.int64))
    ia, ib = oa[ia], ob[ib]
    o = np.argsort(ia, kind="stable")
    return ia[o], ib[o]


@jit
def _match_sorted(a, b, lo, hi):
    """The dynamic programme of :func:`match_spikes` on sorted trains; ``b[lo[i]:hi[i]]`` are a[i]'s partners.

    ``f(i, j)`` = (pairs, -total shift) of the best matching of ``a[:i]`` with ``b[:j]``; only the columns
    ``j`` in ``(lo[i-1], hi[i-1]]`` change in row ``i`` (below them ``a[i-1]`` has no partner, above them no
    earlier spike of ``a`` has one either: the row is constant there), so one array holds the current row."""
    n, m = len(a), len(b)
    cnt = np.zeros(m + 1, np.int64)
    cost = np.zeros(m + 1)
    top = 0
    start = np.zeros(n + 1, np.int64)
    for i in range(n):
        start[i + 1] = start[i] + (hi[i] - lo[i])
    move = np.zeros(start[n], np.int8)  # 0: skip a[i], 1: skip b[j-1], 2: pair them
    for i in range(n):
        h = hi[i]
        while top < h:  # columns above the last band hold the row's tail value
            cnt[top + 1] = cnt[top]
            cost[top + 1] = cost[top]
            top += 1
        j0 = lo[i] + 1
        diag_c, diag_s = cnt[j0 - 1], cost[j0 - 1]   # f(i, j-1) before this row overwrote it
        for j in range(j0, h + 1):
            up_c, up_s = cnt[j], cost[j]                 # f(i, j): a[i] unmatched
            left_c, left_s = cnt[j - 1], cost[j - 1]     # f(i+1, j-1): b[j-1] unmatched
            best_c, best_s, mv = up_c, up_s, 0
            if left_c > best_c or (left_c == best_c and left_s < best_s):
                best_c, best_s, mv = left_c, left_s, 1
            pc, ps = diag_c + 1, diag_s + abs(a[i] - b[j - 1])
            if pc > best_c or (pc == best_c and ps < best_s):
                best_c, best_s, mv = pc, ps, 2
            diag_c, diag_s = up_c, up_s
            cnt[j], cost[j] = best_c, best_s
            move[start[i] + j - j0] = mv
    k = cnt[top]
    ia = np.empty(k, np.int64)
    ib = np.empty(k, np.int64)
    i, j = n, top
    while i > 0 and j > 0 and k > 0:
        r = i - 1
        if j > hi[r]:
            j = hi[r]
        elif j <= lo[r]:
            i -= 1
        else:
            mv = move[start[r] + j - (lo[r] + 1)]
            if mv == 0:
                i -= 1
            elif mv == 1:
                j -= 1
            else:
                k -= 1
                ia[k], ib[k] = r, j - 1
                i -= 1
                j -= 1
    return ia, ib


DEFAULT_MIN_TOL_MS = 0.1


def default_tolerance(dt_a_ms: float, dt_b_ms: float) -> float:
    """The spike-matching tolerance when none is given: the coarser of the two runs' steps, and at least
    0.1 ms (``DEFAULT_MIN_TOL_MS``). A clock-driven run is off continuous time by about one step per layer
    (first-order convergence, measured), so a tolerance of the finer step (0.01 ms against the exact run)
    would count spikes moved by a step or two as missing and extra (a run agreeing on every prediction with
    trace correlation 0.99997 showed "matched 0.46"); 0.1 ms is verify's headline tolerance, well below the
    synaptic and membrane time constants (ms) that make timing matter. Two runs at the training dt
    (1 ms) keep that step: their spikes lie on the same grid."""
    return max(float(dt_a_ms), float(dt_b_ms), DEFAULT_MIN_TOL_MS)


def _timing_stats(shifts: np.ndarray, n_a: int, n_b: int, tol_ms: float) -> dict:
    shifts = np.abs(shifts)
    matched = len(shifts)
    return {"tolerance_ms": tol_ms, "n_a": int(n_a), "n_b": int(n_b), "matched": int(matched),
            "matched_fraction": float(matched / n_a) if n_a else (1.0 if n_b == 0 else 0.0),
            "missing": int(n_a - matched), "extra": int(n_b - matched),
            "median_abs_shift_ms": float(np.median(shifts)) if len(shifts) else None,
            "p95_abs_shift_ms": float(np.percentile(shifts, 95)) if len(shifts) else None}


def spike_timing(a: LayerSpikes, b: LayerSpikes, tol_ms: float) -> dict:
    """Matched fraction (of a's spikes), missing (in a, not b), extra (in b, not a), |shift| stats."""
    shifts, n_a, _ = spike_shift_values(a, b, tol_ms)
    return _timing_stats(shifts, n_a, len(b.time_ms), tol_ms)


def spike_shift_values(a: LayerSpikes, b: LayerSpikes, tol_ms: float):
    """Signed shifts ``t_b - t_a`` of all spikes matched within ``tol_ms`` (per sample and unit), with the
    number of spikes in ``a`` and the number matched: ``(shifts, n_a, n_matched)``."""
    (ka, ta, _), (kb, tb, _) = _by_unit(a), _by_unit(b)
    shifts = _shifts_by_unit(ka, ta, kb, tb, tol_ms + 1e-12)
    return shifts, len(a.time_ms), len(shifts)


def _by_unit(L: LayerSpikes):
    """``L``'s spikes sorted by (sample, unit), then time: the keys ``sample * 2**32 + unit``, the times and the
    steps in that order. Kept on ``L``: a verify report compares one run with several others."""
    got = L.__dict__.get("_by_unit")
    if got is None:
        key = L.sample.astype(np.int64) * (1 << 32) + L.unit
        o = np.lexsort((L.time_ms, key))
        got = L.__dict__["_by_unit"] = (key[o], np.asarray(L.time_ms, float)[o], np.asarray(L.step, np.int64)[o])
    return got


@jit
def _shifts_by_unit(ka, ta, kb, tb, tol):
    """:func:`match_spikes` on every (sample, unit) in one compiled pass: ``ka``/``kb`` the trains' keys sorted,
    times sorted within each key; the shifts ``t_b - t_a`` of the matched pairs, key by key, in ``a``'s order."""
    out = np.empty(min(len(ta), len(tb)))
    n_out = 0
    i = j = 0
    na, nb = len(ka), len(kb)
    while i < na:
        k = ka[i]
        i2 = i
        while i2 < na and ka[i2] == k:
            i2 += 1
        while j < nb and kb[j] < k:
            j += 1
        j2 = j
        while j2 < nb and kb[j2] == k:
            j2 += 1
        if j2 > j:
            a, b = ta[i:i2], tb[j:j2]
            lo = np.searchsorted(b, a - tol, side="left").astype(np.int64)
            hi = np.searchsorted(b, a + tol, side="right").astype(np.int64)
            ia, ib = _match_sorted(a, b, lo, hi)
            for q in range(len(ia)):
                out[n_out] = b[ib[q]] - a[ia[q]]
                n_out += 1
        i, j = i2, j2
    return out[:n_out].copy()


def exact_mismatch(a: LayerSpikes, b: LayerSpikes) -> int:
    """Number of spikes (sample, unit, step) present in one run but not the other (each counted once)."""
    if not len(a.step) and not len(b.step):
        return 0
    (ka, _, sa), (kb, _, sb) = _by_unit(a), _by_unit(b)  # sorted by (sample, unit), then time: then step
    return int(_count_not_shared(ka, sa, kb, sb))


@jit
def _count_not_shared(ka, sa, kb, sb):
    """Distinct pairs (key, step) in exactly one of two lists, each sorted by key, then step: one merge."""
    i = j = 0
    na, nb = len(ka), len(kb)
    only = 0
    while i < na or j < nb:
        if j >= nb or (i < na and (ka[i] < kb[j] or (ka[i] == kb[j] and sa[i] < sb[j]))):
            k, s = ka[i], sa[i]
            only += 1
        elif i >= na or ka[i] != kb[j] or sa[i] != sb[j]:
            k, s = kb[j], sb[j]
            only += 1
        else:
            k, s = ka[i], sa[i]
        while i < na and ka[i] == k and sa[i] == s:
            i += 1
        while j < nb and kb[j] == k and sb[j] == s:
            j += 1
    return only


def _aligned(a: RunResult, b: RunResult):
    common, ia, ib = np.intersect1d(a.sample_index, b.sample_index, return_indices=True)
    if len(common) == 0:
        raise EventsnnError("the two runs share no samples (different sample_index)")
    return common, ia, ib


def _restrict(L: LayerSpikes, positions: np.ndarray) -> LayerSpikes:
    """Spikes of the given sample positions, renumbered 0..len(positions)-1 (``L`` itself when that is every
    sample it holds, in order)."""
    if np.array_equal(positions, np.arange(len(positions))) and L.sample.max(initial=-1) < len(positions):
        return L
    remap = np.full(int(max(L.sample.max(initial=-1), positions.max(initial=-1))) + 1, -1)
    remap[positions] = np.arange(len(positions))
    keep = remap[L.sample] >= 0 if len(L.sample) else np.zeros(0, bool)
    return LayerSpikes(remap[L.sample[keep]], L.unit[keep], L.step[keep], L.time_ms[keep])


class RunComparison:
    """Everything ``eventsnn compare`` reports, accumulated over sample chunks of two runs::

        c = RunComparison(tol_ms)
        for lo, hi in chunks:
            c.add(reader_a.read(lo, hi), reader_b.read(lo, hi))
        c.result()

    Spikes never interact across samples, so the counts add up; the trace correlation merges per-chunk moments
    (Chan et al.); the shift quantiles are taken over every matched spike at the end. Memory: one chunk of
    each run, plus one float per matched spike."""

    def __init__(self, tol_ms: float | None = None, traces: bool = True):
        self.tol_ms = tol_ms
        self.traces = traces  # False: spikes only (no readout-trace correlation; it reads every trace value)
        self.n = self.correct_a = self.correct_b = self.agree = 0
        self.moments = None            # (n, mean_x, mean_y, M2x, M2y, Cxy)
        self.max_diff = self.max_abs = 0.0
        self.trace_comparable = True
        self.layers: list[dict] | None = None
        self.dts = None

    def add(self, a: RunResult, b: RunResult) -> None:
        common, ia, ib = _aligned(a, b)
        tol = default_tolerance(a.dt_ms, b.dt_ms) if self.tol_ms is None else self.tol_ms
        self.dts = (a.dt_ms, b.dt_ms)
        self.n += len(common)
        self.correct_a += int(np.sum(a.prediction[ia] == a.labels[ia]))
        self.correct_b += int(np.sum(b.prediction[ib] == b.labels[ib]))
        self.agree += int(np.sum(a.prediction[ia] == b.prediction[ib]))
        ta, tb = (a.trace[ia], b.trace[ib]) if self.traces else (None, None)
        if not self.traces or ta.shape != tb.shape:
            self.trace_comparable = False
        elif ta.size:
            self._add_moments(ta.ravel().astype(np.float64), tb.ravel().astype(np.float64))
        if len(a.layers) != len(b.layers):
            raise EventsnnError(f"runs have {len(a.layers)} and {len(b.layers)} hidden layers")
        if self.layers is None:
            self.layers = [{"tol": tol, "n_a": 0, "n_b": 0, "shifts": [], "exact_mismatch": 0}
                           for _ in a.layers]
        for acc, La, Lb in zip(self.layers, a.layers, b.layers):
            La, Lb = _restrict(La, ia), _restrict(Lb, ib)
            shifts, n_a, _ = spike_shift_values(La, Lb, tol)
            acc["n_a"] += n_a
            acc["n_b"] += len(Lb.time_ms)
            acc["shifts"].append(shifts)
            if abs(a.dt_ms - b.dt_ms) < 1e-12:
                acc["exact_mismatch"] += exact_mismatch(La, Lb)

    def _add_moments(self, x: np.ndarray, y: np.ndarray) -> None:
        self.max_diff = max(self.max_diff, float(np.abs(x - y).max()))
        self.max_abs = max(self.max_abs, float(np.abs(x).max()))
        n2, mx2, my2 = len(x), float(x.mean()), float(y.mean())
        dx, dy = x - mx2, y - my2
        new = (n2, mx2, my2, float(dx @ dx), float(dy @ dy), float(dx @ dy))
        if self.moments is None:
            self.moments = new
            return
        n1, mx1, my1, sxx1, syy1, sxy1 = self.moments
        n = n1 + n2
        ex, ey = mx2 - mx1, my2 - my1
        f = n1 * n2 / n
        self.moments = (n, mx1 + ex * n2 / n, my1 + ey * n2 / n, sxx1 + new[3] + ex * ex * f,
                        syy1 + new[4] + ey * ey * f, sxy1 + new[5] + ex * ey * f)

    def result(self) -> dict:
        if not self.n:
            raise EventsnnError("the two runs share no samples (different sample_index)")
        tol = self.tol_ms if self.tol_ms is not None else \
            (self.layers[0]["tol"] if self.layers else default_tolerance(*(self.dts or (0.0, 0.0))))
        out = {"n_samples": int(self.n), "accuracy_a": self.correct_a / self.n, "accuracy_b": self.correct_b / self.n,
               "prediction_agreement": self.agree / self.n, "trace_correlation": None,
               "tolerance_ms": float(tol), "tolerance_default": self.tol_ms is None, "layers": []}
        if self.trace_comparable and self.moments is not None:
            _, _, _, sxx, syy, sxy = self.moments
            if sxx > 0 and syy > 0:
                out["trace_correlation"] = float(sxy / np.sqrt(sxx * syy))
            out["trace_max_rel_diff"] = float(self.max_diff / max(self.max_abs, 1e-300))
        for li, acc in enumerate(self.layers or []):
            shifts = np.concatenate(acc["shifts"]) if acc["shifts"] else np.zeros(0)
            rec = {"layer": li, **_timing_stats(shifts, acc["n_a"], acc["n_b"], acc["tol"])}
            if abs(self.dts[0] - self.dts[1]) < 1e-12:
                rec["exact_mismatch"] = int(acc["exact_mismatch"])
            out["layers"].append(rec)
        return out


def compare_runs(a: RunResult, b: RunResult, tol_ms: float | None = None) -> dict:
    """Everything ``eventsnn compare`` reports, as a dict (two runs in memory; see :class:`RunComparison`)."""
    c = RunComparison(tol_ms)
    c.add(a, b)
    return c.result()


CHUNK_SPIKES = 10_000_000  # hidden spikes of one run held at once while comparing files (~320 MB)


def compare_files(path_a, path_b, tol_ms: float | None = None, chunk_spikes: int = CHUNK_SPIKES) -> dict:
    """:func:`compare_runs` of two run files, read chunk by chunk of samples when both hold the same samples
    in the same order (the usual case: memory stays bounded), else whole."""
    ra, rb = RunReader(path_a), RunReader(path_b)
    if ra.n_layers != rb.n_layers:
        raise EventsnnError(f"{path_a} has {ra.n_layers} hidden layers but {path_b} has {rb.n_layers}: runs of "
                            "different networks cannot be compared spike by spike")
    if not np.array_equal(ra.sample_index, rb.sample_index):
        return compare_runs(ra.read(), rb.read(), tol_ms)
    c = RunComparison(tol_ms)
    for lo, hi in sample_chunks(np.maximum(ra.spikes_per_sample(), rb.spikes_per_sample()), chunk_spikes):
        c.add(ra.read(lo, hi), rb.read(lo, hi))
    return c.result()


def format_comparison(c: dict, name_a="A", name_b="B") -> str:
    tol = c.get("tolerance_ms")
    how = " (default: the coarser dt of the two runs, at least 0.1 ms; change it with --tolerance)" \
        if c.get("tolerance_default") else ""
    lines = [f"samples: {c['n_samples']}",
             *([f"spike matching tolerance: {tol:g} ms{how}"] if tol is not None else []),
             f"accuracy {name_a}: {c['accuracy_a']:.4f}   accuracy {name_b}: {c['accuracy_b']:.4f}",
             f"prediction agreement: {c['prediction_agreement']:.4f}",
             f"readout trace correlation: {c['trace_correlation']}"]
    for L in c["layers"]:
        med = "n/a" if L["median_abs_shift_ms"] is None else f"{L['median_abs_shift_ms']:.4g}"
        p95 = "n/a" if L["p95_abs_shift_ms"] is None else f"{L['p95_abs_shift_ms']:.4g}"
        lines.append(f"layer {L['layer']}: {L['n_a']} vs {L['n_b']} spikes, matched {L['matched_fraction']:.4f} "
                     f"(tol {L['tolerance_ms']:g} ms), missing {L['missing']}, extra {L['extra']}, "
                     f"|shift| median {med} ms, p95 {p95} ms"
                     + (f", exact mismatches {L['exact_mismatch']}" if "exact_mismatch" in L else ""))
    return "\n".join(lines)
