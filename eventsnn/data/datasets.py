"""Synthetic timing tasks and readers for real speech data (SHD/SSC, rate-removed files).

In every synthetic task the spike count of every unit has the same
distribution in every class, so a count-only classifier is at chance; the
class is carried by timing only. The class *structure* (which lags, which
ISIs) is drawn from ``task_seed``; the samples from ``seed``. Files made with
the same ``task_seed`` and different ``seed`` are train/test splits of one
task.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from eventsnn.data.events import Events, load_events
from eventsnn.util.errors import EventsnnError, fail
from eventsnn.util.files import open_h5

TASKS = ("isi", "polychrony", "coincidence")
PAPER_TASK_NAMES = ("paper-isi", "paper-ccisi", "paper-coincidence")
TASK_NAMES = TASKS + PAPER_TASK_NAMES
DEFAULTS = {"isi": dict(units=10, classes=4, duration_ms=100.0),
            "polychrony": dict(units=20, classes=4, duration_ms=100.0),
            "coincidence": dict(units=30, classes=3, duration_ms=100.0),
            "paper-isi": dict(units=10, classes=2, duration_ms=10_000.0),
            "paper-ccisi": dict(units=20, classes=2, duration_ms=10_000.0),
            "paper-coincidence": dict(units=60, classes=3, duration_ms=4000.0)}
SPEECH_SPAN_MS = 1400.0  # the authors bin SHD/SSC with np.digitize on linspace(0, 1.4 s, bins)


def make_task(task: str, *, samples=None, seed=0, task_seed=0, units=None, classes=None, duration_ms=None,
              jitter_ms=0.0, overlap=None, max_isi_ms=None) -> Events:
    """Any task of ``eventsnn data make`` by name, its options checked first (errors name the flag)."""
    from eventsnn.data import paper

    if task not in TASK_NAMES:
        raise EventsnnError(f"unknown task {task!r}; choose from {', '.join(TASK_NAMES)}")
    d = dict(DEFAULTS[task])
    d.update({k: v for k, v in dict(units=units, classes=classes, duration_ms=duration_ms).items() if v is not None})
    if overlap is not None and "coincidence" not in task:
        raise EventsnnError(f"--overlap applies to the coincidence tasks only, not {task}")
    if max_isi_ms is not None and task not in ("paper-isi", "paper-ccisi"):
        raise EventsnnError(f"--max-isi-ms applies to paper-isi and paper-ccisi only, not {task}")
    if task.startswith("paper-"):
        if classes is not None and classes != DEFAULTS[task]["classes"]:
            raise EventsnnError(f"--classes: {task} has {DEFAULTS[task]['classes']} classes, got {classes}")
        if task_seed:
            raise EventsnnError(f"--task-seed: {task} has a fixed class structure (use --seed)")
        if jitter_ms:
            raise EventsnnError(f"--jitter-ms: not an option of {task} (use eventsnn data transform --jitter)")
    common = dict(samples=1000 if samples is None else samples, seed=seed, task_seed=task_seed, jitter_ms=jitter_ms)
    if task == "isi":
        if d["classes"] < 2:
            raise EventsnnError(f"--classes must be >= 2 for isi, got {d['classes']}")
        if d["duration_ms"] <= 16.0:
            raise EventsnnError(f"--duration-ms must be > 16 ms for isi (a pair needs room for the longest "
                                f"interval, 15 ms), got {d['duration_ms']:g}")
        return make_isi(units=d["units"], classes=d["classes"], duration_ms=d["duration_ms"], **common)
    if task == "polychrony":
        if d["units"] % 2 or d["units"] < 2:
            raise EventsnnError(f"--units must be an even number >= 2 for polychrony (units form pairs), "
                                f"got {d['units']}")
        if not 2 <= d["classes"] <= 2 ** min(d["units"] // 2, 60):
            raise EventsnnError(f"--classes must be in [2, {2 ** min(d['units'] // 2, 60)}] for polychrony with "
                                f"{d['units']} units, got {d['classes']}")
        if d["duration_ms"] <= 9.0:
            raise EventsnnError(f"--duration-ms must be > 9 ms for polychrony (longest lag 8 ms), "
                                f"got {d['duration_ms']:g}")
        return make_polychrony(units=d["units"], classes=d["classes"], duration_ms=d["duration_ms"], **common)
    if task == "coincidence":
        if d["units"] % 3 or d["units"] < 3:
            raise EventsnnError(f"--units must be a multiple of 3 for coincidence (3 equal groups), got {d['units']}")
        if d["classes"] != 3:
            raise EventsnnError(f"--classes must be 3 for coincidence (which two of three groups agree), "
                                f"got {d['classes']}")
        windows = d["duration_ms"] / 20.0
        if windows < 1 or abs(windows - round(windows)) > 1e-9:
            raise EventsnnError(f"--duration-ms must be a multiple of the 20 ms window for coincidence, "
                                f"got {d['duration_ms']:g}")
        return make_coincidence(group_size=d["units"] // 3, windows=int(round(windows)),
                                overlap=0.0 if overlap is None else overlap, **common)
    if task in ("paper-isi", "paper-ccisi"):
        return paper.make_paper_isi(samples, cross_channel=task == "paper-ccisi", neurons=d["units"],
                                    duration_ms=d["duration_ms"], max_isi_ms=100.0 if max_isi_ms is None else max_isi_ms,
                                    seed=seed)
    if d["units"] % 3 or d["units"] < 3:
        raise EventsnnError(f"--units must be a multiple of 3 for paper-coincidence (3 equal groups), got {d['units']}")
    return paper.make_paper_coincidence(1500 if samples is None else samples, overlap=overlap or 0.0,
                                        group_size=d["units"] // 3, duration_ms=d["duration_ms"], seed=seed)


def _finish(times_list, units_list, labels, n_units, duration_ms, n_classes, source, jitter_ms, rng, names=None):
    D = duration_ms * 1e-3
    out_t, out_u = [], []
    for t, u in zip(times_list, units_list):
        t = np.asarray(t, dtype=np.float64)
        if jitter_ms > 0:
            t = t + rng.normal(0, jitter_ms, len(t))
        t = np.clip(t, 0.0, np.nextafter(duration_ms, 0)) * 1e-3
        out_t.append(t)
        out_u.append(np.asarray(u, dtype=np.int64))
    ev = Events.from_lists(out_t, out_u, labels, n_units, D, n_classes, names, source)
    return ev.validate()


def make_isi(samples=600, units=10, classes=4, duration_ms=100.0, pairs=2, isi_min_ms=3.0, isi_max_ms=15.0,
             jitter_ms=0.0, seed=0, task_seed=0) -> Events:
    """ISI task: every unit fires ``pairs`` spike pairs; the interval within a pair is the class signal.

    Class c gives unit u the interval ``isis[(c + u) % classes]`` (evenly spaced
    in [isi_min, isi_max]), so every unit sees every interval across classes
    and counts (2*pairs per unit) are identical in all classes. Pair onsets are
    uniform in time.
    """
    rng = np.random.default_rng(seed)
    isis = np.linspace(isi_min_ms, isi_max_ms, classes)
    labels = rng.integers(0, classes, samples)
    tl, ul = [], []
    for c in labels:
        isi_u = isis[(c + np.arange(units)) % classes]
        on = rng.uniform(0, duration_ms - isi_max_ms - 1.0, (units, pairs))
        t = np.concatenate([on.ravel(), (on + isi_u[:, None]).ravel()])
        u = np.concatenate([np.repeat(np.arange(units), pairs)] * 2)
        tl.append(t)
        ul.append(u)
    names = [f"isi-pattern-{c}" for c in range(classes)]
    return _finish(tl, ul, labels, units, duration_ms, classes, "synthetic:isi", jitter_ms, rng, names)


def make_polychrony(samples=600, units=20, classes=4, duration_ms=100.0, events=2, lag_min_ms=2.0,
                    lag_max_ms=8.0, jitter_ms=0.0, seed=0, task_seed=0) -> Events:
    """Cross-channel timing: units form pairs (a, b); each pair fires ``events`` times.

    For each pair the task fixes a lag L_p; class c fixes an order sign per pair
    (a then b after L_p, or b then a after L_p). Every unit fires exactly
    ``events`` spikes in every sample, at uniform random times: single-unit
    counts and intervals carry nothing, only the relative timing across units
    does.
    """
    if units % 2 or units < 2:
        raise EventsnnError(f"polychrony needs an even number of units >= 2, got {units}")
    P = units // 2
    trng = np.random.default_rng(task_seed)
    lags = trng.uniform(lag_min_ms, lag_max_ms, P)
    signs = _distinct_sign_patterns(classes, P, trng)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, samples)
    tl, ul = [], []
    for c in labels:
        on = rng.uniform(0, duration_ms - lag_max_ms - 1.0, (P, events))
        first = np.where(signs[c] > 0, 2 * np.arange(P), 2 * np.arange(P) + 1)
        second = np.where(signs[c] > 0, 2 * np.arange(P) + 1, 2 * np.arange(P))
        t = np.concatenate([on.ravel(), (on + lags[:, None]).ravel()])
        u = np.concatenate([np.repeat(first, events), np.repeat(second, events)])
        tl.append(t)
        ul.append(u)
    names = [f"order-pattern-{c}" for c in range(classes)]
    return _finish(tl, ul, labels, units, duration_ms, classes, "synthetic:polychrony", jitter_ms, rng, names)


def _distinct_sign_patterns(classes, P, rng):
    if classes > 2 ** P:
        raise EventsnnError(f"polychrony: {classes} classes need at least {math.ceil(math.log2(classes))} pairs")
    seen, out = set(), []
    while len(out) < classes:
        s = rng.choice([-1, 1], P)
        if tuple(s) not in seen:
            seen.add(tuple(s))
            out.append(s)
    return np.array(out)


def make_coincidence(samples=600, group_size=10, windows=5, window_ms=20.0, overlap=0.0, p_on=0.6, p_off=0.1,
                     jitter_ms=0.0, seed=0, task_seed=0) -> Events:
    """Coincidence task (the paper's): 3 groups of units, ``windows`` time windows.

    In each window two groups share a state ("on" or "off", equally likely) and
    the third has the other state; the class is which two groups agree (3
    classes). An on-group has each unit fire once (uniform time in the window)
    with probability ``p_on``, an off-group with ``p_off``. ``overlap`` in [0,1]
    moves both probabilities to their mean; at 1 on and off are identical and
    the task is at chance. Every group is on with probability 1/2 in every
    window whatever the class, so counts carry no class information.
    """
    if not 0.0 <= overlap <= 1.0:
        raise EventsnnError(f"overlap must be in [0, 1], got {overlap}")
    mid = 0.5 * (p_on + p_off)
    pon, poff = p_on + overlap * (mid - p_on), p_off + overlap * (mid - p_off)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, samples)
    pairs = [(0, 1), (0, 2), (1, 2)]
    n_units = 3 * group_size
    tl, ul = [], []
    for c in labels:
        ts, us = [], []
        for w in range(windows):
            shared = rng.random() < 0.5
            state = np.full(3, not shared)
            state[list(pairs[c])] = shared
            for g in range(3):
                fire = rng.random(group_size) < (pon if state[g] else poff)
                idx = g * group_size + np.flatnonzero(fire)
                ts.append(w * window_ms + rng.uniform(0, window_ms, len(idx)))
                us.append(idx)
        tl.append(np.concatenate(ts))
        ul.append(np.concatenate(us))
    names = ["groups-0-1-agree", "groups-0-2-agree", "groups-1-2-agree"]
    ev = _finish(tl, ul, labels, n_units, windows * window_ms, 3, "synthetic:coincidence", jitter_ms, rng, names)
    ev.meta["overlap"] = float(overlap)
    return ev


# ----------------------------------------------------------------------------- rate-removed files

def load_norm(path, bin_ms: float | None = None) -> Events:
    """Read a released rate-removed file (``shd_norm.mat`` / ``ssc_norm.h5``) into events.

    Both hold ``X`` [samples, units, bins] (spike counts per bin) and ``Y``
    (labels). A count ``c`` in bin ``b`` becomes ``c`` spikes spread evenly
    inside the bin, at ``(b + (j + 0.5)/c) * bin_ms`` for j = 0..c-1 (a single
    spike sits at the bin centre). Both released files are the authors' raster
    of 1.4 s (``np.digitize`` on ``B`` = 100 edges over 0..1.4 s), so ``bin_ms``
    defaults to 1400 / (B - 1) ms, read from the file's shape: 14.14 ms for both.
    """
    p = Path(path)
    if not p.exists():
        raise fail(path, "no such file")
    X = Y = None
    try:
        import h5py
        if h5py.is_hdf5(p):
            with h5py.File(p, "r") as f:
                if "X" not in f or "Y" not in f:
                    raise fail(path, f"expected datasets 'X' and 'Y', found {sorted(f.keys())}")
                X, Y = np.asarray(f["X"][()]), np.asarray(f["Y"][()])
                if p.suffix == ".mat":  # MATLAB v7.3 stores arrays transposed
                    X, Y = X.T, Y.T
        else:
            from scipy.io import loadmat
            m = loadmat(p)
            if "X" not in m or "Y" not in m:
                raise fail(path, f"expected variables 'X' and 'Y', found {sorted(k for k in m if not k.startswith('__'))}")
            X, Y = np.asarray(m["X"]), np.asarray(m["Y"])
    except EventsnnError:
        raise
    except Exception as e:  # scipy/h5py raise many types for corrupt files
        raise fail(path, f"cannot read rate-removed file ({type(e).__name__}: {e})") from None
    if X.ndim != 3:
        raise fail(path, f"X must be [samples, units, bins], got shape {list(X.shape)}")
    Y = Y.ravel().astype(np.int64)
    if len(Y) != X.shape[0]:
        raise fail(path, f"X has {X.shape[0]} samples but Y has {len(Y)} labels")
    if np.any(X < 0) or not np.all(np.isfinite(X)):
        raise fail(path, "X must hold finite non-negative counts")
    S, U, B = X.shape
    if B < 2:
        raise fail(path, f"X must have at least 2 bins (the authors' raster has 100), got {B}")
    if bin_ms is None:
        bin_ms = SPEECH_SPAN_MS / (B - 1)
    if Y.min() < 0:
        raise fail(path, f"negative label {Y.min()}")
    Xi = np.rint(X).astype(np.int64)
    s, u, b = np.nonzero(Xi)
    return binned_to_events(s, u, b, Xi[s, u, b], Y, U, int(Y.max()) + 1, bin_ms, B, source=f"norm:{p.name}",
                            path=path)


def binned_to_events(sample, unit, bin_, count, labels, n_units, n_classes, bin_ms, duration_bins,
                     class_names=None, source="", path=None) -> Events:
    """Spike counts per (sample, unit, bin) as events: ``c`` spikes in bin ``b`` sit at
    ``(b + (j + 0.5)/c) * bin_ms`` for j = 0..c-1, spread evenly inside the bin (one spike at its centre)."""
    count = np.asarray(count, np.int64)
    rep_s, rep_u, rep_b, rep_c = (np.repeat(np.asarray(x, np.int64), count) for x in (sample, unit, bin_, count))
    first = np.repeat(np.cumsum(count) - count, count)
    j = np.arange(len(rep_c)) - first
    t = (rep_b + (j + 0.5) / rep_c) * bin_ms * 1e-3
    o = np.lexsort((rep_u, t, rep_s))  # by sample, then time, then unit
    labels = np.asarray(labels, np.int64)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rep_s, minlength=len(labels)))]).astype(np.int64)
    ev = Events(t[o], rep_u[o], offsets, labels, int(n_units), duration_bins * bin_ms * 1e-3, int(n_classes),
                list(class_names) if class_names is not None else None, source)
    ev.meta["bin_ms"] = float(bin_ms)  # the grid the authors' perturbations work on (jitter in bins, randomisation)
    return ev.validate(path)


def load_any(path) -> Events:
    """Events from an events/SHD HDF5 file, or a rate-removed ``.mat``/``X,Y`` file."""


    p = Path(path)
    if p.suffix == ".mat":
        return load_norm(p)
    with open_h5(p) as f:
        is_norm = "X" in f and "Y" in f and "spikes" not in f
    return load_norm(p) if is_norm else load_events(p)


def split_indices(n: int, val_fraction: float, seed: int = 0):
    """Deterministic train/validation split of range(n) (validation carved from training data)."""
    if not 0.0 <= val_fraction < 1.0:
        raise EventsnnError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def count_baseline(events: Events, test_fraction: float = 0.3, seed: int = 0) -> float:
    """Held-out accuracy of logistic regression on per-unit spike counts (rate-only classifier)."""
    return feature_baseline(events.counts().astype(np.float64), events.labels, test_fraction, seed)


def feature_baseline(X: np.ndarray, y: np.ndarray, test_fraction: float = 0.3, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    tr, te = split_indices(len(y), test_fraction, seed)
    if len(te) == 0 or len(np.unique(y[tr])) < 2:
        return float("nan")
    sc = StandardScaler().fit(X[tr])
    clf = LogisticRegression(max_iter=2000).fit(sc.transform(X[tr]), y[tr])
    return float(np.mean(clf.predict(sc.transform(X[te])) == y[te]))


class DatasetSource:
    """A torch-style map dataset as training (or validation/test) data, read batch by batch.

    ``dataset[i]`` returns ``(sample, label)``, where ``sample`` is a tonic event array (fields ``t`` in
    microseconds and ``x``; tonic's audio datasets such as ``tonic.datasets.SHD``) or an :class:`Events` holding
    one sample. Items are read every time a batch needs them, so the dataset's own transforms (tonic's, or any
    callable it applies) run again in every epoch, and only one batch of events is in memory at a time.
    Samples are cut at ``duration_s`` (the length every sample is simulated for). Binary inputs merge spikes of
    one unit in one step, as for files (not reported for datasets: they are never read whole).
    """

    def __init__(self, dataset, n_units: int, n_classes: int, duration_s: float, class_names=None,
                 source: str = "dataset"):
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise EventsnnError(f"{source}: expected a map-style dataset (with __getitem__ and __len__), got "
                                f"{type(dataset).__name__}")
        for name, v in (("n_units", n_units), ("n_classes", n_classes)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise EventsnnError(f"{source}: {name} must be a positive integer, got {v!r}")
        if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
            raise EventsnnError(f"{source}: duration_s must be a positive number of seconds, got {duration_s!r}")
        self.dataset, self.n_units, self.n_classes = dataset, int(n_units), int(n_classes)
        self.duration_s, self.class_names, self.source = float(duration_s), class_names, source

    @property
    def duration_ms(self) -> float:
        return self.duration_s * 1000.0

    def __len__(self) -> int:
        return len(self.dataset)

    def concat(self, other: "DatasetSource") -> "DatasetSource":
        """This source's samples followed by ``other``'s (same units; duration and classes the larger)."""
        from torch.utils.data import ConcatDataset
        if other.n_units != self.n_units:
            raise EventsnnError(f"{other.source}: {other.n_units} units, {self.source} has {self.n_units}")
        return DatasetSource(ConcatDataset([self.dataset, other.dataset]), self.n_units,
                             max(self.n_classes, other.n_classes), max(self.duration_s, other.duration_s),
                             self.class_names, self.source)

    def events(self, idx) -> Events:
        """The samples ``idx`` as one :class:`Events` (reading, and so transforming, each item now)."""
        times, units, labels = [], [], []
        for i in np.asarray(idx, dtype=np.int64).tolist():
            sample, label = self.dataset[i]
            if isinstance(sample, Events):
                if len(sample) != 1 or sample.n_units > self.n_units:
                    raise EventsnnError(f"{self.source}[{i}]: expected one sample with at most {self.n_units} "
                                        f"units, got {len(sample)} samples of {sample.n_units} units")
                t, u = sample.sample(0)
            else:
                try:
                    t, u = np.asarray(sample["t"], np.float64) * 1e-6, np.asarray(sample["x"], np.int64)
                except (TypeError, ValueError, KeyError, IndexError):
                    raise EventsnnError(f"{self.source}[{i}]: expected a tonic event array (fields t, x) or an "
                                        f"Events sample, got {type(sample).__name__}") from None
            label = int(label)
            if not 0 <= label < self.n_classes:
                raise EventsnnError(f"{self.source}[{i}]: label {label} outside 0..{self.n_classes - 1}")
            if len(u) and (u.min() < 0 or u.max() >= self.n_units):
                raise EventsnnError(f"{self.source}[{i}]: unit {int(u.max())} outside 0..{self.n_units - 1}")
            keep = (t >= 0) & (t < self.duration_s)
            times.append(t[keep])
            units.append(u[keep])
            labels.append(label)
        return Events.from_lists(times, units, np.asarray(labels, np.int64), self.n_units, self.duration_s,
                                 self.n_classes, self.class_names, self.source)
