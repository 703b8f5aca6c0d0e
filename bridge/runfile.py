"""The run file (``format="eventsnn.run"``): what one simulation produced.

Written by ``eventsnn simulate`` (and ``verify``) for every engine. Hidden layer spikes as flat ``sample, unit,
step, time_ms`` arrays sorted by sample, with ``sample_start`` (the row of each sample's first spike); the readout
trace sampled on the training grid; predictions and labels.

A run is written chunk by chunk (:class:`RunWriter`: consecutive samples appended to resizable datasets) and read
chunk by chunk (:class:`RunReader`), so neither side ever needs the whole run in memory; ``save_run`` and
``load_run`` are the one-chunk cases.
"""
from __future__ import annotations

import json
import math
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np

from eventsnn.util.errors import fail
from eventsnn.util.files import atomic_path, open_h5
from eventsnn.util.progress import progress_bar

RUN_FORMAT = "eventsnn.run"
RUN_VERSION = 2          # 2: layers/<i>/sample_start; version 1 files (without it) are still read
HEADER = ("engine", "dt_ms", "train_dt_ms", "delays", "inputs", "target", "readout")
SPIKE_BYTES = 32         # one spike on disk and in memory: sample, unit, step (int64) and time_ms (float64)


@dataclass
class LayerSpikes:
    sample: np.ndarray
    unit: np.ndarray
    step: np.ndarray
    time_ms: np.ndarray

    @classmethod
    def from_steps(cls, sample, unit, step, dt_ms):
        step = np.asarray(step, dtype=np.int64)
        order = np.lexsort((unit, step, sample))
        return cls(np.asarray(sample, np.int64)[order], np.asarray(unit, np.int64)[order], step[order],
                   step[order] * float(dt_ms))


@dataclass
class RunResult:
    engine: str                 # "torch" | "brian2" | "event"
    dt_ms: float
    train_dt_ms: float
    delays: str                 # "round" | "exact" | "interp"
    inputs: str                 # "binned" | "exact"
    target: str                 # torch device or Brian2 target
    readout: str
    layers: list[LayerSpikes]
    trace: np.ndarray           # [S, K, N_out]
    prediction: np.ndarray      # [S]
    labels: np.ndarray          # [S]
    sample_index: np.ndarray    # [S] index into the events file
    attrs: dict = field(default_factory=dict)   # hashes, transform, timings...

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.prediction == self.labels)) if len(self.labels) else float("nan")

    @property
    def nbytes(self) -> int:
        """Bytes of the run's arrays (what holding it in memory costs)."""
        return int(sum(len(L.sample) for L in self.layers) * SPIKE_BYTES + self.trace.size * 8
                   + 3 * 8 * self.n_samples)


def _attr_value(v):
    return v if isinstance(v, (int, float, str, bool, np.integer, np.floating)) else json.dumps(v)


