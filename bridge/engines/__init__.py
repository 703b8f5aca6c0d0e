"""The engines side by side, behind one registry (Brian2's ``all_devices`` habit).

Every engine is called as ``ENGINES[name](net, events, indices, **options)`` and returns a
:class:`~eventsnn.bridge.runfile.RunResult`; each declares the options it understands, checked once here before any
work. The CLI's ``--engine`` choices and ``verify``'s plan read this registry, so a new engine is added in one
place.
"""
from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eventsnn.bridge.runfile import SPIKE_BYTES, RunWriter
from eventsnn.data.events import n_steps
from eventsnn.model.contract import grid_ratio
from eventsnn.util.errors import EventsnnError, EventsnnWarning, fail
from eventsnn.util.files import build_dir_for
from eventsnn.util.progress import progress_bar

TARGETS = ("numpy", "cython", "cpp_standalone", "cuda_standalone")  # Brian2's code generation targets


@dataclass(frozen=True)
class Engine:
    name: str
    run: object                      # callable(net, events, indices, **options) -> RunResult
    clock: bool                      # clock-driven (takes dt_ms, delays and inputs modes) or exact
    delays: tuple = ()               # delay modes it supports
    inputs: tuple = ()               # input modes it supports
    options: frozenset = field(default_factory=frozenset)  # further keyword options it accepts
    scratch: str | None = None       # the option naming a scratch directory the engine needs (made if not given)

    def accepts(self) -> frozenset:
        """Every keyword :func:`simulate` passes on to this engine."""
        return self.options | (frozenset({"dt_ms", "delays", "inputs"}) if self.clock else frozenset())


def _torch(net, events, indices=None, **kw):
    from eventsnn.bridge.engines.torch import simulate_torch
    return simulate_torch(net, events, indices, **kw)


def _brian2(net, events, indices=None, **kw):
    from eventsnn.bridge.engines.brian2 import simulate_brian2
    return simulate_brian2(net, events, indices, **kw)


def _event(net, events, indices=None, **kw):
    from eventsnn.bridge.engines.event import simulate_event
    return simulate_event(net, events, indices, **kw)


ENGINES = {
    "torch": Engine("torch", _torch, True, ("round", "exact"), ("binned", "exact"),
                    frozenset({"device", "dtype", "batch_size", "progress"})),
    "brian2": Engine("brian2", _brian2, True, ("round", "exact"), ("binned", "exact"),
                     frozenset({"target", "build_dir", "ieee_math", "max_copies", "max_synapses", "progress",
                                "compile_only", "workers"}), scratch="build_dir"),
    "event": Engine("event", _event, False, ("exact",), ("exact",),
                    frozenset({"progress", "workers", "max_rate_hz"})),
}


def get_engine(engine: str) -> Engine:
    if engine not in ENGINES:
        raise EventsnnError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return ENGINES[engine]


def check_compatible(net, events, dt_ms: float | None = None, *, data=None, network=None) -> None:
    """The one check that ``events`` can run through ``net`` (every engine, the CLI and verify call it before
    any work): the events' units are the network's inputs, their labels are among its outputs, and a step
    ``dt_ms`` divides the training dt. ``data``/``network`` name the files in the error, when there are files."""

    net_name = f"the network {network}" if network else "the network"
    if events.n_units != net.n_inputs:
        raise fail(data, f"events have {events.n_units} units but {net_name} has {net.n_inputs} inputs")
    if len(events) and int(events.labels.max()) >= net.n_outputs:
        raise fail(data, f"labels go up to {int(events.labels.max())} but the network has {net.n_outputs} outputs "
                         f"(classes 0..{net.n_outputs - 1}): is this the data the network was trained on?")
    if dt_ms is not None:
        try:
            grid_ratio(net.dt_ms, dt_ms)
        except EventsnnError as e:
            raise EventsnnError(f"--dt: {e}") from None


