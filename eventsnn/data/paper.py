"""The paper's own datasets ("Beyond Rate Coding", arXiv 2507.16043), built as the authors' code builds them.

Synthetic (``eventsnn data make paper-isi | paper-ccisi | paper-coincidence``):

* **paper-isi** (Fig. ISI): 10 neurons, 10 s at 1 ms. A point is drawn uniformly in [-10, 10]^2, points closer
  than 2.5 to the line y = -x/2 are discarded, and the side of the line is the class (2 classes). x maps linearly
  (over the drawn points' range) to a pair rate in 0.1..3 Hz (step 0.1), y to an interval in 1..``max_isi_ms``
  (step 1 ms). Every neuron fires ``round(rate * 10 s)`` spike *pairs* separated by the interval, placed at
  random integer-ms onsets that keep pairs from overlapping. The rate leaks class information by design.
* **paper-ccisi** (Fig. cross-channel ISI): the same points, 20 neurons in 10 pairs; neuron 2p fires at the onset
  and neuron 2p+1 the interval later (``--max-isi-ms`` swept 50..500 in the paper).
* **paper-coincidence** (Fig. coincidence): 3 groups of 20 neurons, 4 s, 20 windows of 200 ms; spikes only in
  [50, 150) ms of each window. In each window two groups share a random on/off state and the third has the other
  (the class: which two agree). A group's number of active neurons is drawn from a Poisson distribution
  truncated to 0..20 with mean 12 (on) or 2 (off); the means move to 5/5 as the mixing lambda goes 0 -> 1. The
  ``overlap`` option is the authors' lambda': the overlap of the on and off count distributions, mapped to the
  mixing lambda by their grid search (lambda' = 0 is mixing 0).

Speech (``eventsnn data prepare {shd,ssc}``): the authors' "whole", "part" and "norm" variants, from the union of the
official files, binned as they bin (``np.digitize`` on 100 edges over 0..1.4 s, binary), with their per-file
truncation to whole batches of 256, their count floor and caps, class balancing and 60/15/15 split (SSC
shuffled with seed 42 first, as theirs).
"""
from __future__ import annotations

import math

import numpy as np

from eventsnn.data.datasets import binned_to_events
from eventsnn.data.events import Events, read_speakers
from eventsnn.util.errors import EventsnnError, fail
from eventsnn.util.files import open_h5

# ----------------------------------------------------------------------------- ISI and cross-channel ISI

RADIUS, MIN_DISTANCE, SLOPE = 10.0, 2.5, -0.5