class RunWriter:
    """Write a run chunk by chunk, in sample order::

        with RunWriter(path) as w:
            for part in parts:       # RunResults of consecutive samples, same engine and settings
                w.append(part)

    Each part's sample positions (0..len(part)-1) are shifted by the samples written before it. Memory is one
    part. The file appears, atomically, only when the block ends without an error. Attributes are the first
    part's, then ``attrs`` given here (they win). Wall-clock time is not written (the same run gives the same bytes):
    ``wall_s`` sums it over the parts for the caller to report."""

    def __init__(self, path, attrs: dict | None = None):
        self.path, self.extra = path, dict(attrs or {})
        self._stack = self._f = None
        self.n_samples, self.n_parts, self._first, self._wall = 0, 0, None, 0.0
        self._correct = 0
        self.spikes: list[int] = []        # hidden spikes written, per layer
        self._starts: list[list[np.ndarray]] = []

    def __enter__(self):
        import h5py
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._f = self._stack.enter_context(h5py.File(tmp, "w"))
        return self

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                if self._first is None:
                    raise ValueError(f"RunWriter({self.path}): no part was appended")
                self._finish()
        finally:
            self._stack.__exit__(*exc)

    def _grow(self, name: str, data: np.ndarray):
        f = self._f
        if name not in f:
            f.create_dataset(name, data=data, maxshape=(None,) + data.shape[1:],
                             chunks=(1,) + data.shape[1:] if data.ndim > 1 else (1 << 16,))
            return
        d = f[name]
        n = d.shape[0]
        d.resize(n + len(data), axis=0)
        d[n:] = data

    def append(self, part: RunResult) -> None:
        first = self._first
        if first is None:
            self._first = first = part
            self._starts = [[np.zeros(1, np.int64)] for _ in part.layers]
            self._rows = [0] * len(part.layers)
            self.spikes = [0] * len(part.layers)
        else:
            for k in HEADER:
                if getattr(part, k) != getattr(first, k):
                    raise ValueError(f"RunWriter: parts differ in {k} ({getattr(first, k)!r} vs {getattr(part, k)!r})")
            if len(part.layers) != len(first.layers):
                raise ValueError("RunWriter: parts differ in their number of hidden layers")
            if part.trace.shape[1:] != first.trace.shape[1:]:
                raise ValueError(f"RunWriter: parts differ in trace shape ({first.trace.shape[1:]} vs "
                                 f"{part.trace.shape[1:]})")
        S = part.n_samples
        if part.trace.shape[0] != S or part.prediction.shape != (S,) or len(part.sample_index) != S:
            raise ValueError(f"RunWriter: inconsistent part: trace {list(part.trace.shape)}, prediction "
                             f"{list(part.prediction.shape)}, labels {S}, sample_index {len(part.sample_index)}")
        for i, L in enumerate(part.layers):
            s = np.asarray(L.sample, np.int64)
            if len(s) and (np.any(np.diff(s) < 0) or s[0] < 0 or s[-1] >= S):
                raise ValueError(f"RunWriter: layer {i} spikes are not sorted by sample within 0..{S - 1}")
            self._grow(f"layers/{i}/sample", s + self.n_samples)
            self._grow(f"layers/{i}/unit", np.asarray(L.unit, np.int64))
            self._grow(f"layers/{i}/step", np.asarray(L.step, np.int64))
            self._grow(f"layers/{i}/time_ms", np.asarray(L.time_ms, np.float64))
            self._starts[i].append(self._rows[i] + np.searchsorted(s, np.arange(1, S + 1), "left"))
            self._rows[i] += len(s)
            self.spikes[i] += len(s)
        self._grow("output/trace", np.asarray(part.trace, np.float64))
        self._grow("output/prediction", np.asarray(part.prediction, np.int64))
        self._grow("labels", np.asarray(part.labels, np.int64))
        self._grow("sample_index", np.asarray(part.sample_index, np.int64))
        self._correct += int(np.sum(part.prediction == part.labels))
        self._wall += float(part.attrs.get("wall_s", 0.0))
        self.n_samples += S
        self.n_parts += 1

    @property
    def wall_s(self) -> float:
        """Wall-clock seconds the engine spent on the parts written (not stored in the file)."""
        return self._wall

    @property
    def accuracy(self) -> float:
        return self._correct / self.n_samples if self.n_samples else float("nan")

    @property
    def header(self) -> dict:
        """engine, dt_ms, train_dt_ms, delays, inputs, target, readout (of the first part)."""
        return {k: getattr(self._first, k) for k in HEADER} if self._first is not None else {}

    def _finish(self) -> None:
        f, first = self._f, self._first
        f.attrs["format"] = RUN_FORMAT
        f.attrs["version"] = RUN_VERSION
        for k in HEADER:
            f.attrs[k] = getattr(first, k)
        f.attrs["accuracy"] = self.accuracy
        attrs = dict(first.attrs)
        attrs.pop("wall_s", None)
        if self.n_parts > 1:
            attrs["parts"] = self.n_parts
        attrs.update(self.extra)
        for k, v in attrs.items():
            f.attrs[k] = _attr_value(v)
        for i, starts in enumerate(self._starts):
            f.create_dataset(f"layers/{i}/sample_start", data=np.concatenate(starts))


