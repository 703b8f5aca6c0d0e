"""Compare two runs: predictions, readout traces, and spike-by-spike timing per hidden layer."""
from __future__ import annotations

import numpy as np

from eventsnn.errors import EventsnnError
from eventsnn.runfile import LayerSpikes, RunResult


def match_spikes(a_ms: np.ndarray, b_ms: np.ndarray, tol_ms: float):
    """Optimal one-to-one matching of two sorted spike trains of one unit.

    Among the pairings of spikes at most ``tol_ms`` apart (inclusive), the one with the most pairs and, among
    those, the smallest total absolute shift (:func:`scipy.optimize.linear_sum_assignment` on each cluster of
    spikes whose neighbours lie within the tolerance; clusters are independent). A greedy walk in time order
    can pair a spike with an early neighbour and leave a closer one unmatched, inflating the shift statistics.
    Returns ``(matched_a_idx, matched_b_idx)``, sorted by ``a``.
    """
    from scipy.optimize import linear_sum_assignment

    a_ms, b_ms = np.asarray(a_ms, float), np.asarray(b_ms, float)
    if not len(a_ms) or not len(b_ms):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tol = tol_ms + 1e-12
    t = np.concatenate([a_ms, b_ms])
    is_b = np.r_[np.zeros(len(a_ms), bool), np.ones(len(b_ms), bool)]
    idx = np.r_[np.arange(len(a_ms)), np.arange(len(b_ms))]
    order = np.argsort(t, kind="stable")
    t, is_b, idx = t[order], is_b[order], idx[order]
    cuts = np.flatnonzero(np.diff(t) > tol) + 1
    ma, mb = [], []
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(t)]):
        ia, ib = idx[lo:hi][~is_b[lo:hi]], idx[lo:hi][is_b[lo:hi]]
        if not len(ia) or not len(ib):
            continue
        D = np.abs(a_ms[ia][:, None] - b_ms[ib][None, :])
        ok = D <= tol
        if len(ia) == 1 or len(ib) == 1:  # one spike on a side: the nearest partner
            k = np.argmin(np.where(ok, D, np.inf))
            r, c = np.unravel_index(k, D.shape)
            if ok[r, c]:
                ma.append(ia[r])
                mb.append(ib[c])
            continue
        big = tol * (min(len(ia), len(ib)) + 1) + 1.0  # any extra pair outweighs every shift
        r, c = linear_sum_assignment(np.where(ok, D - big, 0.0))
        keep = ok[r, c]
        ma.extend(ia[r[keep]])
        mb.extend(ib[c[keep]])
    ma, mb = np.asarray(ma, np.int64), np.asarray(mb, np.int64)
    o = np.argsort(ma, kind="stable")
    return ma[o], mb[o]


def spike_timing(a: LayerSpikes, b: LayerSpikes, tol_ms: float) -> dict:
    """Matched fraction (of a's spikes), missing (in a, not b), extra (in b, not a), |shift| stats."""
    shifts, n_a, matched = spike_shift_values(a, b, tol_ms)
    shifts = np.abs(shifts)
    n_b = len(b.time_ms)
    return {"tolerance_ms": tol_ms, "n_a": int(n_a), "n_b": int(n_b), "matched": int(matched),
            "matched_fraction": float(matched / n_a) if n_a else (1.0 if n_b == 0 else 0.0),
            "missing": int(n_a - matched), "extra": int(n_b - matched),
            "median_abs_shift_ms": float(np.median(shifts)) if len(shifts) else None,
            "p95_abs_shift_ms": float(np.percentile(shifts, 95)) if len(shifts) else None}