def _plane_points(n_samples: int | None, points: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """The authors' (rate, ISI) plane: uniform points away from the line, labelled by its side.

    ``n_samples=None`` draws ``points`` and keeps the valid ones (the authors: 5000 -> ~3600); otherwise points are
    drawn in rounds of ``points`` until ``n_samples`` are valid and the first ``n_samples`` are kept.
    """
    kept = []
    while True:
        X = rng.uniform(-RADIUS, RADIUS, (points, 2))
        dist = np.abs(SLOPE * X[:, 0] - X[:, 1]) / math.sqrt(SLOPE ** 2 + 1)
        kept.append(X[dist >= MIN_DISTANCE])
        have = sum(len(k) for k in kept)
        if n_samples is None or have >= n_samples:
            break
    X = np.concatenate(kept)[: n_samples]
    y = np.where(X[:, 1] > SLOPE * X[:, 0], 0, 1).astype(np.int64)
    return X, y


def _map_stepped(v, lo, hi, step):
    vmin, vmax = v.min(), v.max()
    span = vmax - vmin if vmax > vmin else 1.0
    m = (v - vmin) / span * (hi - lo) + lo
    return np.clip(np.round(m / step) * step, lo, hi)


def _place_pairs(n_pairs: int, isi: int, T: int, rng, max_attempts: int) -> np.ndarray:
    """Onsets of non-overlapping pairs: onset s in [0, T - isi) is accepted when no earlier pair occupies
    [s - isi, s + isi]; a pair that finds no place in ``max_attempts`` tries is skipped (as the authors')."""
    occupied = np.zeros(T + 1, np.int64)
    onsets = []
    for _ in range(n_pairs):
        # the tries of one pair, checked in order against the same occupancy (one prefix sum for all of them)
        s0 = int(rng.integers(0, T - isi))
        if not occupied[max(0, s0 - isi):s0 + isi + 1].any():  # the common case: the first try fits
            occupied[max(0, s0 - isi):s0 + isi + 1] = 1
            onsets.append(s0)
            continue
        s = rng.integers(0, T - isi, max_attempts - 1)
        csum = np.concatenate([[0], np.cumsum(occupied)])
        lo, hi = np.maximum(0, s - isi), np.minimum(T + 1, s + isi + 1)
        free = np.flatnonzero(csum[hi] - csum[lo] == 0)
        if len(free):
            s0 = int(s[free[0]])
            occupied[max(0, s0 - isi):s0 + isi + 1] = 1
            onsets.append(s0)
    return np.asarray(onsets, dtype=np.int64)


def make_paper_isi(samples: int | None = None, *, cross_channel: bool = False, neurons: int | None = None,
                   duration_ms: float = 10_000.0, max_isi_ms: float = 100.0, rate_min_hz: float = 0.1,
                   rate_max_hz: float = 3.0, points: int = 5000, max_attempts: int = 500, seed: int = 0) -> Events:
    """The paper's ISI task (``cross_channel=False``, 10 neurons) or cross-channel ISI task (20 neurons in pairs).

    ``samples=None`` keeps the authors' size (5000 points drawn, ~3600 valid). Spikes sit on the 1 ms grid.
    """
    neurons = (20 if cross_channel else 10) if neurons is None else int(neurons)
    if cross_channel and (neurons % 2 or neurons < 2):
        raise EventsnnError(f"--units must be an even number >= 2 for paper-ccisi (neurons form pairs), got {neurons}")
    T = int(round(duration_ms))
    if abs(T - duration_ms) > 1e-9 or T < 2:
        raise EventsnnError(f"--duration-ms must be a whole number of 1 ms steps >= 2, got {duration_ms:g}")
    if not 1 <= max_isi_ms < T:
        raise EventsnnError(f"--max-isi-ms must be in [1, duration) = [1, {T}), got {max_isi_ms:g}")
    rng = np.random.default_rng(seed)
    X, y = _plane_points(samples, points, rng)
    rates = _map_stepped(X[:, 0], rate_min_hz, rate_max_hz, 0.1)
    isis = _map_stepped(X[:, 1], 1.0, max_isi_ms, 1.0)
    tl, ul = [], []
    for i in range(len(y)):
        r = np.random.default_rng([seed, i])  # per-sample stream: any worker count gives the same file
        n_pairs = int(np.round(rates[i] * T / 1000.0))
        isi = max(1, int(round(isis[i])))
        ts, us = [], []
        groups = [(p, p + 1) for p in range(0, neurons, 2)] if cross_channel else [(n, n) for n in range(neurons)]
        for a, b in groups:
            on = _place_pairs(n_pairs, isi, T, r, max_attempts)
            ts += [on, on + isi]
            us += [np.full(len(on), a), np.full(len(on), b)]
        tl.append(np.concatenate(ts) * 1e-3)
        ul.append(np.concatenate(us))
    name = "paper-ccisi" if cross_channel else "paper-isi"
    ev = Events.from_lists(tl, ul, y, neurons, T * 1e-3, 2, ["above-line", "below-line"], f"synthetic:{name}")
    ev.meta.update({"task": name, "max_isi_ms": float(max_isi_ms), "pair_rate_hz_mean": float(rates.mean())})
    return ev.validate()


# ----------------------------------------------------------------------------- coincidence

ON_MEAN, OFF_MEAN, MIX_MEAN = 12.0, 2.0, 5.0


def _count_distributions(mix: float, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """On and off distributions of the number of active neurons: Poisson truncated to 0..group_size."""
    from scipy.stats import poisson

    k = np.arange(group_size + 1)
    on = poisson.pmf(k, (1 - mix) * ON_MEAN + mix * MIX_MEAN)
    off = poisson.pmf(k, (1 - mix) * OFF_MEAN + mix * MIX_MEAN)
    return on / on.sum(), off / off.sum()


def overlap_to_mix(overlap: float, group_size: int = 20) -> float:
    """The authors' map from lambda' (overlap of the on/off count distributions) to the mixing lambda:
    the first of 1001 grid values whose overlap is nearest (computed over 20 neurons, as theirs); 0 -> 0."""
    if overlap == 0:
        return 0.0
    grid = np.linspace(0.0, 1.0, 1001)
    ov = np.array([np.minimum(*_count_distributions(m, 20)).sum() for m in grid])
    return float(grid[int(np.argmin(np.abs(ov - overlap)))])


def make_paper_coincidence(samples: int = 1500, *, overlap: float = 0.0, group_size: int = 20,
                           duration_ms: float = 4000.0, window_ms: float = 200.0, seed: int = 0) -> Events:
    """The paper's coincidence task; classes are balanced (``samples`` // 3 each, the rest spread)."""
    if not 0.0 <= overlap <= 1.0:
        raise EventsnnError(f"--overlap must be in [0, 1], got {overlap:g}")
    W = int(round(window_ms))
    T = int(round(duration_ms))
    if W < 150 or abs(W - window_ms) > 1e-9:
        raise EventsnnError(f"--window-ms must be a whole number >= 150 ms (spikes fall in [50, 150) ms of each "
                            f"window), got {window_ms:g}")
    if abs(T - duration_ms) > 1e-9 or T < W:
        raise EventsnnError(f"--duration-ms must be a whole number of ms >= the window ({W} ms), got {duration_ms:g}")
    mix = overlap_to_mix(overlap)
    on_p, off_p = _count_distributions(mix, group_size)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(samples) % 3)
    agree = [(0, 1), (0, 2), (1, 2)]  # the authors' classes A, B, C
    slots = np.arange(50, 150)
    tl, ul = [], []
    for i, c in enumerate(labels):
        r = np.random.default_rng([seed, i])
        ts, us = [], []
        for w in range(T // W):
            state = r.random() < 0.5
            states = np.full(3, not state)
            states[list(agree[c])] = state
            for g in range(3):
                k = int(r.choice(group_size + 1, p=on_p if states[g] else off_p))
                if k:
                    active = r.choice(group_size, size=k, replace=False)
                    ts.append(w * W + r.choice(slots, size=k, replace=True))
                    us.append(g * group_size + active)
        tl.append(np.concatenate(ts) * 1e-3 if ts else np.zeros(0))
        ul.append(np.concatenate(us) if us else np.zeros(0, np.int64))
    ev = Events.from_lists(tl, ul, labels, 3 * group_size, T * 1e-3, 3,
                           ["groups-0-1-agree", "groups-0-2-agree", "groups-1-2-agree"], "synthetic:paper-coincidence")
    ev.meta.update({"task": "paper-coincidence", "overlap": float(overlap), "mix": mix})
    return ev.validate()


# ----------------------------------------------------------------------------- speech: whole / part / norm

MAX_TIME_S, N_BINS, BATCH = 1.4, 100, 256
SPEECH_CAPS = {"shd": dict(max_frac=0.01, max_remove=2000), "ssc": dict(max_frac=0.02, max_remove=20000)}
SSC_SPLIT_SEED = 42  # the authors' SSC scripts: np.random.seed(42); np.random.shuffle(indices) before the split


def _keys(times_list, units_list, first: int, U: int) -> np.ndarray:
    """Raster keys ``(sample*U + unit)*100 + bin`` of consecutive samples starting at ``first``: ``np.digitize``
    on ``linspace(0, 1.4, 100)``, bins >= 100 into the last bin, binary (the authors' ``sparse_to_dense``)."""
    lengths = np.fromiter((len(t) for t in times_list), np.int64, len(times_list))
    t = np.concatenate([np.asarray(x, np.float64) for x in times_list]) if len(times_list) else np.zeros(0)
    u = np.concatenate([np.asarray(x, np.int64) for x in units_list]) if len(units_list) else np.zeros(0, np.int64)
    s = np.repeat(np.arange(first, first + len(times_list)), lengths)
    b = np.minimum(np.digitize(t, np.linspace(0, MAX_TIME_S, N_BINS)), N_BINS - 1)
    return np.unique((s * U + u) * N_BINS + b)


def _bin_like_authors(src, first: int = 0, chunk: int = 1024):
    """(keys, labels, n_units, class names, speakers) of the binary raster the authors build from one official
    file (speakers: one id per kept sample, or None where the file has none).

    ``src``: Events, or the path of an official file, read ``chunk`` samples at a time (an SSC file never has
    to fit in memory as events). Only whole batches of 256 samples are kept (their generator drops the rest).
    Samples are numbered from ``first``.
    """

    if isinstance(src, Events):
        n = (len(src) // BATCH) * BATCH
        keys = [_keys(*zip(*(src.sample(i) for i in range(a, min(a + chunk, n)))), first + a, src.n_units)
                for a in range(0, n, chunk)]
        return (np.concatenate(keys) if keys else np.zeros(0, np.int64)), src.labels[:n].copy(), src.n_units, \
            src.class_names, None if src.speakers is None else src.speakers[:n].copy()
    from eventsnn.data.speech import SOURCE as SPOKEN_DIGITS
    with open_h5(src) as f:
        spoken = f.attrs.get("format") is not None and str(f.attrs.get("source", "")) == SPOKEN_DIGITS
    if spoken:   # made by `eventsnn data speak` (SHD's layout and cochlea, synthetic voices): read as events
        from eventsnn.data.events import load_events
        return _bin_like_authors(load_events(src), first, chunk)
    U = 700
    with open_h5(src) as f:
        if f.attrs.get("format") is not None:
            raise fail(src, "is an eventsnn events file; data prepare reads the official SHD/SSC files (700 channels)")
        for key in ("spikes/times", "spikes/units", "labels"):
            if key not in f:
                raise fail(src, f"missing dataset '{key}' (expected an official SHD/SSC file)")
        labels = np.asarray(f["labels"][()]).ravel().astype(np.int64)
        n = (len(labels) // BATCH) * BATCH
        names = [k.decode() if isinstance(k, bytes) else str(k) for k in f["extra/keys"][()]] \
            if "extra/keys" in f else None
        speakers = read_speakers(f, len(labels), src)
        speakers = None if speakers is None else speakers[:n]
        keys = []
        for a in range(0, n, chunk):
            ts, us = f["spikes/times"][a:min(a + chunk, n)], f["spikes/units"][a:min(a + chunk, n)]
            for i, (t, u) in enumerate(zip(ts, us)):
                if len(t) != len(u):
                    raise fail(src, f"sample {a + i}: {len(t)} times but {len(u)} units")
                if len(u) and (int(np.max(u)) >= U or int(np.min(u)) < 0):
                    raise fail(src, f"sample {a + i}: unit {int(np.max(u))} outside 0..{U - 1} (expected an official "
                                    f"file with {U} channels)")
                if len(t) and not (np.all(np.isfinite(t)) and np.min(t) >= 0):
                    raise fail(src, f"sample {a + i}: spike times must be finite and >= 0")
            keys.append(_keys(ts, us, first + a, U))
    return (np.concatenate(keys) if keys else np.zeros(0, np.int64)), labels[:n], U, names, speakers


def prepare_speech(files: list, dataset: str, variant: str, seed: int = 0, duration_bins: int = 200):
    """The authors' speech variant as (train, validation, test) Events, plus a summary dict.

    ``files``: the official files (paths, read in chunks, or Events) in the authors' order (SHD: train, test;
    SSC: train, test, valid).
    ``variant``: ``whole`` (all 700 channels, all kept samples, unbalanced), ``part`` (the samples and channels
    "norm" keeps, original spikes, class-balanced), ``norm`` (every channel fires its minimum count in every
    sample, class-balanced). Split as the authors: SHD the first 60% / next 15% / next 15% of the samples (in
    order; part and norm are shuffled by their balancing), SSC the same sizes of a permutation drawn with
    ``np.random.seed(42)`` (``int(0.6 N)``, ``int((0.75 - 0.6) N)``, ``int((0.9 - 0.75) N)`` samples); the rest is
    unused. Times are bin centres at 1.4 s / 99 per bin; the sample
    lasts ``duration_bins`` bins (the authors pad to 200 steps in training).
    """
    if dataset not in SPEECH_CAPS:
        raise EventsnnError(f"unknown speech dataset {dataset!r}; choose shd or ssc")
    if variant not in ("whole", "part", "norm"):
        raise EventsnnError(f"unknown variant {variant!r}; choose whole, part or norm")
    if duration_bins < N_BINS:
        raise EventsnnError(f"--duration-bins must be >= {N_BINS} (the authors' raster has {N_BINS} bins), "
                            f"got {duration_bins}")
    keys_l, labels_l, spk_l, base, U, names = [], [], [], 0, None, None
    for f in files:
        k, y, u, nm, spk = _bin_like_authors(f, first=base)
        if U is not None and u != U:
            raise EventsnnError(f"{dataset}: the files have {U} and {u} channels")
        U, names = u, names or nm
        keys_l.append(k)
        labels_l.append(y)
        spk_l.append(spk)
        base += len(y)
    keys, Y = np.concatenate(keys_l), np.concatenate(labels_l)
    # speaker ids travel with their samples (None unless every file has them)
    SPK = None if any(x is None for x in spk_l) else np.concatenate(spk_l)
    del keys_l
    n_classes = int(Y.max()) + 1 if len(Y) else 0
    N = len(Y)
    if N == 0:
        raise EventsnnError(f"{dataset}: fewer than {BATCH} samples in every file; nothing to prepare")
    rng = np.random.default_rng(seed)
    summary = {"dataset": dataset, "variant": variant, "samples_binned": int(N)}
    if variant != "whole":
        s_of, rest = np.divmod(keys, U * N_BINS)
        u_of = rest // N_BINS
        counts = np.zeros((N, U), np.int64)
        np.add.at(counts, (s_of, u_of), 1)
        keep, Nf = norm_selection(counts, **SPEECH_CAPS[dataset])
        channels = np.flatnonzero(Nf > 0)
        if len(channels) == 0:
            raise EventsnnError(f"{dataset} {variant}: no channel fires in every kept sample, so nothing is left "
                                "(are these the official files?)")
        summary.update({"samples_removed": int(N - len(keep)), "channels": int(len(channels)),
                        "spikes_per_sample_norm": int(Nf[channels].sum())})
        # restrict to kept samples and channels, renumbered
        new_s = np.full(N, -1)
        new_s[keep] = np.arange(len(keep))
        new_u = np.full(U, -1)
        new_u[channels] = np.arange(len(channels))
        ok = (new_s[s_of] >= 0) & (new_u[u_of] >= 0)
        b_of = rest % N_BINS
        s2, u2, b2 = new_s[s_of[ok]], new_u[u_of[ok]], b_of[ok]
        C = len(channels)
        part_keys = (s2 * C + u2) * N_BINS + b2
        Y2 = Y[keep]
        # part is balanced first, then norm, each with the next draws of one generator (the authors' order)
        part_sel = _balance(Y2, rng)
        if variant == "norm":  # keep Nf random spikes of every (sample, channel); every spike is in its own bin
            group = s2 * C + u2
            order = np.lexsort((rng.random(len(group)), group))
            g = group[order]
            first = np.searchsorted(g, g, side="left")
            rank = np.arange(len(g)) - first
            chosen = order[rank < Nf[channels][u2[order]]]
            part_keys = np.sort(part_keys[chosen])
            sel = _balance(Y2, rng)
        else:
            sel = part_sel
        keys, Y, U = _select(part_keys, sel, C), Y2[sel], C
        SPK = None if SPK is None else SPK[keep][sel]
    N = len(Y)
    if dataset == "ssc":  # theirs (data_{whole,part,norm}_pre.py): shuffled with seed 42, then 60% / 15% / 15%
        order = np.random.RandomState(SSC_SPLIT_SEED).permutation(N)
        n_tr, n_va, n_te = int(0.6 * N), int((0.75 - 0.6) * N), int((0.9 - 0.75) * N)
        parts = (order[:n_tr], order[n_tr:n_tr + n_va], order[n_tr + n_va:n_tr + n_va + n_te])
    else:  # SHD (shd_train.py): in order, [0.6 N) / [0.6 N, 0.75 N) / [0.75 N, 0.9 N)
        cut = [int(N * 0.6), int(N * 0.75), int(N * 0.9)]
        parts = (np.arange(cut[0]), np.arange(cut[0], cut[1]), np.arange(cut[1], cut[2]))
    bin_ms = MAX_TIME_S / (N_BINS - 1) * 1e3
    out = []
    for name, idx in zip(("train", "val", "test"), parts):
        k = _select(keys, idx, U)
        s, rest = np.divmod(k, U * N_BINS)
        u, b = np.divmod(rest, N_BINS)
        ev = binned_to_events(s, u, b, np.ones(len(k), np.int64), Y[idx], U, n_classes, bin_ms, duration_bins,
                              names, f"{dataset}-{variant}:{name}")
        ev.speakers = None if SPK is None else SPK[idx]
        out.append(ev)
    summary.update({"samples": int(N), "units": int(U), "bin_ms": bin_ms,
                    "train": len(out[0]), "val": len(out[1]), "test": len(out[2])})
    return (*out, summary)


def norm_selection(counts: np.ndarray, max_frac: float, max_remove: int, floor: int = 2):
    """The authors' sample removal and N_f (``create_min_count_dataset_return_mask``): (kept sample indices,
    each unit's minimum count over them).

    ``counts``: spikes per [sample, unit]. A unit is bad when its minimum count is below ``floor``; its samples
    with fewer than ``floor`` spikes are marked when they are at most ``max_frac`` of all samples (each bad unit on
    its own); the marked samples of all bad units are removed only when there are more than 0 and fewer than
    ``max_remove`` of them. Units stay whatever their N_f (a unit at N_f = 0 is silent in some kept sample).
    """
    N = len(counts)
    low = counts < floor
    bad = low.any(0)
    marks = bad & (low.sum(0) / max(N, 1) <= max_frac)
    remove = low[:, marks].any(1)
    keep = np.arange(N)
    if 0 < remove.sum() < max_remove:
        keep = keep[~remove]
    return keep, (counts[keep].min(0) if len(keep) else np.zeros(counts.shape[1], np.int64))


def _balance(Y, rng) -> np.ndarray:
    """Random undersampling to the smallest class, then a random order (the authors' balance_dataset)."""
    classes = np.unique(Y)
    m = min(int((Y == c).sum()) for c in classes)
    sel = []
    for c in classes:
        idx = np.flatnonzero(Y == c)
        rng.shuffle(idx)
        sel.append(idx[:m])
    sel = np.concatenate(sel)
    return sel[rng.permutation(len(sel))]


def _select(keys, samples, U) -> np.ndarray:
    """Keys of the given samples (in that order), renumbered 0..len(samples)-1."""
    s, rest = np.divmod(keys, U * N_BINS)
    N = int(s.max()) + 1 if len(s) else 0
    pos = np.full(max(N, int(np.max(samples, initial=-1)) + 1), -1)
    pos[samples] = np.arange(len(samples))
    ok = pos[s] >= 0
    return np.sort(pos[s[ok]] * U * N_BINS + rest[ok])
