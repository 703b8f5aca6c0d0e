"""Transforms on events, as small composable callables (tonic's style).

Each transform takes an :class:`~eventsnn.data.events.Events` and returns a new
one; randomness comes from the transform's own ``seed``, so the same transform
applied in two engines gives the same spikes. Spikes moved outside
``[0, duration)`` by jitter in ms are dropped (counted in ``meta``). The authors'
rules on a time grid (jitter in bins, timing randomisation) work on the events'
slots: their bins (``meta["bin_ms"]``) or 1 ms.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from eventsnn.data.events import Events, sort_samples, n_steps, time_to_step
from eventsnn.util.errors import EventsnnError


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
    if len(sample) > 1 and not (sample[1:] >= sample[:-1]).all():  # transforms keep samples together: rarely
        order = np.argsort(sample, kind="stable")
        sample, times_s, units = sample[order], times_s[order], units[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(sample, minlength=len(ev)))]).astype(np.int64)
    times_s, units = sort_samples(times_s, units, offsets)  # as lexsort((units, times, sample)), per sample
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
        # every mode maps a sample's rising times to falling ones: flipping each sample puts them back in order
        # (equal times then sorted by unit), as _rebuild would too, after a check of every sample
        flip = ev.offsets[s] + ev.offsets[s + 1] - 1 - np.arange(len(t))
        new, units = new[flip], ev.units[flip]
        keep = (new >= 0) & (new < ev.duration_s)
        if not keep.all():
            return _rebuild(ev, s, new, units)
        new, units = sort_samples(new, units, ev.offsets)
        out = ev.replace(times=new, units=units.astype(np.int64), offsets=ev.offsets.copy())
        out.meta["dropped_spikes"] = int(out.meta.get("dropped_spikes", 0))
        return out

    @property
    def spec(self):
        return f"reverse:{self.mode}"

    name = property(lambda self: _slug(self.spec))


def _grid(ev: Events, what: str, need_bins: bool) -> tuple[float, int]:
    """(slot width in ms, number of slots) of the events' time grid: their bins (``meta["bin_ms"]``, which
    ``data prepare`` and the norm readers write), else 1 ms (the grid of the synthetic tasks)."""
    w = ev.meta.get("bin_ms")
    if w is None:
        if need_bins:
            raise EventsnnError(f"{what} in bins needs binned events (eventsnn data prepare and the norm files record "
                                "their bin width); these events have no bins: give it in ms")
        w = 1.0
    w = float(w)
    return w, n_steps(ev.duration_ms, w)


def _on_grid(ev: Events, w: float, T: int) -> np.ndarray:
    """Each spike's slot (0..T-1)."""
    return np.clip(time_to_step(ev.times * 1e3, w), 0, T - 1)


