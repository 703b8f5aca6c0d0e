"""The engines side by side, behind one registry (Brian2's ``all_devices`` habit).

Every engine is called as ``ENGINES[name](net, events, indices, **options)`` and returns a
:class:`~eventsnn.runfile.RunResult`; each declares the options it understands, checked once here before any
work. The CLI's ``--engine`` choices and ``verify``'s plan read this registry, so a new engine is added in one
place.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from eventsnn.errors import EventsnnError


@dataclass(frozen=True)
class Engine:
    name: str
    run: object                      # callable(net, events, indices, **options) -> RunResult
    clock: bool                      # clock-driven (takes dt_ms, delays and inputs modes) or exact
    delays: tuple = ()               # delay modes it supports
    inputs: tuple = ()               # input modes it supports
    options: frozenset = field(default_factory=frozenset)  # further keyword options it accepts


def _torch(net, events, indices=None, **kw):
    from .from_torch import simulate_torch
    return simulate_torch(net, events, indices, **kw)


def _brian2(net, events, indices=None, **kw):
    from .brian2_sim import simulate_brian2
    return simulate_brian2(net, events, indices, **kw)


def _event(net, events, indices=None, **kw):
    from .event_engine import simulate_event
    return simulate_event(net, events, indices, **kw)


ENGINES = {
    "torch": Engine("torch", _torch, True, ("round", "exact"), ("binned", "exact"),
                    frozenset({"device", "dtype", "batch_size", "progress"})),
    "brian2": Engine("brian2", _brian2, True, ("round", "exact"), ("binned", "exact"),
                     frozenset({"target", "build_dir", "exact_math", "max_copies", "max_synapses", "progress",
                                "compile_only", "workers"})),
    "event": Engine("event", _event, False, ("exact",), ("exact",), frozenset({"progress", "workers"})),
}


def simulate(engine: str, net, events, indices=None, *, dt_ms=None, delays=None, inputs=None, **options):
    """Run ``engine`` on ``events[indices]``; options an engine does not support are an error.

    Clock-driven engines take ``dt_ms`` (default: the training dt), ``delays`` (default ``round``) and
    ``inputs`` (default ``binned``); the exact engine takes neither a step nor modes (it is always exact).
    """
    if engine not in ENGINES:
        raise EventsnnError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    e = ENGINES[engine]
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
