"""Transforms on events, as small composable callables (tonic's style).

Each transform takes an :class:`~eventsnn.data.events.Events` and returns a new
one; randomness comes from the transform's own ``seed``, so the same transform
applied in two engines gives the same spikes. Spikes moved outside
``[0, duration)`` by jitter are dropped (counted in ``meta``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eventsnn.util.errors import EventsnnError
from eventsnn.data.events import Events


def _random_rank(key: np.ndarray, rng) -> np.ndarray:
    """For each element, its position in a random order among the elements with the same key."""
    order = np.lexsort((rng.random(len(key)), key))
    k_sorted = key[order]
    starts = np.r_[0, np.flatnonzero(np.diff(k_sorted)) + 1] if len(key) else np.zeros(0, np.int64)
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(key)]))
    rank = np.empty(len(key), np.int64)
    rank[order] = np.arange(len(key)) - group_start
    return rank


def _rebuild(ev: Events, sample: np.ndarray, times_s: np.ndarray, units: np.ndarray, **kw) -> Events:
    """Events from flat (sample, time, unit), sorted by sample then time then unit; drops out-of-range times."""
    keep = (times_s >= 0) & (times_s < ev.duration_s)
    sample, times_s, units = sample[keep], times_s[keep], units[keep]
    order = np.lexsort((units, times_s, sample))
    sample, times_s, units = sample[order], times_s[order], units[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(sample, minlength=len(ev)))]).astype(np.int64)
    out = ev.replace(times=times_s, units=units.astype(np.int64), offsets=offsets, **kw)
    out.meta["dropped_spikes"] = int(out.meta.get("dropped_spikes", 0)) + int((~keep).sum())
    return out


@dataclass(frozen=True)
class Reverse:
    """Time reversal. ``window``: t -> t_first + t_last - t within each sample (the paper's);
    ``full``: t -> duration - t (the whole sample; a spike at exactly 0 lands just below the duration);
    ``max``: t -> t_last - t (tonic's ``TimeReversal``)."""
    mode: str = "window"

    def __post_init__(self):
        if self.mode not in ("window", "full", "max"):
            raise EventsnnError(f"unknown reversal {self.mode!r}; choose 'window', 'full' or 'max'")

    def __call__(self, ev: Events) -> Events:
        s = ev.sample_index()
        t = ev.times
        if self.mode in ("window", "max"):
            if len(t):
                first = np.minimum.reduceat(t, ev.offsets[:-1].clip(max=len(t) - 1))
                last = np.maximum.reduceat(t, ev.offsets[:-1].clip(max=len(t) - 1))
                new = (first[s] if self.mode == "window" else 0.0) + last[s] - t
            else:
                new = t.copy()
        else:  # "full"
            new = np.minimum(ev.duration_s - t, np.nextafter(ev.duration_s, 0))
        return _rebuild(ev, s, new, ev.units.copy())

    @property
    def name(self):
        return f"reverse-{self.mode}"


@dataclass(frozen=True)
class Jitter:
    """Gaussian jitter of ``sigma_ms``: independently per spike, or one offset per unit and sample (``per="neuron"``)."""
    sigma_ms: float
    per: str = "spike"
    seed: int = 0

    def __post_init__(self):
        if not (np.isfinite(self.sigma_ms) and self.sigma_ms >= 0):
            raise EventsnnError(f"jitter must be a non-negative number of ms, got {self.sigma_ms:g}")
        if self.per not in ("spike", "neuron"):
            raise EventsnnError(f"jitter per {self.per!r}: choose 'spike' or 'neuron'")

    def __call__(self, ev: Events) -> Events:
        rng = np.random.default_rng(self.seed)
        s = ev.sample_index()
        if self.per == "spike":
            dt = rng.normal(0, self.sigma_ms, len(ev.times))
        elif self.per == "neuron":
            dt = rng.normal(0, self.sigma_ms, (len(ev), ev.n_units))[s, ev.units]
        else:
            raise EventsnnError(f"jitter per {self.per!r}: choose 'spike' or 'neuron'")
        return _rebuild(ev, s, ev.times + dt * 1e-3, ev.units.copy())

    @property
    def name(self):
        return f"jitter{'-neuron' if self.per == 'neuron' else ''}-{self.sigma_ms:g}ms"


@dataclass(frozen=True)
class Delete:
    """Delete each spike independently with probability ``p``."""
    p: float
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise EventsnnError(f"deletion probability must be in [0, 1], got {self.p:g}")

    def __call__(self, ev: Events) -> Events:
        keep = np.random.default_rng(self.seed).random(len(ev.times)) >= self.p
        return _rebuild(ev, ev.sample_index()[keep], ev.times[keep], ev.units[keep])

    @property
    def name(self):
        return f"delete-{self.p:g}"


@dataclass(frozen=True)
class RandomizeTiming:
    """Move a fraction ``f`` of each unit's spikes (per sample) to uniform random times; counts are kept."""
    f: float
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.f <= 1.0:
            raise EventsnnError(f"randomised fraction must be in [0, 1], got {self.f:g}")

    def __call__(self, ev: Events) -> Events:
        rng = np.random.default_rng(self.seed)
        s = ev.sample_index()
        key = s * ev.n_units + ev.units
        rank = _random_rank(key, rng)  # random order within each (sample, unit)
        counts = np.bincount(key, minlength=len(ev) * ev.n_units)[key]
        move = rank < np.round(self.f * counts)
        t = ev.times.copy()
        t[move] = rng.uniform(0, ev.duration_s, int(move.sum()))
        return _rebuild(ev, s, t, ev.units.copy())

    @property
    def name(self):
        return f"randomize-{self.f:g}"


@dataclass(frozen=True)
class RemoveRate:
    """The paper's rate-removal ("norm") construction, on events.

    1. Count spikes per (sample, unit). For each unit, N_f = its minimum count over samples.
    2. A unit with N_f < ``floor`` is "bad". If raising it to ``floor`` costs dropping at most
       ``max_drop_fraction`` of the samples (those where the unit fires fewer than ``floor``
       spikes), those samples are dropped and N_f recomputed; otherwise the unit is removed.
    3. In every remaining sample keep exactly N_f randomly chosen spikes of each unit.
    4. Drop units left with N_f = 0, renumbering the rest.
    5. Class-balance by random undersampling to the smallest class.

    Afterwards every unit has the same count in every sample: counts carry no information.
    """
    floor: int = 2
    max_drop_fraction: float = 0.01
    seed: int = 0

    def __call__(self, ev: Events) -> Events:
        rng = np.random.default_rng(self.seed)
        counts = ev.counts()
        keep_samples = np.ones(len(ev), bool)
        keep_units = np.ones(ev.n_units, bool)
        for u in range(ev.n_units):
            low = counts[:, u] < self.floor
            if not low.any():
                continue
            if (keep_samples & low).sum() <= self.max_drop_fraction * len(ev):
                keep_samples &= ~low
            else:
                keep_units[u] = False
        if not keep_samples.any():
            raise EventsnnError("remove-rate would drop every sample")
        Nf = np.where(keep_units, counts[keep_samples].min(axis=0), 0)
        keep_units &= Nf > 0
        if not keep_units.any():
            raise EventsnnError("remove-rate leaves no unit with a spike in every sample")
        # class balance
        idx = np.flatnonzero(keep_samples)
        labels = ev.labels[idx]
        present = np.unique(labels)
        m = min((labels == c).sum() for c in present)
        chosen = np.sort(np.concatenate([rng.choice(idx[labels == c], m, replace=False) for c in present]))
        sub = ev.subset(chosen)
        s = sub.sample_index()
        u = sub.units
        ok = keep_units[u]
        s, t, u = s[ok], sub.times[ok], u[ok]
        sel = _random_rank(s * ev.n_units + u, rng) < Nf[u]
        newid = np.cumsum(keep_units) - 1
        out = _rebuild(sub.replace(n_units=int(keep_units.sum())), s[sel], t[sel], newid[u[sel]])
        out.meta["remove_rate_units"] = int(keep_units.sum())
        out.meta["remove_rate_spikes_per_sample"] = int(Nf[keep_units].sum())
        return out

    @property
    def name(self):
        return "remove-rate"


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, ev: Events) -> Events:
        for t in self.transforms:
            ev = t(ev)
        return ev

    @property
    def name(self):
        return "+".join(t.name for t in self.transforms) or "none"


PROBES = ("reverse", "reverse-window", "reverse-full", "reverse-max", "jitter", "jitter-neuron", "delete",
          "randomize")


def parse_probes(spec: str) -> list:
    """Transforms named on the command line: ``reverse`` (window and full), ``jitter[:MS]``,
    ``jitter-neuron[:MS]``, ``delete[:P]``, ``randomize[:F]``, ``reverse-window``, ``reverse-full``,
    ``reverse-max`` (tonic's t -> max(t) - t)."""
    out = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        name, _, arg = item.partition(":")
        try:
            val = float(arg) if arg else None
        except ValueError:
            raise EventsnnError(f"probe {item!r}: {arg!r} is not a number") from None
        if name == "reverse":
            out += [Reverse("window"), Reverse("full")]
        elif name in ("reverse-window", "reverse-full", "reverse-max"):
            out.append(Reverse(name.split("-")[1]))
        elif name == "jitter":
            out.append(Jitter(1.0 if val is None else val))
        elif name == "jitter-neuron":
            out.append(Jitter(1.0 if val is None else val, per="neuron"))
        elif name == "delete":
            out.append(Delete(0.1 if val is None else val))
        elif name == "randomize":
            out.append(RandomizeTiming(0.5 if val is None else val))
        else:
            raise EventsnnError(f"unknown probe {name!r}; choose from {', '.join(PROBES)}")
    return out


def transform_by_name(name: str | None):
    """Inverse of ``.name`` for the probes (used to re-create a transform in a worker process)."""
    if name in (None, "none"):
        return None
    for t in parse_probes("reverse,reverse-max") + [Jitter(0)]:
        if t.name == name:
            return t
    import re
    m = re.fullmatch(r"(jitter|jitter-neuron)-([0-9.e+-]+)ms|(delete|randomize)-([0-9.e+-]+)", name)
    if m and m.group(1):
        return Jitter(float(m.group(2)), per="neuron" if m.group(1) == "jitter-neuron" else "spike")
    if m and m.group(3):
        return (Delete if m.group(3) == "delete" else RandomizeTiming)(float(m.group(4)))
    raise EventsnnError(f"unknown transform {name!r}")
