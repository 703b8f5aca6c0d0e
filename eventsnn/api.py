"""The Python API: in-memory objects in and out, files optional. The CLI does the same through files.

>>> import eventsnn
>>> from eventsnn.data.datasets import make_polychrony
>>> train_ev, test_ev = make_polychrony(samples=600, seed=1), make_polychrony(samples=200, seed=2)
>>> model = eventsnn.train(train_ev, {"delays": "axonal", "epochs": 20}, test=test_ev)   # doctest: +SKIP
>>> net = eventsnn.export(model)                         # the network file's contents, a Network
>>> exact = eventsnn.simulate(net, test_ev, engine="event")          # continuous time, no dt
>>> fine = eventsnn.simulate(net, test_ev, engine="brian2", dt=0.01, delays="exact", inputs="exact")
>>> c = eventsnn.compare(exact, fine)                            # spikes matched within 0.1 ms by default
>>> print(f"{c['layers'][0]['matched_fraction']:.1%} of the exact run's spikes matched")
>>> report = eventsnn.verify(net, test_ev, out="report_dir")   # every engine, dt and probe; figures

Progress bars (on stderr) are on by default when stderr is a terminal (``progress=``); warnings are one line
each (``eventsnn: warning: ...``). ``examples/api_tour.py`` is this tour as a script that prints every result.

Every function also takes paths where it takes objects (events files, network files, run files, run
directories) and raises :class:`~eventsnn.util.errors.EventsnnError` with a one-line message on bad input.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainedModel:
    """What :func:`train` returns: the validation-selected model and how it got there.

    Attributes
    ----------
    model : eventsnn.model.layers.SNN
        The best model on the validation split (float32, CPU, evaluation mode).
    config : eventsnn.training.config.TrainConfig
        The settings used.
    summary : dict
        Best epoch, validation (and test) accuracy, epochs run, seconds, provenance.
    history : list of dict
        One record per epoch (loss, train/validation accuracy, spikes per neuron, seconds).
    rundir : Path or None
        The run directory, if one was given (checkpoint, metrics, config, summary on disk).
    """

    model: object
    config: object
    summary: dict
    history: list = field(default_factory=list)
    rundir: Path | None = None

    def network(self):
        """The model as a network file's contents (:class:`eventsnn.bridge.Network`), delays in ms."""
        return export(self)


def _events(x, what="events"):
    from eventsnn.data.datasets import DatasetSource, load_any
    from eventsnn.util.errors import EventsnnError
    from eventsnn.data.events import Events

    if isinstance(x, (Events, DatasetSource)):
        return x
    if isinstance(x, (str, Path)):
        return load_any(x)
    raise EventsnnError(f"{what}: expected an Events object, a path to an events file or a "
                        f"eventsnn.data.datasets.DatasetSource (a torch Dataset), got {type(x).__name__}")


def _network(x):
    from eventsnn.bridge.network import Network, load_network
    from eventsnn.util.errors import EventsnnError

    if isinstance(x, Network):
        return x.validate()
    if isinstance(x, TrainedModel):
        return export(x)
    if isinstance(x, (str, Path)):
        return load_network(x)
    raise EventsnnError(f"network: expected a Network, a TrainedModel or a network file, got {type(x).__name__}")


def _progress(progress) -> bool:
    """``progress=None``: bars when stderr is a terminal (a notebook or a shell), not in logs or pipes."""
    import sys
    return bool(sys.stderr.isatty()) if progress is None else bool(progress)