def save_run(run: RunResult, path) -> None:
    """Write ``run`` to ``path`` (atomically)."""
    with RunWriter(path) as w:
        w.append(run)


class RunReader:
    """A run file opened for reading in sample chunks: ``RunReader(path).read(lo, hi)`` is the RunResult of
    samples ``lo..hi-1`` (positions renumbered from 0). The header, attributes, predictions and labels are read
    once; hidden spikes and the trace only per chunk. Every problem is an error naming the file."""

    def __init__(self, path):
        self.path = path
        f = open_h5(path, RUN_FORMAT)
        with f:
            try:
                self.header = {k: f.attrs[k] for k in HEADER}
                self.version = int(f.attrs.get("version", 1))
                if self.version > RUN_VERSION:
                    raise fail(path, f"run file version {self.version} is newer than this eventsnn reads "
                                     f"({RUN_VERSION}); upgrade eventsnn")
                self.prediction = np.asarray(f["output/prediction"][()])
                self.labels = np.asarray(f["labels"][()])
                self.sample_index = np.asarray(f["sample_index"][()])
                trace_shape = f["output/trace"].shape
                self.n_layers = len(f["layers"]) if "layers" in f else 0
                self.starts = []
                for i in range(self.n_layers):
                    g = f[f"layers/{i}"]
                    if "sample_start" in g:
                        st = np.asarray(g["sample_start"][()])
                    else:  # version 1: from the sorted sample column
                        st = np.searchsorted(np.asarray(g["sample"][()]), np.arange(len(self.labels) + 1), "left")
                    n_rows = g["sample"].shape[0]
                    if len(st) != len(self.labels) + 1 or st[0] != 0 or st[-1] != n_rows or np.any(np.diff(st) < 0):
                        raise fail(path, f"layers/{i}/sample_start does not index its {n_rows} spikes")
                    self.starts.append(st)
            except KeyError as e:
                raise fail(path, f"missing {e} in run file") from None
            known = set(HEADER) | {"format", "version", "accuracy"}
            self.attrs = {}
            for k, v in f.attrs.items():
                if k in known:
                    continue
                v = v.item() if hasattr(v, "item") else v
                if isinstance(v, str) and v[:1] in "[{":
                    try:
                        v = json.loads(v)
                    except ValueError:
                        pass
                self.attrs[k] = v
        for k in ("dt_ms", "train_dt_ms"):
            v = float(self.header[k])
            if not (math.isfinite(v) and v >= 0) or (k == "train_dt_ms" and v <= 0):
                raise fail(path, f"attribute {k} is {v!r}, expected a finite step in ms")
        S = len(self.labels)
        if len(trace_shape) != 3 or trace_shape[0] != S or self.prediction.shape != self.labels.shape \
                or len(self.sample_index) != S:
            raise fail(path, f"inconsistent shapes: trace {list(trace_shape)}, prediction "
                             f"{list(self.prediction.shape)}, labels {list(self.labels.shape)}")

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.prediction == self.labels)) if self.n_samples else float("nan")

    def spikes_per_sample(self) -> np.ndarray:
        """[S] hidden spikes of each sample, all layers together (to plan chunks without reading them)."""
        return sum((np.diff(st) for st in self.starts), np.zeros(self.n_samples, np.int64))

    def read(self, lo: int = 0, hi: int | None = None) -> RunResult:
        hi = self.n_samples if hi is None else min(int(hi), self.n_samples)
        lo = max(0, min(int(lo), hi))
        h = self.header
        with open_h5(self.path, RUN_FORMAT) as f:
            try:
                layers = []
                for i, st in enumerate(self.starts):
                    g, a, b = f[f"layers/{i}"], int(st[lo]), int(st[hi])
                    L = LayerSpikes(*(np.asarray(g[k][a:b]) for k in ("sample", "unit", "step", "time_ms")))
                    L.sample = L.sample - lo
                    layers.append(L)
                trace = np.asarray(f["output/trace"][lo:hi])
            except KeyError as e:
                raise fail(self.path, f"missing {e} in run file") from None
        return RunResult(str(h["engine"]), float(h["dt_ms"]), float(h["train_dt_ms"]), str(h["delays"]),
                         str(h["inputs"]), str(h["target"]), str(h["readout"]), layers, trace,
                         self.prediction[lo:hi].copy(), self.labels[lo:hi].copy(), self.sample_index[lo:hi].copy(),
                         dict(self.attrs))