def simulate(engine: str, net, events, indices=None, *, dt_ms=None, delays=None, inputs=None, **options):
    """Run ``engine`` on ``events[indices]``; options an engine does not support are an error.

    Clock-driven engines take ``dt_ms`` (default: the training dt), ``delays`` (default ``round``) and
    ``inputs`` (default ``binned``); the exact engine takes neither a step nor modes (it is always exact).
    Raises :class:`~eventsnn.util.errors.EventsnnError` for any incompatibility, before any work (each engine
    runs :func:`check_compatible` itself).
    """
    e = get_engine(engine)
    unknown = set(options) - e.options
    if unknown:
        raise EventsnnError(f"engine {engine!r} does not take {', '.join(sorted(unknown))}")
    if e.clock:
        delays, inputs = delays or "round", inputs or "binned"
        if delays not in e.delays or inputs not in e.inputs:
            raise EventsnnError(f"engine {engine!r}: delays must be one of {e.delays}, inputs one of {e.inputs}")
        return e.run(net, events, indices, dt_ms=dt_ms, delays=delays, inputs=inputs, **options)
    if dt_ms is not None:
        raise EventsnnError(f"--dt: the {engine} engine has no time step (it is exact)")
    if delays not in (None, "exact") or inputs not in (None, "exact"):
        raise EventsnnError(f"the {engine} engine always uses exact delays and exact inputs")
    return e.run(net, events, indices, **options)


RUN_CHUNK_BYTES = 1 << 30  # run output (spikes + trace) of one chunk of samples held in memory while simulating


