"""Spike events: the ragged in-memory container, the one binning rule, HDF5 I/O.

Times are continuous (float64 seconds in files and in :class:`Events`), never
locked to a grid. The *only* place where times become integer steps is
:func:`time_to_step`; everything else (the torch engine, the Brian2 bridge,
tests) calls it or :func:`bin_events`, which keeps every spike (a count per
unit and step); a binary raster (training's convention) is derived from it and
warns when it merges spikes.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

import numpy as np

from eventsnn.model.contract import grid_ratio
from eventsnn.util.errors import MergedSpikesWarning, fail
from eventsnn.util.files import atomic_path, open_h5

EVENTS_FORMAT = "eventsnn.events"
EVENTS_VERSION = 1

# Brian2's SpikeGeneratorGroup rule: a spike at t falls into step floor(t/dt + 1e-3).
_BIN_SHIFT = 1e-3


def time_to_step(times_ms, dt_ms: float) -> np.ndarray:
    """Step index of spike times (ms) at step size ``dt_ms``: ``floor(t/dt + 1e-3)``."""
    return np.floor(np.asarray(times_ms, dtype=np.float64) / dt_ms + _BIN_SHIFT).astype(np.int64)


def duration_from_last_spike(last_s: float) -> float:
    """A sample duration for files that do not record one: the last spike time rounded up to the next 0.1 s
    (at least 0.1 s), as for the official SHD/SSC files."""
    return max(0.1, math.ceil(float(last_s) * 10 + 1e-9) / 10)


def n_steps(duration_ms: float, dt_ms: float) -> int:
    """Number of simulation steps covering ``[0, duration)`` at ``dt_ms``."""
    return int(math.ceil(duration_ms / dt_ms - _BIN_SHIFT))


def sort_samples(times, units, offs):
    """Each sample's spikes (concatenated; ``offs`` its offsets) sorted by time, then unit, as a per-sample
    ``lexsort((units, times))`` gives. Samples whose times already rise (SHD's files: only the units of equal times
    out of order) are put in order by one stable sort of a nearly sorted key; the others one by one."""
    d = np.diff(times)
    inside = np.ones(len(d), bool)   # pairs within one sample
    cut = offs[1:-1]
    inside[cut[(cut > 0) & (cut < len(times))] - 1] = False
    falls = inside & ~(d >= 0)        # a time that falls (or NaN): that sample is sorted on its own
    ties = inside & (d == 0) & (np.diff(units) < 0)
    if not ties.any() and not falls.any():
        return times, units
    if ties.any() and len(units) and units.min() >= 0:
        group = np.empty(len(times), np.int64)   # runs of equal times within a sample
        group[0] = 0
        np.cumsum((d != 0) | ~inside, out=group[1:])
        width = int(units.max()) + 1
        if (int(group[-1]) + 1) * width < 2 ** 62:
            o = np.argsort(group * width + units, kind="stable")
            times, units = times[o], units[o]
        else:
            falls = falls | ties
    else:
        falls = falls | ties
    for i in np.unique(np.searchsorted(offs, np.flatnonzero(falls), side="right") - 1):
        a, b = offs[i], offs[i + 1]
        o = np.lexsort((units[a:b], times[a:b]))
        times[a:b], units[a:b] = times[a:b][o], units[a:b][o]
    return times, units


@dataclass
class Events:
    """Many samples of spike events, stored flat.

    ``times`` (float64, seconds) and ``units`` (int64) are concatenated over
    samples; sample ``i`` owns ``times[offsets[i]:offsets[i+1]]``. ``speakers``: one id per sample (the SHD
    layout's ``extra/speaker``), or None where the source has none; selections and transforms carry it.
    """

    times: np.ndarray
    units: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    n_units: int
    duration_s: float
    n_classes: int
    class_names: list[str] | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)
    speakers: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    @property
    def duration_ms(self) -> float:
        return self.duration_s * 1e3

    def sample_index(self) -> np.ndarray:
        """Sample index of every spike (same length as ``times``)."""
        return np.repeat(np.arange(len(self.labels)), np.diff(self.offsets))

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.times[a:b], self.units[a:b]

    def counts(self) -> np.ndarray:
        """Spike counts per sample and unit, shape [S, n_units]."""
        c = np.zeros((len(self), self.n_units), dtype=np.int64)
        np.add.at(c, (self.sample_index(), self.units), 1)
        return c

    def subset(self, idx) -> "Events":
        idx = np.asarray(idx, dtype=np.int64)
        lengths = np.diff(self.offsets)[idx]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        take = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx]) if len(idx) else np.zeros(0, np.int64)
        return Events(self.times[take], self.units[take], offsets, self.labels[idx].copy(),
                      self.n_units, self.duration_s, self.n_classes, self.class_names, self.source,
                      dict(self.meta), None if self.speakers is None else self.speakers[idx].copy())

    @classmethod
    def concat(cls, parts: list["Events"]) -> "Events":
        """Samples of several Events objects (same units) one after another; duration and classes the largest."""
        lengths = np.concatenate([np.diff(p.offsets) for p in parts])
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        first = parts[0]
        return cls(np.concatenate([p.times for p in parts]), np.concatenate([p.units for p in parts]), offsets,
                   np.concatenate([p.labels for p in parts]), first.n_units, max(p.duration_s for p in parts),
                   max(p.n_classes for p in parts), first.class_names, first.source, dict(first.meta),
                   None if any(p.speakers is None for p in parts) else np.concatenate([p.speakers for p in parts]))

    def replace(self, times=None, units=None, offsets=None, **kw) -> "Events":
        """A copy with new flat arrays (and any other field changed)."""
        fields = dict(times=self.times if times is None else times,
                      units=self.units if units is None else units,
                      offsets=self.offsets if offsets is None else offsets,
                      labels=self.labels, n_units=self.n_units, duration_s=self.duration_s,
                      n_classes=self.n_classes, class_names=self.class_names,
                      source=self.source, meta=dict(self.meta), speakers=self.speakers)
        fields.update(kw)
        return Events(**fields)

    @classmethod
    def from_lists(cls, times_list, units_list, labels, n_units, duration_s, n_classes=None,
                   class_names=None, source="", sort=True) -> "Events":
        """Build from per-sample lists of times (s) and units; sorts each sample by time, then unit (only the
        samples that are not in that order already: files written by eventsnn are)."""
        ts = [np.asarray(t, dtype=np.float64).ravel() for t in times_list]
        us = [np.asarray(u, dtype=np.int64).ravel() for u in units_list]
        offs = np.zeros(len(ts) + 1, np.int64)
        offs[1:] = np.cumsum([len(t) for t in ts])
        times = np.concatenate(ts) if ts else np.zeros(0)
        units = np.concatenate(us) if us else np.zeros(0, np.int64)
        if sort and len(times) > 1:
            times, units = sort_samples(times, units, offs)
        labels = np.asarray(labels, dtype=np.int64)
        if n_classes is None:
            n_classes = int(labels.max()) + 1 if len(labels) else 0
        ev = cls(times, units, offs, labels, int(n_units), float(duration_s), int(n_classes),
                 list(class_names) if class_names is not None else None, source)
        return ev

    TONIC_DTYPE = np.dtype([("t", np.int64), ("x", np.int64), ("p", np.int64)])

    def to_tonic(self, i: int) -> np.ndarray:
        """Sample ``i`` as tonic's audio event array: fields ``t`` (integer microseconds, tonic's unit for
        SHD; times are rounded to 1 us), ``x`` (unit), ``p`` (always 1)."""
        t, u = self.sample(i)
        out = np.zeros(len(t), self.TONIC_DTYPE)
        out["t"], out["x"], out["p"] = np.round(t * 1e6).astype(np.int64), u, 1
        return out

    @classmethod
    def from_tonic(cls, samples, labels, n_units: int, duration_s: float | None = None, n_classes=None,
                   class_names=None, source: str = "tonic") -> "Events":
        """Events from tonic event arrays (fields ``t`` in microseconds and ``x``; any ``p`` ignored).

        ``duration_s`` defaults to the last spike rounded up to the next 0.1 s (as for official SHD files).
        """
        times = [np.asarray(s["t"], np.float64) * 1e-6 for s in samples]
        units = [np.asarray(s["x"], np.int64) for s in samples]
        if duration_s is None:
            last = max((t.max() for t in times if len(t)), default=0.0)
            duration_s = duration_from_last_spike(last)
        return cls.from_lists(times, units, labels, n_units, duration_s, n_classes, class_names, source).validate()

    def validate(self, path=None) -> "Events":
        """Check shapes, finiteness and ranges; raise :class:`EventsnnError` naming ``path``."""
        if self.times.shape != self.units.shape:
            raise fail(path, f"spikes/times and spikes/units differ in length ({len(self.times)} vs {len(self.units)})")
        if len(self.offsets) != len(self.labels) + 1 or self.offsets[0] != 0 or self.offsets[-1] != len(self.times) \
                or np.any(np.diff(self.offsets) < 0):
            raise fail(path, "inconsistent per-sample offsets")
        if not (np.isfinite(self.duration_s) and self.duration_s > 0):
            raise fail(path, f"duration_s must be a positive number, got {self.duration_s}")
        if self.n_units <= 0:
            raise fail(path, f"n_units must be positive, got {self.n_units}")
        if len(self.times):
            if not np.all(np.isfinite(self.times)):
                raise fail(path, "spike times contain NaN or inf")
            if self.times.min() < 0:
                raise fail(path, f"negative spike time {self.times.min():g} s")
            if self.times.max() >= self.duration_s:
                raise fail(path, f"spike time {self.times.max():g} s at or after the duration {self.duration_s:g} s")
            if self.units.min() < 0 or self.units.max() >= self.n_units:
                bad = self.units.min() if self.units.min() < 0 else self.units.max()
                raise fail(path, f"unit index {bad} out of range [0, {self.n_units})")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= self.n_classes):
            raise fail(path, f"label out of range [0, {self.n_classes}): {self.labels.min()}..{self.labels.max()}")
        if self.speakers is not None:
            self.speakers = np.asarray(self.speakers, np.int64)
            if self.speakers.shape != self.labels.shape:
                raise fail(path, f"speakers: {self.speakers.size} ids for {len(self.labels)} samples")
        return self


@dataclass
class Binned:
    """Spikes on a grid: one entry per occupied (sample, step, unit), with the spike ``count`` there.

    Sorted by sample, step, unit. ``sample`` counts positions in the ``indices`` binned. ``dropped``:
    spikes at or after the duration (left out); ``merged``: spikes that share their (sample, step, unit)
    with an earlier one (``count - 1`` summed), which a binary raster loses.
    """

    sample: np.ndarray
    step: np.ndarray
    unit: np.ndarray
    count: np.ndarray
    n_samples: int
    n_steps: int
    dt_ms: float
    n_spikes: int
    dropped: int
    merged_away: int = 0

    @property
    def merged(self) -> int:
        """Spikes sharing their (sample, step, unit) with another: lost by a binary raster."""
        return int(self.count.sum() - len(self.count)) + self.merged_away

    def binary(self) -> "Binned":
        """The same spikes with every count set to 1 (what a binary raster holds); ``merged`` remembers the loss."""
        return replace(self, count=np.ones_like(self.count), merged_away=self.merged)


def warn_merged(merged: int, n_spikes: int, dt_ms: float, what: str = "input") -> None:
    """Warn (:class:`EventsnnWarning`) that a binary raster merged spikes, with count and fraction."""
    if merged or os.environ.get("EVENTSNN_WORKER"):  # a worker reports even 0 merges: its share of the total
        import warnings
        warnings.warn(MergedSpikesWarning(merged, n_spikes, dt_ms, what), stacklevel=2)


def bin_events(events: Events, dt_ms: float, indices=None) -> Binned:
    """Bin spikes onto the grid of step ``dt_ms`` (the one binning rule, :func:`time_to_step`).

    Every spike is kept: several spikes of one unit in one step give one entry with their ``count``.
    Spikes at or after the duration are dropped (counted in ``dropped``).
    """
    if indices is None:
        indices = np.arange(len(events))
    indices = np.asarray(indices, dtype=np.int64)
    K = n_steps(events.duration_ms, dt_ms)
    lengths = np.diff(events.offsets)[indices]
    pos = np.concatenate([np.arange(events.offsets[i], events.offsets[i + 1]) for i in indices]) \
        if len(indices) else np.zeros(0, np.int64)
    sample = np.repeat(np.arange(len(indices)), lengths)
    step = time_to_step(events.times[pos] * 1e3, dt_ms)
    unit = events.units[pos]
    keep = (step < K) & (step >= 0)
    n_total = len(step)
    sample, step, unit = sample[keep], step[keep], unit[keep]
    key = (sample * K + step) * events.n_units + unit
    key, count = np.unique(key, return_counts=True)
    unit = key % events.n_units
    step = (key // events.n_units) % K
    sample = key // (events.n_units * K)
    return Binned(sample, step, unit, count.astype(np.int64), len(indices), K, float(dt_ms), int(n_total),
                  int(n_total - keep.sum()))


# ----------------------------------------------------------------------------- I/O

def save_events(events: Events, path) -> None:
    """Write ``events`` in the SHD layout with ``format="eventsnn.events"`` (atomically); ``extra/speaker`` holds
    ``events.speakers`` (0 for every sample when they are unknown)."""
    import h5py

    events.validate(path)
    speakers = np.zeros(len(events), np.int64) if events.speakers is None else events.speakers
    vt = h5py.vlen_dtype(np.float64)
    vu = h5py.vlen_dtype(np.int32)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = EVENTS_FORMAT
            f.attrs["version"] = EVENTS_VERSION
            f.attrs["n_units"] = events.n_units
            f.attrs["duration_s"] = events.duration_s
            f.attrs["n_classes"] = events.n_classes
            f.attrs["source"] = events.source
            if events.class_names is not None:
                f.attrs["class_names"] = np.array(events.class_names, dtype=h5py.string_dtype())
            for k, v in events.meta.items():
                f.attrs[f"meta_{k}"] = v
            n = len(events)
            dt_ = f.create_dataset("spikes/times", (n,), dtype=vt)
            du = f.create_dataset("spikes/units", (n,), dtype=vu)
            for i in range(n):
                t, u = events.sample(i)
                dt_[i] = t
                du[i] = u.astype(np.int32)
            f.create_dataset("labels", data=events.labels.astype(np.int64))
            # what tonic's SHD reader also expects (class names, one speaker id per sample)
            names = events.class_names or [str(c) for c in range(events.n_classes)]
            f.create_dataset("extra/keys", data=np.array(names, dtype=h5py.string_dtype()))
            f.create_dataset("extra/speaker", data=speakers)


def read_speakers(f, n_samples: int, path) -> np.ndarray | None:
    """The ``extra/speaker`` ids of an open SHD-layout file (int64, one per sample), None when it has none; a
    dataset of another length or type is an error naming ``path``."""
    if "extra/speaker" not in f:
        return None
    speakers = np.asarray(f["extra/speaker"][()]).ravel()
    if speakers.shape != (n_samples,) or speakers.dtype.kind not in "iu":
        raise fail(path, f"extra/speaker: expected {n_samples} integer ids (one per sample), got "
                         f"{speakers.size} of type {speakers.dtype}")
    return speakers.astype(np.int64)


def load_events(path) -> Events:
    """Read an events file: ours (``format="eventsnn.events"``) or an official SHD/SSC file.

    Official files have no ``format`` attribute, may store times as float16 and
    carry no ``n_units``/``duration_s``: SHD/SSC have 700 channels; the duration
    is the last spike time rounded up to the next 0.1 s.
    """
    f = open_h5(path)
    with f:
        fmt = f.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt is not None and fmt != EVENTS_FORMAT:
            raise fail(path, f"format attribute is {fmt!r}, expected {EVENTS_FORMAT!r} (or an official SHD/SSC file)")
        for key in ("spikes/times", "spikes/units", "labels"):
            if key not in f:
                raise fail(path, f"missing dataset '{key}' (expected the SHD layout: spikes/times, spikes/units, labels)")
        try:
            times_list = [np.asarray(t, dtype=np.float64) for t in f["spikes/times"][:]]
            units_list = [np.asarray(u, dtype=np.int64) for u in f["spikes/units"][:]]
            raw_labels = np.asarray(f["labels"][:]).ravel()
            if raw_labels.dtype.kind not in "iub" and not (
                    raw_labels.dtype.kind == "f" and np.all(np.isfinite(raw_labels))
                    and np.all(raw_labels == np.round(raw_labels))):
                bad = raw_labels[:5].tolist()
                raise fail(path, f"labels must be whole numbers, got {raw_labels.dtype} values such as {bad}")
            labels = raw_labels.astype(np.int64)
        except (OSError, KeyError, RuntimeError):
            raise fail(path, "damaged HDF5 file: the spike data cannot be read") from None
        except (TypeError, ValueError) as e:
            raise fail(path, f"cannot read spikes ({' '.join(str(e).split())})") from None
        if not (len(times_list) == len(units_list) == len(labels)):
            raise fail(path, f"spikes/times ({len(times_list)}), spikes/units ({len(units_list)}) and labels "
                             f"({len(labels)}) differ in number of samples")
        if len(labels) == 0:
            raise fail(path, "contains no samples")
        for i, (t, u) in enumerate(zip(times_list, units_list)):
            if t.shape != u.shape:
                raise fail(path, f"sample {i}: {len(t)} times but {len(u)} units")
        all_t = np.concatenate(times_list)
        speakers = read_speakers(f, len(labels), path)
        if fmt == EVENTS_FORMAT:
            try:
                n_units = int(f.attrs["n_units"])
                duration_s = float(f.attrs["duration_s"])
                n_classes = int(f.attrs["n_classes"])
            except KeyError as e:
                raise fail(path, f"missing attribute {e}") from None
            names = f.attrs.get("class_names")
            class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names is not None else None
            source = str(f.attrs.get("source", ""))
            meta = {k[5:]: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items() if k.startswith("meta_")}
        else:  # official SHD / SSC
            n_units = 700
            finite = all_t[np.isfinite(all_t)]
            duration_s = duration_from_last_spike(finite.max() if len(finite) else 0.0)
            n_classes = int(labels.max()) + 1 if len(labels) else 0
            class_names = None
            source = "shd-official"
            meta = {}
    if len(all_t) and not np.all(np.isfinite(all_t)):
        raise fail(path, "spike times contain NaN or inf")
    if len(all_t) and all_t.min() < 0:
        raise fail(path, f"negative spike time {all_t.min():g} s")
    ev = Events.from_lists(times_list, units_list, labels, n_units, duration_s, n_classes, class_names, source)
    ev.meta, ev.speakers = meta, speakers
    return ev.validate(path)


INPUT_MODES = ("binned", "exact")


def bin_for_run(events: Events, indices, dt_ms: float, train_dt_ms: float, inputs: str) -> Binned:
    """Input spikes on a simulation grid ``dt_ms`` that divides the training dt.

    ``inputs="binned"``: what training saw -- a binary raster at the training dt (spikes of one unit in
    one training step merged; ``merged`` says how many, the caller warns), placed on the finer grid at the start of their training
    step. ``inputs="exact"``: spikes binned at ``dt_ms`` itself with their multiplicity (every spike is
    delivered; as close to the real times as the simulation grid allows). ``n_steps`` of the result is
    training steps * ratio.
    """

    r = grid_ratio(train_dt_ms, dt_ms)
    if inputs == "binned":
        b = bin_events(events, train_dt_ms, indices).binary()
        return replace(b, step=b.step * r, n_steps=b.n_steps * r, dt_ms=dt_ms)
    if inputs == "exact":
        K = n_steps(events.duration_ms, train_dt_ms) * r
        b = bin_events(events, dt_ms, indices)
        keep = b.step < K
        return replace(b, sample=b.sample[keep], step=b.step[keep], unit=b.unit[keep], count=b.count[keep],
                       n_steps=K, dropped=b.dropped + int(b.count[~keep].sum()))
    raise ValueError(f"unknown input mode {inputs!r}; choose one of {', '.join(INPUT_MODES)}")