def train(events, config=None, *, test=None, val=None, rundir=None, progress: bool | None = None,
          **settings) -> TrainedModel:
    """Train a spiking network on ``events`` with surrogate gradients; select it on a validation split.

    Parameters
    ----------
    events : Events, path or DatasetSource
        Training samples; the validation split (``val_fraction``) is carved from them. A
        :class:`eventsnn.data.datasets.DatasetSource` wraps a torch ``Dataset`` (e.g. ``tonic.datasets.SHD`` with its
        transforms): read batch by batch, its transforms run again every epoch.
    config : TrainConfig, dict or path, optional
        Settings (:class:`eventsnn.training.loop.config.TrainConfig`); a path is read as YAML/TOML/JSON. Keyword arguments
        override it (``eventsnn.train(ev, delays="synaptic", epochs=10)``). A named preset is a dict of settings:
        ``eventsnn.train(ev, TrainConfig.from_preset("paper-isi"), epochs=20)``.
    test : Events or path, optional
        Held-out samples evaluated once, with the selected model, at the end.
    val : Events or path, optional
        Validation samples for model selection (instead of carving ``val_fraction`` from ``events``).
    rundir : path, optional
        Where to keep the checkpoint, metrics and summary (resumable with ``eventsnn train --resume``);
        by default a temporary directory that is removed afterwards.
    progress : bool, optional
        A progress bar per epoch on stderr; by default when stderr is a terminal.

    Returns
    -------
    TrainedModel

    Raises
    ------
    EventsnnError
        Bad settings or data (the message names the setting).
    """
    import json

    from eventsnn.training.loop import load_trained_model
    from eventsnn.training.config import TrainConfig
    from eventsnn.training.loop import train as _train

    ev = _events(events, "events")
    te = None if test is None else _events(test, "test")
    va = None if val is None else _events(val, "val")
    if isinstance(config, TrainConfig):
        values = config.model_dump()
    elif isinstance(config, (str, Path)):
        values = TrainConfig.from_file(config)
    else:
        values = dict(config or {})
    values.update(settings)
    if isinstance(events, (str, Path)):
        values.setdefault("data", str(events))
    if isinstance(test, (str, Path)):
        values.setdefault("test_data", str(test))
    if isinstance(val, (str, Path)):
        values.setdefault("val_data", str(val))
    cfg = TrainConfig.read(values)

    def run(d: Path) -> TrainedModel:
        summary = _train(cfg, d, progress=_progress(progress), events=ev, test_events=te, val_events=va,
                         rundir_is_temporary=rundir is None)
        history = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines() if line]
        return TrainedModel(load_trained_model(d), cfg, summary, history, d if rundir is not None else None)

    if rundir is not None:
        return run(Path(rundir))
    with tempfile.TemporaryDirectory(prefix="eventsnn_train_") as d:
        return run(Path(d) / "run")


def export(model):
    """The trained network as a :class:`eventsnn.bridge.Network` (float64, delays in ms, validated).

    ``model``: a :class:`TrainedModel`, a run directory of ``eventsnn train``, or an :class:`eventsnn.model.layers.SNN`.
    """
    import torch

    from eventsnn.bridge.engines.torch import network_from_model
    from eventsnn.util.provenance import provenance
    from eventsnn.model.layers import SNN
    from eventsnn.training.loop import load_trained_model

    if isinstance(model, TrainedModel):
        meta = {"best_epoch": model.summary.get("best_epoch"), "val_acc": model.summary.get("val_acc"),
                "delays": model.config.delays}
        snn = model.model
    elif isinstance(model, SNN):
        snn, meta = model, {}
    else:  # a run directory: the validation-selected model and where it came from
        from eventsnn.training.loop import load_checkpoint
        snn = load_trained_model(model, dtype=torch.float64)  # checks the checkpoint's contents first
        ck = load_checkpoint(Path(model) / "checkpoint.pt")
        meta = {"source_rundir": str(Path(model).resolve()), "best_epoch": int(ck["best"]["epoch"]),
                "val_acc": float(ck["best"]["val_acc"]), "delays": ck["config"]["delays"],
                "seed": ck["config"].get("seed")}
    import copy
    import json

    meta["provenance"] = json.dumps(provenance(seed=meta.pop("seed", None)))
    snn64 = copy.deepcopy(snn).to(torch.float64)  # the caller's model keeps its dtype
    return network_from_model(snn64, {k: v for k, v in meta.items() if v is not None})


def _renamed(old: str, new: str, old_value, new_value, where: str):
    """An old keyword still works for one release, with a one-line warning naming the new one."""
    if old_value is None:
        return new_value
    import warnings
    warnings.warn(f"{where}({old}=...) is deprecated; use {new}=", FutureWarning, stacklevel=3)
    return old_value if new_value is None else new_value