def first_chunk(net, events, dt_ms: float | None, budget_bytes: int) -> int:
    """Samples in the first chunk of a run written to a file: as many as fit in ``budget_bytes`` if every
    hidden neuron fired at every step (a clock-driven engine's cap; the exact engine, which has no such cap, is
    planned at 1/100 of the training dt) -- so a small network runs in one chunk and a large one starts small."""
    step = dt_ms if dt_ms is not None else net.dt_ms / 100
    T = n_steps(events.duration_ms, step)
    hidden = sum(L.size for L in net.layers[:-1])  # a count readout's spikes are not kept: only the trace
    per_sample = T * hidden * SPIKE_BYTES + n_steps(events.duration_ms, net.dt_ms) * net.n_outputs * 8
    return max(1, min(len(events), budget_bytes // max(per_sample, 1)))


BUILT_TARGETS = ("cpp_standalone", "cuda_standalone")  # Brian2 targets that compile a project per call


def _output_bytes(run, n: int) -> int:
    """The largest output of one of the ``n`` samples of ``run`` (its hidden spikes and its trace), in bytes."""
    counts = sum((np.bincount(L.sample, minlength=n) for L in run.layers), np.zeros(n, np.int64))
    return int(counts.max(initial=0)) * SPIKE_BYTES + run.trace[0].size * 8


def _built_chunk(net, events, floor: int, budget_bytes: int, **modes) -> int:
    """The chunk size of a compiled Brian2 run (each chunk is a build of 20-40 s, whatever its size; the number of
    samples is compiled in, so equal chunks are rebuilt in the same directory without compiling the code again).
    Sized, with a factor 2 margin, from the larger of what torch writes for the first sample at the same dt and
    modes (the same discrete-time contract) and every hidden neuron firing once per training step (the rate
    the model was trained under: a quiet first sample does not make a huge chunk); never below ``floor``, the
    bound for every neuron firing at every step."""
    T = n_steps(events.duration_ms, net.dt_ms)
    ceiling = T * sum(L.size for L in net.layers[:-1]) * SPIKE_BYTES + T * net.n_outputs * 8
    with warnings.catch_warnings():  # the run itself warns about merged input spikes, for all samples
        warnings.simplefilter("ignore", EventsnnWarning)
        probe = simulate("torch", net, events, np.arange(1), **modes)
    per_sample = max(_output_bytes(probe, 1), ceiling)
    return max(floor, _equal_chunks(len(events), budget_bytes // (2 * per_sample)))


def _equal_chunks(n: int, most: int) -> int:
    """The size of the fewest equal chunks (the last perhaps smaller) of at most ``most`` that cover ``n``."""
    if n <= 0:
        return max(1, most)
    k = -(-n // max(1, most))
    return -(-n // k)


def simulate_to_file(engine: str, net, events, path, *, attrs: dict | None = None,
                     budget_bytes: int = RUN_CHUNK_BYTES, progress: bool = False, dt_ms=None, delays=None,
                     inputs=None, **options) -> dict:
    """:func:`simulate` written to the run file ``path`` chunk by chunk of consecutive samples, so memory stays
    near ``budget_bytes`` whatever the number of samples: the first chunk is sized by :func:`first_chunk`,
    every next one from the largest per-sample output seen so far (with a factor 2 margin). A compiled Brian2
    target pays a build per chunk, so its chunks are sized by :func:`_built_chunk` and kept as equal as possible,
    shrinking only. The file is the one a single call on all samples would give (samples never interact);
    ``attrs`` are added to its attributes. Returns a summary: the run's header (engine, dt_ms, target, delays,
    ...), samples, chunks, accuracy, hidden spikes per layer."""

    e = get_engine(engine)
    check_compatible(net, events, dt_ms)
    step = (net.dt_ms if dt_ms is None else dt_ms) if e.clock else None
    S = len(events)
    size = floor = first_chunk(net, events, step, budget_bytes)
    built = engine == "brian2" and options.get("target") in BUILT_TARGETS
    if built and size < S:
        size = _built_chunk(net, events, floor, budget_bytes, dt_ms=dt_ms, delays=delays, inputs=inputs)
    chunked = size < S
    if chunked and e.clock and (inputs or "binned") == "binned":
        # each chunk would warn about its own merged input spikes; warn once, for all samples
        from eventsnn.data.events import bin_events, warn_merged
        b = bin_events(events, net.dt_ms).binary()
        warn_merged(b.merged, b.n_spikes, net.dt_ms)
    lo = 0
    with warnings.catch_warnings(), RunWriter(path, attrs) as w, \
            progress_bar(total=S, desc=f"{engine} samples", unit="sample", disable=not (progress and chunked)) as bar:
        if chunked:
            warnings.simplefilter("ignore", EventsnnWarning)
        while lo < S:
            hi = min(S, lo + size)
            part = simulate(engine, net, events, np.arange(lo, hi), dt_ms=dt_ms, delays=delays, inputs=inputs,
                            progress=progress and not chunked, **options)
            w.append(part)
            bound = max(1, budget_bytes // (2 * max(_output_bytes(part, hi - lo), 1)))
            if not built:
                size = bound
            elif size > bound:  # shrink only (a new size is a new build), never below the every-step bound
                size = max(floor, _equal_chunks(S - hi, bound))
            bar.update(hi - lo)
            lo = hi
    return {**w.header, "samples": w.n_samples, "chunks": w.n_parts, "accuracy": w.accuracy,
            "spikes_per_layer": w.spikes, "wall_s": w.wall_s}


def run_to_file(engine: str, net, events, path, *, scratch_parent=None, **options) -> dict:
    """:func:`simulate_to_file` with the engine's scratch directory (Brian2's build directory) made under
    ``scratch_parent`` (default: next to ``path``) when not given, and removed afterwards -- the one way the CLI
    and ``verify`` run any engine."""

    e = get_engine(engine)
    made = None
    if e.scratch and options.get(e.scratch) is None:
        made = options[e.scratch] = build_dir_for(Path(scratch_parent or Path(path).resolve().parent))
    try:
        if options.get("compile_only"):
            return {"compiled": str(simulate(engine, net, events, **options))}
        return simulate_to_file(engine, net, events, path, **options)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