def load_run(path) -> RunResult:
    """The whole run in ``path`` (see :class:`RunReader` for reading it in chunks)."""
    return RunReader(path).read()


def sample_chunks(spikes_per_sample: np.ndarray, budget_spikes: int) -> list[tuple[int, int]]:
    """Consecutive ``(lo, hi)`` sample ranges holding at most ``budget_spikes`` spikes each (at least one
    sample per range)."""
    cum = np.concatenate([[0], np.cumsum(spikes_per_sample)])
    out, lo, S = [], 0, len(spikes_per_sample)
    while lo < S:
        hi = int(np.searchsorted(cum, cum[lo] + budget_spikes, "right")) - 1
        hi = min(S, max(hi, lo + 1))
        out.append((lo, hi))
        lo = hi
    return out


def concat_runs(parts: list[RunResult]) -> RunResult:
    """Join runs of consecutive sample chunks (same engine and settings) into one run.

    Sample positions of part ``i`` are shifted by the number of samples before it; attrs are the first part's
    (run-level attrs such as the wall time are the caller's to set).
    """
    if not parts:
        raise ValueError("concat_runs needs at least one run")
    first = parts[0]
    for p in parts[1:]:
        for k in HEADER:
            if getattr(p, k) != getattr(first, k):
                raise ValueError(f"concat_runs: runs differ in {k} ({getattr(first, k)!r} vs {getattr(p, k)!r})")
        if len(p.layers) != len(first.layers):
            raise ValueError("concat_runs: runs differ in their number of hidden layers")
    offsets = np.cumsum([0] + [p.n_samples for p in parts[:-1]])
    layers = []
    for li in range(len(first.layers)):
        Ls = [p.layers[li] for p in parts]
        layers.append(LayerSpikes(np.concatenate([L.sample + o for L, o in zip(Ls, offsets)]),
                                  np.concatenate([L.unit for L in Ls]), np.concatenate([L.step for L in Ls]),
                                  np.concatenate([L.time_ms for L in Ls])))
    return RunResult(first.engine, first.dt_ms, first.train_dt_ms, first.delays, first.inputs, first.target,
                     first.readout, layers, np.concatenate([p.trace for p in parts]),
                     np.concatenate([p.prediction for p in parts]), np.concatenate([p.labels for p in parts]),
                     np.concatenate([p.sample_index for p in parts]), dict(first.attrs))


def run_sample_chunks(fn, make_job, events, indices, workers: int, desc: str, progress: bool = False,
                      scheduler: str | None = None):
    """Cut ``indices`` into ``workers`` consecutive chunks, run ``fn(make_job(i, events.subset(chunk)))`` for each
    on the :class:`Pool`, and join the resulting runs in order (identical to one process: samples never
    interact). ``fn`` must be importable (it travels to the workers by name)."""
    from eventsnn.util.dask_pool import Pool

    chunks = [c for c in np.array_split(np.asarray(indices), workers) if len(c)]
    jobs = [make_job(i, events.subset(c)) for i, c in enumerate(chunks)]
    with Pool(len(jobs), scheduler) as pool, \
            progress_bar(total=len(jobs), desc=desc, disable=not progress) as bar:
        parts = pool.map(fn, jobs, bar)
    run = concat_runs(parts)
    run.sample_index = np.asarray(indices).copy()
    run.labels = events.labels[indices].copy()
    run.attrs["workers"] = len(jobs)
    return run
