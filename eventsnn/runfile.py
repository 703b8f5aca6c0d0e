"""The run file (``format="eventsnn.run"``): what one simulation produced.

Written by ``eventsnn simulate`` (and ``verify``) for either engine. Hidden
layer spikes as flat ``sample, unit, step, time_ms`` arrays; the readout trace
sampled on the training grid; predictions and labels.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .errors import atomic_path, fail, open_h5

RUN_FORMAT = "eventsnn.run"
RUN_VERSION = 1


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
    engine: str                 # "torch" | "brian2"
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


def save_run(run: RunResult, path) -> None:
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = RUN_FORMAT
            f.attrs["version"] = RUN_VERSION
            for k in ("engine", "dt_ms", "train_dt_ms", "delays", "inputs", "target", "readout"):
                f.attrs[k] = getattr(run, k)
            f.attrs["accuracy"] = run.accuracy
            for k, v in run.attrs.items():
                f.attrs[k] = v if isinstance(v, (int, float, str, bool, np.integer, np.floating)) else json.dumps(v)
            for i, L in enumerate(run.layers):
                g = f.create_group(f"layers/{i}")
                for name in ("sample", "unit", "step"):
                    g.create_dataset(name, data=getattr(L, name).astype(np.int64))
                g.create_dataset("time_ms", data=L.time_ms.astype(np.float64))
            f.create_dataset("output/trace", data=run.trace.astype(np.float64))
            f.create_dataset("output/prediction", data=run.prediction.astype(np.int64))
            f.create_dataset("labels", data=run.labels.astype(np.int64))
            f.create_dataset("sample_index", data=run.sample_index.astype(np.int64))


def load_run(path) -> RunResult:
    f = open_h5(path, RUN_FORMAT)
    with f:
        try:
            base = {k: f.attrs[k] for k in ("engine", "dt_ms", "train_dt_ms", "delays", "inputs", "target", "readout")}
            layers = []
            n = len(f["layers"]) if "layers" in f else 0
            for i in range(n):
                g = f[f"layers/{i}"]
                layers.append(LayerSpikes(*(np.asarray(g[k][()]) for k in ("sample", "unit", "step", "time_ms"))))
            trace = np.asarray(f["output/trace"][()])
            pred = np.asarray(f["output/prediction"][()])
            labels = np.asarray(f["labels"][()])
            sidx = np.asarray(f["sample_index"][()])
        except KeyError as e:
            raise fail(path, f"missing {e} in run file") from None
        known = set(base) | {"format", "version", "accuracy"}
        attrs = {}
        for k, v in f.attrs.items():
            if k in known:
                continue
            v = v.item() if hasattr(v, "item") else v
            if isinstance(v, str) and v[:1] in "[{":
                try:
                    v = json.loads(v)
                except ValueError:
                    pass
            attrs[k] = v
    if trace.ndim != 3 or trace.shape[0] != len(labels) or pred.shape != labels.shape:
        raise fail(path, f"inconsistent shapes: trace {list(trace.shape)}, prediction {list(pred.shape)}, "
                         f"labels {list(labels.shape)}")
    return RunResult(str(base["engine"]), float(base["dt_ms"]), float(base["train_dt_ms"]), str(base["delays"]),
                     str(base["inputs"]), str(base["target"]), str(base["readout"]), layers, trace, pred, labels,
                     sidx, attrs)


def concat_runs(parts: list[RunResult]) -> RunResult:
    """Join runs of consecutive sample chunks (same engine and settings) into one run.

    Sample positions of part ``i`` are shifted by the number of samples before it; attrs are the first part's
    (run-level attrs such as the wall time are the caller's to set).
    """
    if not parts:
        raise ValueError("concat_runs needs at least one run")
    first = parts[0]
    for p in parts[1:]:
        for k in ("engine", "dt_ms", "train_dt_ms", "delays", "inputs", "target", "readout"):
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