def spike_shift_values(a: LayerSpikes, b: LayerSpikes, tol_ms: float):
    """Signed shifts ``t_b - t_a`` of all spikes matched within ``tol_ms`` (per sample and unit), with the
    number of spikes in ``a`` and the number matched: ``(shifts, n_a, n_matched)``."""
    key_a = a.sample * (1 << 32) + a.unit
    key_b = b.sample * (1 << 32) + b.unit
    oa, ob = np.lexsort((a.time_ms, key_a)), np.lexsort((b.time_ms, key_b))
    ka, ta, kb, tb = key_a[oa], a.time_ms[oa], key_b[ob], b.time_ms[ob]
    out = []
    for k in np.unique(ka):
        sa = slice(np.searchsorted(ka, k, "left"), np.searchsorted(ka, k, "right"))
        sb = slice(np.searchsorted(kb, k, "left"), np.searchsorted(kb, k, "right"))
        ia, ib = match_spikes(ta[sa], tb[sb], tol_ms)
        out.append(tb[sb][ib] - ta[sa][ia])
    shifts = np.concatenate(out) if out else np.zeros(0)
    return shifts, len(a.time_ms), len(shifts)


def exact_mismatch(a: LayerSpikes, b: LayerSpikes) -> int:
    """Number of spikes (sample, unit, step) present in one run but not the other."""
    ka = set(zip(a.sample.tolist(), a.unit.tolist(), a.step.tolist()))
    kb = set(zip(b.sample.tolist(), b.unit.tolist(), b.step.tolist()))
    return len(ka ^ kb)


def _aligned(a: RunResult, b: RunResult):
    common, ia, ib = np.intersect1d(a.sample_index, b.sample_index, return_indices=True)
    if len(common) == 0:
        raise EventsnnError("the two runs share no samples (different sample_index)")
    return common, ia, ib


def _restrict(L: LayerSpikes, positions: np.ndarray) -> LayerSpikes:
    """Spikes of the given sample positions, renumbered 0..len(positions)-1."""
    remap = np.full(int(max(L.sample.max(initial=-1), positions.max(initial=-1))) + 1, -1)
    remap[positions] = np.arange(len(positions))
    keep = remap[L.sample] >= 0 if len(L.sample) else np.zeros(0, bool)
    return LayerSpikes(remap[L.sample[keep]], L.unit[keep], L.step[keep], L.time_ms[keep])


def compare_runs(a: RunResult, b: RunResult, tol_ms: float | None = None) -> dict:
    """Everything ``eventsnn compare`` reports, as a dict."""
    common, ia, ib = _aligned(a, b)
    tol = max(a.dt_ms, b.dt_ms) if tol_ms is None else tol_ms
    out = {"n_samples": int(len(common)),
           "accuracy_a": float(np.mean(a.prediction[ia] == a.labels[ia])),
           "accuracy_b": float(np.mean(b.prediction[ib] == b.labels[ib])),
           "prediction_agreement": float(np.mean(a.prediction[ia] == b.prediction[ib])),
           "trace_correlation": None, "layers": []}
    ta, tb = a.trace[ia], b.trace[ib]
    if ta.shape == tb.shape and ta.size:
        x, y = ta.ravel(), tb.ravel()
        if x.std() > 0 and y.std() > 0:
            out["trace_correlation"] = float(np.corrcoef(x, y)[0, 1])
        out["trace_max_rel_diff"] = float(np.abs(x - y).max() / max(np.abs(x).max(), 1e-300))
    if len(a.layers) != len(b.layers):
        raise EventsnnError(f"runs have {len(a.layers)} and {len(b.layers)} hidden layers")
    for li, (La, Lb) in enumerate(zip(a.layers, b.layers)):
        La, Lb = _restrict(La, ia), _restrict(Lb, ib)
        rec = {"layer": li, **spike_timing(La, Lb, tol)}
        if abs(a.dt_ms - b.dt_ms) < 1e-12:
            rec["exact_mismatch"] = exact_mismatch(La, Lb)
        out["layers"].append(rec)
    return out


def format_comparison(c: dict, name_a="A", name_b="B") -> str:
    lines = [f"samples: {c['n_samples']}",
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
