"""eventsnn: train spiking networks that use spike timing, verify them in Brian2 and in continuous time.

The Python API (in-memory objects in and out; paths work too), as the command line uses it:

* ``eventsnn.train(events, config, test=...) -> TrainedModel`` -- surrogate gradients, learnable delays,
  model selection on a validation split;
* ``eventsnn.export(model) -> Network`` -- the network file's contents (delays in ms);
* ``eventsnn.simulate(network, events, engine="torch" | "brian2" | "event", dt=...) -> RunResult``;
* ``eventsnn.compare(run_a, run_b) -> dict`` -- predictions, traces, spike-by-spike timing;
* ``eventsnn.verify(network, events, out=...) -> dict`` -- every engine, dt and probe, against the exact run;
* ``eventsnn.data.cochlea(audio, ...) -> Events`` -- audio through the SHD cochlea model (lauscher 1.0.1's chain);
* ``eventsnn.load_events / load_network / load_run`` and ``save_events / save_network / save_run``.

Packages: ``eventsnn`` (core: events, the discrete-time contract, the torch engine, training, the CLI),
``eventsnn.bridge`` (the network file, torch <-> file, file -> Brian2, the exact event engine) and
``eventsnn.validation`` (compare, verify, demo). Importing ``eventsnn`` is cheap: torch and Brian2 load when
first used. See ``help(eventsnn.train)`` and the README.
"""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("eventsnn")
except _metadata.PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"

_API = {"train": "api", "export": "api", "simulate": "api", "compare": "api", "verify": "api",
        "TrainedModel": "api", "TrainConfig": "training.config", "Events": "data.events",
        "load_events": "data.events", "save_events": "data.events", "load_run": "bridge.runfile",
        "save_run": "bridge.runfile", "RunResult": "bridge.runfile", "EventsnnError": "util.errors",
        "Network": "bridge.network", "load_network": "bridge.network", "save_network": "bridge.network",
        "cochlea": "data.cochlea"}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name):
    if name in _API:
        import importlib
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'eventsnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