def _groups(ev: Events) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per spike: its (sample, unit) group as a dense id, and its rank in time order inside the group; plus the
    spikes ordered group by group (time order inside each group)."""
    key = ev.sample_index() * ev.n_units + ev.units
    gid = np.unique(key, return_inverse=True)[1].astype(np.int64) if len(key) else np.zeros(0, np.int64)
    order = np.argsort(gid, kind="stable")  # events are time-sorted inside a sample, so inside a group too
    gs = gid[order]
    rank = np.empty(len(gid), np.int64)
    rank[order] = np.arange(len(gid)) - np.searchsorted(gs, gs, side="left")
    return gid, rank, order


def _chunks(gid: np.ndarray, order: np.ndarray, T: int):
    """(first group, number of groups, their spikes group by group) for blocks of groups whose occupancy
    matrix [groups, T] stays near 16 M cells."""
    if not len(gid):
        return
    G, C = int(gid.max()) + 1, max(1, (1 << 24) // T)
    gs = gid[order]
    for a in range(0, G, C):
        lo, hi = np.searchsorted(gs, [a, a + C])
        yield a, min(C, G - a), order[lo:hi]


def _from_grid(ev: Events, slot, new, w: float, keep=None) -> Events:
    """Events with each spike moved from ``slot`` to ``new`` (keeping its position inside the slot; kept inside
    the sample), dropping ``~keep``."""
    moved = new != slot
    t = ev.times.copy()
    t[moved] = np.minimum(t[moved] + (new[moved] - slot[moved]) * w * 1e-3, np.nextafter(ev.duration_s, 0))
    s, u = ev.sample_index(), ev.units
    if keep is not None:
        s, t, u = s[keep], t[keep], u[keep]
    return _rebuild(ev, s, t, u.copy())


_NUM = r"(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
_UNIT = r"(ms|bins?)?"


@dataclass(frozen=True)
class Jitter:
    """Gaussian jitter: independently per spike, or one offset per unit and sample (``per="neuron"``), plus a fixed
    shift ``offset`` (same unit).

    ``unit="ms"`` (ours, continuous): t -> t + offset + N(0, sigma) ms; spikes leaving [0, duration) are dropped.

    ``unit="bins"`` (the authors' rules, on the events' bin grid, ``meta["bin_ms"]``; a spike keeps its position
    inside its bin; T = the sample's bins, 200 for ``data prepare``'s speech as their padded raster):

    * per spike (their ``jitter_per_spike``): each unit's spikes in time order go to
      clip(round(b + N(0, sigma)), 0, T - 1), redrawn until the bin is free of the unit's spikes already placed,
      at most 500 draws; then the original bin (a spike meeting an occupied bin there merges into it).
    * per neuron (their ``jitter_per_neuron``, offset 20 bins in the paper): d = round(N(0, sigma)) per unit and
      sample; every spike of the unit goes to clip(b + offset + d, 0, T - 1); spikes landing in one bin merge.

    Spelled (``name``, and ``parse_probes`` reads it back) ``jitter-5ms``, ``jitter-5bins``,
    ``jitter-neuron-5bins+20bins``.
    """
    sigma: float
    per: str = "spike"
    seed: int = 0
    unit: str = "ms"
    offset: float = 0.0

    def __post_init__(self):
        if self.unit not in ("ms", "bins"):
            raise EventsnnError(f"jitter unit {self.unit!r}: choose 'ms' or 'bins'")
        if not (np.isfinite(self.sigma) and self.sigma >= 0):
            raise EventsnnError(f"jitter must be a non-negative number of {self.unit}, got {self.sigma:g}")
        if not (np.isfinite(self.offset) and self.offset >= 0):
            raise EventsnnError(f"jitter offset must be a non-negative number of {self.unit}, got {self.offset:g}")
        if self.per not in ("spike", "neuron"):
            raise EventsnnError(f"jitter per {self.per!r}: choose 'spike' or 'neuron'")
        if self.unit == "bins" and self.offset != round(self.offset):
            raise EventsnnError(f"jitter offset in bins must be a whole number, got {self.offset:g}")

    def __call__(self, ev: Events) -> Events:
        rng = np.random.default_rng(self.seed)
        if self.unit == "ms":
            s = ev.sample_index()
            if self.per == "spike":
                dt = rng.normal(0, self.sigma, len(ev.times))
            else:
                dt = rng.normal(0, self.sigma, (len(ev), ev.n_units))[s, ev.units]
            return _rebuild(ev, s, ev.times + (dt + self.offset) * 1e-3, ev.units.copy())
        w, T = _grid(ev, "jitter", need_bins=True)
        slot = _on_grid(ev, w, T)
        gid, rank, order = _groups(ev)
        keep = np.ones(len(slot), bool)
        new = slot.copy()
        off = int(round(self.offset))
        if self.per == "neuron":
            G = int(gid.max()) + 1 if len(gid) else 0
            d = np.rint(rng.normal(0, self.sigma, G)).astype(np.int64) if self.sigma > 0 else np.zeros(G, np.int64)
            new = np.clip(slot + off + d[gid], 0, T - 1)
            flat = gid * T + new
            first = np.unique(flat, return_index=True)[1]
            keep[:] = False
            keep[first] = True
        else:
            tries = 500 if self.sigma > 0 else 1
            for a, c, idx in _chunks(gid, order, T):
                occ = np.zeros((c, T), bool)
                idx = idx[np.argsort(rank[idx], kind="stable")]
                bounds = np.searchsorted(rank[idx], np.arange(int(rank[idx].max()) + 2))
                for j in range(len(bounds) - 1):  # the j-th spike of every unit in this block, in parallel
                    pending = idx[bounds[j]:bounds[j + 1]]
                    for _ in range(tries):
                        if not len(pending):
                            break
                        g = gid[pending] - a
                        cand = np.clip(np.rint(slot[pending] + off + rng.normal(0, self.sigma, len(pending))),
                                       0, T - 1).astype(np.int64)
                        ok = ~occ[g, cand]
                        occ[g[ok], cand[ok]] = True
                        new[pending[ok]] = cand[ok]
                        pending = pending[~ok]
                    if len(pending):  # no free bin found: the original bin, merging if it is taken
                        g = gid[pending] - a
                        free = ~occ[g, slot[pending]]
                        occ[g[free], slot[pending][free]] = True
                        keep[pending[~free]] = False
        out = _from_grid(ev, slot, new, w, keep)
        out.meta["jitter_merged_spikes"] = int(out.meta.get("jitter_merged_spikes", 0)) + int((~keep).sum())
        return out

    @property
    def spec(self):
        unit = "ms" if self.unit == "ms" else "bins"
        shift = f"+{self.offset:g}{unit}" if self.offset else ""
        return f"jitter{'-neuron' if self.per == 'neuron' else ''}:{self.sigma:g}{unit}{shift}"

    name = property(lambda self: _slug(self.spec))

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
    def spec(self):
        return f"delete:{self.p:g}"

    name = property(lambda self: _slug(self.spec))


@dataclass(frozen=True)
class RandomizeTiming:
    """Timing randomisation, the authors' two rules; spike counts are kept (up to the rare spike that finds no
    free slot). Slots: the events' bins (``meta["bin_ms"]``: speech from ``data prepare``, 200 bins as their
    padded raster) or 1 ms (the synthetic tasks); a moved spike keeps its position inside its slot.

    * ``rule="floor"`` (their synthetic tasks, ``partial_randomize_spike_train`` of ``isi_delay.py``): in every
      sample, each unit moves k = floor(f * n) of its n spikes, chosen at random without replacement: they leave
      their slots, then uniform draws fill slots free of the unit's spikes until it has n again (at most 50 k draws
      per unit, after which the rest are lost).
    * ``rule="each"`` (their speech scripts, ``shd_train.py`` and the SSC ``data_*_pre.py``): each spike, in time
      order within its unit, moves with probability f: its slot is freed and up to 50 uniform draws look for a
      slot free of the unit's spikes; a spike that finds none is lost.

    Spelled ``randomize-0.3`` (floor) and ``randomize-each-0.3``.
    """
    f: float
    seed: int = 0
    rule: str = "floor"

    TRIES = 50

    def __post_init__(self):
        if not 0.0 <= self.f <= 1.0:
            raise EventsnnError(f"randomised fraction must be in [0, 1], got {self.f:g}")
        if self.rule not in ("floor", "each"):
            raise EventsnnError(f"randomisation rule {self.rule!r}: choose 'floor' or 'each'")

    def __call__(self, ev: Events) -> Events:
        rng = np.random.default_rng(self.seed)
        w, T = _grid(ev, "randomize", need_bins=False)
        slot = _on_grid(ev, w, T)
        gid, rank, order = _groups(ev)
        if self.rule == "floor":
            n = np.bincount(gid)[gid] if len(gid) else np.zeros(0, np.int64)
            move = _random_rank(gid, rng) < np.floor(n * self.f)  # their int(len(spikes) * f)
        else:
            move = rng.random(len(gid)) < self.f
        new, keep = slot.copy(), np.ones(len(slot), bool)
        for a, c, idx in _chunks(gid, order, T):
            occ = np.zeros((c, T), np.int32)
            np.add.at(occ, (gid[idx] - a, slot[idx]), 1)
            if self.rule == "floor":  # all chosen spikes leave, then fill free slots (uniform k-subset of them)
                pending = idx[move[idx]]
                np.add.at(occ, (gid[pending] - a, slot[pending]), -1)
                rounds = [pending]
            else:  # the j-th spike of every unit, in parallel, j in time order
                idx = idx[np.argsort(rank[idx], kind="stable")]
                bounds = np.searchsorted(rank[idx], np.arange(int(rank[idx].max()) + 2))
                rounds = [idx[bounds[j]:bounds[j + 1]] for j in range(len(bounds) - 1)]
            for pending in rounds:
                if self.rule == "each":  # up to 50 draws for each spike
                    pending = pending[move[pending]]
                    np.add.at(occ, (gid[pending] - a, slot[pending]), -1)
                    budget = np.zeros(c, np.int64)
                    budget[gid[pending] - a] = self.TRIES
                else:  # 50 draws per moved spike, shared by the unit's moved spikes (their loop)
                    budget = np.bincount(gid[pending] - a, minlength=c) * self.TRIES
                while len(pending):
                    g = gid[pending] - a
                    has = budget[g] > 0
                    keep[pending[~has]] = False  # no draw left: the spike is lost
                    pending, g = pending[has], g[has]
                    if not len(pending):
                        break
                    np.subtract.at(budget, g, 1)
                    cand = rng.integers(0, T, len(pending))
                    ok = np.flatnonzero(occ[g, cand] == 0)
                    ok = ok[np.unique(g[ok] * T + cand[ok], return_index=True)[1]]  # one spike per free slot
                    occ[g[ok], cand[ok]] += 1
                    new[pending[ok]] = cand[ok]
                    left = np.ones(len(pending), bool)
                    left[ok] = False
                    pending = pending[left]
        out = _from_grid(ev, slot, new, w, keep)
        out.meta["randomize_lost_spikes"] = int(out.meta.get("randomize_lost_spikes", 0)) + int((~keep).sum())
        return out

    @property
    def spec(self):
        return f"randomize{'-each' if self.rule == 'each' else ''}:{self.f:g}"

    name = property(lambda self: _slug(self.spec))


@dataclass(frozen=True)
class RemoveRate:
    """The paper's rate-removal ("norm") construction on events, by the authors' rule
    (:func:`eventsnn.data.paper.norm_selection`, their ``create_min_count_dataset_return_mask`` and ``do_min_count``):

    1. Count spikes per (sample, unit). A unit whose minimum count over samples is below ``floor`` (2) is "bad";
       the samples where a bad unit fires fewer than ``floor`` spikes are marked for removal when they are at most
       ``max_drop_fraction`` of all samples (SHD 1%, SSC 2%), and the marked samples (over all bad units) are
       removed only if there are fewer than ``max_remove`` of them (SHD 2000, SSC 20000).
    2. N_f = each unit's minimum count over the kept samples; in every kept sample keep exactly N_f randomly chosen
       spikes of each unit (a bad unit left at N_f = 1 keeps one spike, as theirs).
    3. Drop units with N_f = 0 (silent in some sample), renumbering the rest.
    4. Class-balance by random undersampling to the smallest class.

    Afterwards every unit has the same count in every sample: counts carry no information.
    """
    floor: int = 2
    max_drop_fraction: float = 0.01
    max_remove: int = 2000
    seed: int = 0

    def __call__(self, ev: Events) -> Events:
        from eventsnn.data.paper import norm_selection

        rng = np.random.default_rng(self.seed)
        kept, Nf = norm_selection(ev.counts(), self.max_drop_fraction, self.max_remove, self.floor)
        keep_units = Nf > 0
        if not keep_units.any():
            raise EventsnnError("remove-rate leaves no unit with a spike in every sample")
        labels = ev.labels[kept]
        present = np.unique(labels)
        m = min((labels == c).sum() for c in present)
        chosen = np.sort(np.concatenate([rng.choice(kept[labels == c], m, replace=False) for c in present]))
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
        out.meta["remove_rate_samples_removed"] = int(len(ev) - len(kept))
        return out

    @property
    def spec(self):
        return "remove-rate"

    name = property(lambda self: _slug(self.spec))

class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, ev: Events) -> Events:
        for t in self.transforms:
            ev = t(ev)
        return ev

    @property
    def spec(self):
        return "+".join(t.spec for t in self.transforms) or "none"

    name = property(lambda self: _slug(self.spec))


def _slug(spec: str) -> str:
    """A transform's name in file and run names: its spec (``jitter:5ms``, the one spelling users write and
    :func:`parse_probes` reads) with ``:`` as ``-`` (``jitter-5ms``); :func:`transform_by_name` reads it back."""
    return spec.replace(":", "-")


PROBES = ("reverse", "reverse-window", "reverse-full", "reverse-max", "jitter", "jitter-neuron", "delete",
          "randomize", "randomize-each")


def _amount(item: str, arg: str, default: float, units: bool):
    """(value, unit, offset) of a probe's argument: a number, for jitter with a unit (``5``, ``5ms``, ``5bins``) and
    an optional shift (``5bins+20bins``)."""

    if not arg:
        return default, "ms", 0.0
    m = re.fullmatch(_NUM + _UNIT + r"(?:\+" + _NUM + _UNIT + r")?", arg)
    if not m or (not units and (m.group(2) or m.group(3) is not None)):
        want = "a number with an optional unit and shift (5, 5ms, 5bins, 5bins+20bins)" if units else "a number"
        raise EventsnnError(f"probe {item!r}: {arg!r} is not {want}")
    unit = "bins" if (m.group(2) or "ms").startswith("bin") else "ms"
    if m.group(3) is not None:
        ounit = "bins" if (m.group(4) or m.group(2) or "ms").startswith("bin") else "ms"
        if ounit != unit:
            raise EventsnnError(f"probe {item!r}: the jitter and its shift must be in the same unit")
    return float(m.group(1)), unit, float(m.group(3) or 0.0)


def parse_probes(spec: str, seed: int = 0) -> list:
    """Transforms named on the command line, in the one spelling each transform prints as its ``spec``
    (``name:value``; its file-safe ``name`` with ``-`` for ``:`` reads back too): ``reverse`` (window and full),
    ``reverse:window``, ``reverse:full``, ``reverse:max`` (tonic's
    t -> max(t) - t), ``jitter[:SIGMA]`` and ``jitter-neuron[:SIGMA]`` (SIGMA in ms, or ``5bins`` in the events'
    bins, with an optional shift ``+20bins``), ``delete[:P]``, ``randomize[:F]`` (floor(F n) spikes of each unit
    moved, the authors' synthetic rule) and ``randomize-each[:F]`` (each spike with probability F, their speech
    rule). Random transforms use ``seed``."""
    out = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        name, _, arg = item.partition(":")
        if name == "reverse" and arg:  # the spec spelling, reverse:window
            name, arg = f"reverse-{arg}", ""
        if name in ("reverse", "reverse-window", "reverse-full", "reverse-max"):
            if arg:
                raise EventsnnError(f"probe {item!r}: {name} takes no argument")
            out += [Reverse("window"), Reverse("full")] if name == "reverse" else [Reverse(name.split("-")[1])]
        elif name in ("jitter", "jitter-neuron"):
            sigma, unit, offset = _amount(item, arg, 1.0, True)
            out.append(Jitter(sigma, per="neuron" if name == "jitter-neuron" else "spike", seed=seed, unit=unit,
                              offset=offset))
        elif name == "delete":
            out.append(Delete(_amount(item, arg, 0.1, False)[0], seed=seed))
        elif name in ("randomize", "randomize-each"):
            out.append(RandomizeTiming(_amount(item, arg, 0.5, False)[0], seed=seed,
                                       rule="each" if name == "randomize-each" else "floor"))
        else:
            raise EventsnnError(f"unknown probe {name!r}; choose from {', '.join(PROBES)}")
    return out


def transform_by_name(name: str | None, seed: int = 0):
    """Inverse of ``.name`` (used to re-create a transform in a worker process)."""
    if name in (None, "none"):
        return None
    for kind in sorted(PROBES, key=len, reverse=True):
        if name == kind or name.startswith(kind + "-"):
            rest = name[len(kind) + 1:]
            if kind == "reverse" and rest in ("window", "full", "max"):
                return Reverse(rest)
            try:
                got = parse_probes(f"{kind}:{rest}" if rest else kind, seed)
            except EventsnnError:
                continue
            if len(got) == 1:
                return got[0]
    raise EventsnnError(f"unknown transform {name!r}")


# the sweep's transform keys of earlier versions whose meaning is unchanged, and what they spell now
_LEVEL_KEYS = {"jitter": "jitter:*", "jitter_neuron": "jitter-neuron:*", "delete": "delete:*"}


def level_transform(key: str, level: float, seed: int = 0):
    """The retrain-at-each-level transform of a sweep: ``key`` is a probe spelling with ``*`` where the swept level
    goes (``randomize:*``, ``randomize-each:*``, ``jitter:*bins``, ``jitter-neuron:*bins+20bins``, ``delete:*``;
    ``jitter``, ``jitter_neuron`` and ``delete`` alone stand for ``jitter:*`` (ms), ``jitter-neuron:*`` (ms) and
    ``delete:*``). The bare key ``randomize`` of earlier versions meant another rule (round(f n) spikes moved to
    continuous times) and is refused, so that a sweep made with it is never extended with the authors' rule."""
    if key == "randomize":
        raise EventsnnError("'randomize' alone was the rule of earlier versions (round(f n) spikes to continuous "
                            "times); write randomize:* (the authors' synthetic rule: floor(f n) spikes to free 1-ms "
                            "slots) or randomize-each:* (their speech rule)")
    if key == "jitter_neuron":
        import warnings
        warnings.warn("transform key 'jitter_neuron' is deprecated; write jitter-neuron:* (the probe spelling)",
                      FutureWarning, stacklevel=2)
    spec = _LEVEL_KEYS.get(key, key)
    if spec.count("*") != 1 or "," in spec:
        raise EventsnnError(f"transform {key!r}: write it as a probe with * where the level goes, e.g. jitter:*bins, "
                            "jitter-neuron:*bins+20bins, randomize:*, randomize-each:*, delete:* (or jitter, "
                            "jitter_neuron, delete)")
    got = parse_probes(spec.replace("*", repr(float(level))), seed)
    if len(got) != 1 or isinstance(got[0], Reverse):
        raise EventsnnError(f"transform {key!r}: not a transform with a level (jitter, jitter-neuron, delete, "
                            "randomize, randomize-each)")
    return got[0]