def simulate(network, events, engine: str = "torch", dt=None, *, delay_mode=None, inputs=None, first=None,
             delays=None, samples=None, **options):
    """Simulate ``events`` through ``network`` in one engine; return a :class:`eventsnn.bridge.runfile.RunResult`.

    Parameters
    ----------
    network : Network, TrainedModel or path
    events : Events or path
    engine : {"torch", "brian2", "event"}
        Clock-driven at ``dt`` (ms; default the training dt), or exact in continuous time (``"event"``).
    delay_mode, inputs : str, optional
        Clock-driven engines: ``"round"``/``"exact"`` delays, ``"binned"``/``"exact"`` inputs.
    first : int, optional
        The first N samples only. (``delays=`` and ``samples=`` are the old names of ``delay_mode=`` and
        ``first=``.)
    **options
        Engine options, e.g. ``target="cpp_standalone"``, ``workers=2``, ``device="cuda"``.
    """
    import numpy as np

    from eventsnn.bridge.engines import simulate as _simulate

    delay_mode = _renamed("delays", "delay_mode", delays, delay_mode, "simulate")
    first = _renamed("samples", "first", samples, first, "simulate")
    net, ev = _network(network), _events(events)
    idx = None if first is None else np.arange(min(int(first), len(ev)))
    return _simulate(engine, net, ev, idx, dt_ms=dt, delays=delay_mode, inputs=inputs, **options)


def compare(a, b, tolerance=None) -> dict:
    """Compare two runs (RunResult objects or run files): accuracy, prediction agreement, trace correlation,
    per-layer optimal spike matching within ``tolerance`` ms (default: the coarser dt, at least 0.1 ms; see
    :func:`eventsnn.validation.compare.default_tolerance`)."""
    from eventsnn.bridge.runfile import RunResult, load_run
    from eventsnn.validation.compare import compare_files, compare_runs

    if not isinstance(a, RunResult) and not isinstance(b, RunResult):
        return compare_files(a, b, tolerance)  # read chunk by chunk
    ra = a if isinstance(a, RunResult) else load_run(a)
    rb = b if isinstance(b, RunResult) else load_run(b)
    return compare_runs(ra, rb, tolerance)


def verify(network, events, out=None, *, dt=None, probes="reverse", target="numpy", first=None,
           workers: int = 1, progress: bool | None = None, event: bool = True, fine_samples: int | None = 16,
           keep_runs: bool = False, samples=None) -> dict:
    """Verify a network: the exact run, and torch and Brian2 at the training dt and finer, for the original
    inputs and each probe. Returns the report (see ``report.md``); with ``out`` the report and figures are kept
    there (and an interrupted verify resumes), and the run files too with ``keep_runs``; otherwise everything goes
    to a temporary directory. ``dt``: the
    steps (ms) besides the training dt (None: a tenth and a hundredth of it). Brian2 at every dt and torch finer
    than the training dt take the first ``fine_samples`` samples (None: all); the exact runs and the reference,
    torch at the training dt, take every sample."""
    from eventsnn.bridge.network import save_network
    from eventsnn.data.events import save_events
    from eventsnn.validation.verify import verify as _verify

    def go(d: Path) -> dict:
        net_f = network if isinstance(network, (str, Path)) else d / "inputs" / "network.h5"
        ev_f = events if isinstance(events, (str, Path)) else d / "inputs" / "events.h5"
        if not isinstance(network, (str, Path)):
            save_network(_network(network), net_f)
        if not isinstance(events, (str, Path)):
            save_events(_events(events), ev_f)
        return _verify(net_f, ev_f, d, dts=dt, probes=probes, target=target, first=first, workers=workers,
                       progress=_progress(progress), event=event, fine_samples=fine_samples, keep_runs=keep_runs,
                       network_name=None if isinstance(network, (str, Path)) else "network (in memory)")

    first = _renamed("samples", "first", samples, first, "verify")

    if out is not None:
        return go(Path(out))
    with tempfile.TemporaryDirectory(prefix="eventsnn_verify_") as d:
        return go(Path(d))
