"""The ``eventsnn`` command line: the one composition root (imports the other packages lazily).

The error contract (DESIGN.md section 4): every problem with the user's input --
a flag, a config value, a file's contents, an output that cannot be written or
would touch an input -- is found before any work is done or any file is
written, and printed as one line on stderr naming the flag or file (with
``--json`` also ``{"error": ...}`` on stdout); the exit code is 2. ``--debug``
shows the traceback. ``--json`` and ``--debug`` may stand before or after the
subcommand. Warnings are one line each (``eventsnn: warning: ...``). Ctrl-C
prints the command that resumes the work.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import warnings
from pathlib import Path

from eventsnn.util.errors import EventsnnError
from eventsnn.util.files import check_input, check_output
from eventsnn.util.dask_pool import check_scheduler, usable_cores
from eventsnn.util import jsonio

# ----------------------------------------------------------------------------- argument types


def _number(kind, lo=None, hi=None, lo_open=False, what=None):
    """An argparse type: a finite int/float within [lo, hi] (or (lo, hi] with ``lo_open``)."""
    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {s!r}") from None
        bad = not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) or \
            (hi is not None and v > hi)
        if bad:
            rng = what or (f"> {lo:g}" if lo_open else f">= {lo:g}" if hi is None else f"in [{lo:g}, {hi:g}]")
            raise argparse.ArgumentTypeError(f"must be {rng}, got {s!r}")
        return v
    parse.__name__ = kind.__name__
    return parse


POS_INT = _number(int, 1)
SEED = _number(int, 0, 2**63 - 1, what="an integer >= 0")
POS_FLOAT = _number(float, 0, lo_open=True)
NONNEG_FLOAT = _number(float, 0)
PROB = _number(float, 0, 1)


def _dt_list(s: str) -> list[float]:
    out = []
    for x in s.split(","):
        if x.strip():
            out.append(POS_FLOAT(x.strip()))
    if not out:
        raise argparse.ArgumentTypeError(f"expected comma-separated step sizes in ms, got {s!r}")
    return out


def _int_list(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


# ----------------------------------------------------------------------------- output helpers

def _emit(obj, as_json: bool, text: str | None = None):
    if as_json:
        print(jsonio.dumps(obj))
    elif text is not None:
        print(text)


# ----------------------------------------------------------------------------- data

def cmd_data_make(a):
    from eventsnn.data.datasets import make_task
    from eventsnn.data.events import save_events

    check_output(a.out)
    ev = make_task(a.task, samples=a.samples, seed=a.seed, task_seed=a.task_seed, units=a.units, classes=a.classes,
                   duration_ms=a.duration_ms, jitter_ms=a.jitter_ms, overlap=a.overlap, max_isi_ms=a.max_isi_ms)
    save_events(ev, a.out)
    _emit({"out": str(a.out), "samples": len(ev), "units": ev.n_units, "classes": ev.n_classes,
           "duration_s": ev.duration_s}, a.json, f"wrote {a.out}: {len(ev)} samples, {ev.n_units} units, "
                                               f"{ev.n_classes} classes, {ev.duration_s * 1e3:g} ms")


def cmd_data_info(a):
    import numpy as np

    from eventsnn.data.datasets import count_baseline, load_any

    ev = load_any(check_input(a.file, "FILE"))
    counts = ev.counts()
    per_sample = counts.sum(1)
    info = {"file": str(a.file), "source": ev.source, "samples": len(ev), "units": ev.n_units,
            "classes": ev.n_classes, "duration_s": ev.duration_s,
            "class_counts": np.bincount(ev.labels, minlength=ev.n_classes).tolist(),
            "spikes_per_sample_mean": float(per_sample.mean()), "spikes_per_sample_std": float(per_sample.std()),
            "rate_hz_per_unit": float(per_sample.mean() / ev.n_units / ev.duration_s),
            "chance": float(np.bincount(ev.labels).max() / len(ev))}
    if a.rate_baseline:
        info["count_only_accuracy"] = count_baseline(ev)
    from eventsnn.data.speech import SOURCE, speech_statistics
    if ev.source == SOURCE:
        info.update(speech_statistics(ev, a.file))
    text = "\n".join(f"{k}: {v}" for k, v in info.items())
    _emit(info, a.json, text)


def cmd_data_transform(a):
    from eventsnn.data.datasets import load_any
    from eventsnn.data.events import save_events
    from eventsnn.data.transforms import Compose, Delete, Jitter, RandomizeTiming, RemoveRate, Reverse

    check_input(a.file, "FILE")
    check_output(a.out, inputs=[a.file])
    ts = []
    if a.remove_rate:
        ts.append(RemoveRate(seed=a.seed))
    if a.reverse:
        ts.append(Reverse(a.reverse))
    if a.jitter is not None:
        ts.append(Jitter(a.jitter, seed=a.seed))
    if a.jitter_neuron is not None:
        ts.append(Jitter(a.jitter_neuron, per="neuron", seed=a.seed))
    if a.delete is not None:
        ts.append(Delete(a.delete, seed=a.seed))
    if a.randomize is not None:
        ts.append(RandomizeTiming(a.randomize, seed=a.seed))
    if not ts:
        raise EventsnnError("data transform needs at least one of --reverse, --jitter, --jitter-neuron, --delete, "
                            "--randomize, --remove-rate")
    ev = Compose(ts)(load_any(a.file))
    ev.source = f"{ev.source}|{Compose(ts).spec}"
    save_events(ev, a.out)
    _emit({"out": str(a.out), "transform": Compose(ts).spec, "samples": len(ev), "units": ev.n_units},
          a.json, f"wrote {a.out} ({Compose(ts).spec}): {len(ev)} samples, {ev.n_units} units")


def cmd_data_prepare(a):
    from eventsnn.data.events import save_events
    from eventsnn.data.paper import prepare_speech

    files = [("--train", a.train), ("--test", a.test)] + ([("--val", a.val)] if a.val else [])
    for flag, f in files:
        check_input(f, flag)
    out = check_output(a.out, inputs=[f for _, f in files], kind="dir")
    train, val, test, summary = prepare_speech([f for _, f in files], a.dataset, a.variant, seed=a.seed,
                                               duration_bins=a.duration_bins)
    out.mkdir(parents=True, exist_ok=True)
    for name, ev in (("train", train), ("val", val), ("test", test)):
        save_events(ev, out / f"{name}.h5")
    from eventsnn.util.files import atomic_path
    from eventsnn.util.provenance import provenance

    summary["inputs"] = [str(f) for _, f in files]
    summary["provenance"] = provenance(seed=a.seed)
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(jsonio.dumps(summary, indent=2))
    _emit(summary, a.json, f"wrote {out}/train.h5, val.h5, test.h5: {summary['train']}/{summary['val']}/"
                           f"{summary['test']} samples, {summary['units']} units ({a.dataset} {a.variant})")


def cmd_data_cochlea(a):
    from eventsnn.data.cochlea import cochlea
    from eventsnn.data.events import save_events

    check_output(a.out, inputs=a.audio)
    if a.labels is not None and len(a.labels) != len(a.audio):
        raise EventsnnError(f"--labels: {len(a.labels)} labels for {len(a.audio)} audio files (give one per file)")
    ev = cochlea([str(p) for p in a.audio], channels=a.channels, seed=a.seed, labels=a.labels, workers=a.workers,
                 progress=True)
    save_events(ev, a.out)
    n = int(ev.offsets[-1])
    _emit({"out": str(a.out), "samples": len(ev), "channels": ev.n_units, "spikes": n, "duration_s": ev.duration_s},
          a.json, f"wrote {a.out}: {len(ev)} samples, {ev.n_units} channels, {n} spikes")


def cmd_data_speak(a):
    from eventsnn.data.speech import make_speech

    out = check_output(a.out, kind="dir")
    s = make_speech(out, languages=a.languages, size=a.size, seed=a.seed, noise_db=a.noise_snr, channels=a.channels,
                    workers=a.workers, progress=True)
    _emit({k: v for k, v in s.items() if k != "speakers"}, a.json,
          f"wrote {out}/train.h5, test.h5, speakers.json: {s['train']['samples']}/{s['test']['samples']} samples "
          f"({len(s['train']['speakers'])}/{len(s['test']['speakers'])} voices), {s['channels']} channels "
          f"({s['source']})")


# ----------------------------------------------------------------------------- train / export

def _train_flag(name: str) -> str:
    from eventsnn.training.config import flag_for
    return flag_for(name)


def cmd_train(a):
    from eventsnn.training.loop import train
    from eventsnn.training.config import TrainConfig

    fields = TrainConfig.model_fields
    given = {k: getattr(a, k) for k in fields if getattr(a, k, None) is not None}
    if a.resume:
        check_input(a.resume, "--resume", kind="dir")
        extra = sorted(set(given) - {"epochs", "device"}) + (["--config"] if a.config else []) + \
            (["--out"] if a.out else []) + (["--preset"] if a.preset else []) + \
            (["--show-config"] if a.show_config else [])
        if extra:
            flags = ", ".join(e if e.startswith("--") else _train_flag(e) for e in extra)
            raise EventsnnError(f"--resume continues a run with its saved settings; only --epochs and --device may "
                                f"be changed (got {flags})")
        a.resume_hint = f"eventsnn train --resume {shlex.quote(str(a.resume))}"
        summary = train(TrainConfig(), a.resume, resume=True, progress=not a.json, epochs=given.get("epochs"),
                        device=given.get("device"))
    else:
        # precedence: preset < --config file < flags; an error names where the bad value came from
        values, source = {}, {}
        if a.preset:
            values = TrainConfig.from_preset(a.preset)
            source = {k: f"--preset {a.preset}" for k in values}
        if a.config:
            from_file = TrainConfig.from_file(check_input(a.config, "--config"))
            values.update(from_file)
            source.update({k: str(a.config) for k in from_file})
        values.update(given)
        source.update({k: "flag" for k in given})
        if a.show_config:  # the merged, validated settings as a config file; nothing is trained
            import yaml

            cfg = TrainConfig.read(values, source)
            if a.json:
                print(json.dumps(cfg.model_dump()))
            else:
                sys.stdout.write(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
            return
        if not a.out:
            raise EventsnnError("--out: required (the run directory), or --resume RUNDIR to continue a run")
        if not values.get("data"):
            raise EventsnnError("--data: required (the training events file), on the command line or in --config")
        cfg = TrainConfig.read(values, source)
        check_input(cfg.data, "--data" if source.get("data") == "flag" else f"{source.get('data')}: data")
        for key in ("test_data", "val_data"):
            if getattr(cfg, key):
                check_input(getattr(cfg, key), _train_flag(key) if source.get(key) == "flag" else f"{source[key]}: {key}")
        check_output(a.out, inputs=[cfg.data, cfg.test_data, cfg.val_data, a.config], kind="dir")
        again = shlex.join(["eventsnn", *sys.argv[1:]])

        def hint():  # before its first checkpoint a run is not resumable, and train leaves nothing behind
            if (Path(a.out) / "checkpoint.pt").exists():
                return f"eventsnn train --resume {shlex.quote(str(a.out))}"
            return f"the same command again ({again}): no epoch had finished"
        a.resume_hint = hint
        summary = train(cfg, a.out, progress=not a.json)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, rank 0 reports
    text = (f"best epoch {summary['best_epoch']}: validation accuracy {summary['val_acc']:.4f}"
            + (f", test accuracy {summary['test_acc']:.4f}" if "test_acc" in summary else "")
            + f" ({summary['epochs_run']} epochs, {summary['seconds']:.1f} s on {summary['device']})")
    _emit(summary, a.json, text)


def cmd_export(a):
    from eventsnn.bridge import save_network

    check_input(a.rundir, "RUNDIR", kind="dir")
    check_output(a.out, inputs=[a.rundir, a.data])
    events = None
    if a.format == "brian2":
        from eventsnn.data.datasets import load_any
        if a.data is None:
            raise EventsnnError("--data: required with --format brian2 (the script reproduces one of its samples)")
        check_output(Path(a.out).with_suffix(".npz"), inputs=[a.rundir, a.data])
        events = load_any(check_input(a.data, "--data"))
        if not 0 <= a.sample < len(events):
            raise EventsnnError(f"--sample {a.sample}: {a.data} has samples 0..{len(events) - 1}")
    elif a.data is not None or a.sample != 0 or a.dt is not None:
        raise EventsnnError("--data, --sample and --dt apply to --format brian2 only")
    from eventsnn.api import export
    net = export(a.rundir)
    meta = net.meta
    if a.format == "nir":
        from eventsnn.bridge.nir_io import save_nir
        save_nir(net, a.out)
    elif a.format == "brian2":
        from eventsnn.bridge.engines.brian2 import write_brian2_script
        from eventsnn.bridge.engines import check_compatible
        dt = net.dt_ms if a.dt is None else a.dt
        check_compatible(net, events, dt, data=a.data)
        fine = dt < net.dt_ms - 1e-12
        write_brian2_script(net, events, a.sample, a.out, dt_ms=dt, delays="exact" if fine else "round",
                            inputs="exact" if fine else "binned",
                            names={"network": str(a.rundir), "events": str(a.data)})
    else:
        save_network(net, a.out)
    _emit({"out": str(a.out), **{k: v for k, v in meta.items() if k != "provenance"}}, a.json,
          f"wrote {a.out} (delays: {meta['delays']}, validation accuracy {meta['val_acc']:.4f})")


# ----------------------------------------------------------------------------- simulate / compare / verify / demo

def cmd_import_nir(a):
    from eventsnn.bridge import save_network
    from eventsnn.bridge.nir_io import load_nir

    check_input(a.graph, "GRAPH")
    check_output(a.out, inputs=[a.graph])
    net = load_nir(a.graph, a.dt, a.source)
    save_network(net, a.out)
    _emit({"out": str(a.out), "layers": [L.size for L in net.layers], "dt_ms": net.dt_ms}, a.json,
          f"wrote {a.out}: {net.n_inputs} inputs -> {[L.size for L in net.layers]}, dt {net.dt_ms:g} ms")


def _engine_options(a, e) -> dict:
    """The simulate flags given, as the engine's keyword options; a flag the engine does not take is an error."""
    flags = {"--dt": ("dt_ms", a.dt), "--delay-mode": ("delays", a.delay_mode), "--inputs": ("inputs", a.inputs),
             "--device": ("device", a.device), "--target": ("target", a.target),
             "--build-dir": ("build_dir", a.build_dir), "--fast-math": ("ieee_math", False if a.fast_math else None),
             "--compile-only": ("compile_only", a.compile_only or None), "--workers": ("workers", a.workers)}
    opts = {}
    for flag, (key, value) in flags.items():
        if value is None:
            continue
        if key not in e.accepts():
            why = ("it is exact: no time step, unrounded delays, every input spike at its time" if not e.clock
                   else "it does not take this option")
            raise EventsnnError(f"{flag}: not for the {e.name} engine ({why}); leave it out")
        opts[key] = value
    return opts


def cmd_simulate(a):
    import numpy as np

    from eventsnn.bridge import load_network
    from eventsnn.bridge.engines import check_compatible, get_engine, run_to_file
    from eventsnn.data.datasets import load_any
    from eventsnn.data.transforms import Reverse
    from eventsnn.util.files import sha256_file
    from eventsnn.util.provenance import provenance

    e = get_engine(a.engine)
    check_input(a.network, "NETWORK")
    check_input(a.data, "--data")
    check_output(a.out, inputs=[a.network, a.data])
    if a.build_dir:
        check_output(a.build_dir, "--build-dir", inputs=[a.network, a.data], kind="dir")
    opts = _engine_options(a, e)
    if "device" in opts:
        from eventsnn.training.loop import pick_device
        pick_device(opts["device"])
    net = load_network(a.network)
    events = load_any(a.data)
    check_compatible(net, events, opts.get("dt_ms"), data=a.data, network=a.network)
    events = events.subset(np.arange(len(events) if a.first is None else min(a.first, len(events))))
    transform = None
    if a.reverse:
        events = Reverse(a.reverse)(events)
        transform = Reverse(a.reverse).name
    attrs = {"network_sha256": sha256_file(a.network), "events_sha256": sha256_file(a.data),
             "transform": transform or "none", "provenance": provenance()}
    s = run_to_file(a.engine, net, events, a.out, attrs=attrs, progress=not a.json, **opts)
    if "compiled" in s:
        _emit(s, a.json, f"generated and compiled {s['compiled']} (not run)")
        return
    out = {"out": str(a.out), **{k: s[k] for k in ("engine", "dt_ms", "target", "delays", "inputs")},
           "samples": s["samples"], "accuracy": s["accuracy"], "spikes_per_layer": s["spikes_per_layer"],
           "chunks": s["chunks"]}
    _emit(out, a.json, f"wrote {a.out}: {a.engine} dt={out['dt_ms']:g} ms, {s['samples']} samples, "
                       f"accuracy {s['accuracy']:.4f}, hidden spikes {s['spikes_per_layer']}")


def cmd_compare(a):
    from eventsnn.validation.compare import compare_files, format_comparison

    c = compare_files(check_input(a.run_a, "RUN_A"), check_input(a.run_b, "RUN_B"), a.tolerance)
    c.update({"a": str(a.run_a), "b": str(a.run_b)})
    _emit(c, a.json, format_comparison(c, Path(a.run_a).name, Path(a.run_b).name))


def cmd_verify(a):
    from eventsnn.data.transforms import parse_probes
    from eventsnn.validation.verify import verify

    a.resume_hint = "the same command again (" + shlex.join(["eventsnn", *sys.argv[1:]]) + \
        "): finished runs are reused"
    check_input(a.network, "NETWORK")
    check_input(a.data, "--data")
    check_output(a.out, inputs=[a.network, a.data], kind="dir")
    try:
        parse_probes(a.probes)  # every probe checked before the first run
    except EventsnnError as e:
        raise EventsnnError(f"--probes: {e}") from None
    if a.scheduler:
        check_scheduler(a.scheduler)
    report = verify(a.network, a.data, a.out, dts=a.dt, probes=a.probes, target=a.target, first=a.first,
                    workers=a.workers, progress=not a.json, scheduler=a.scheduler, event=not a.no_event,
                    fine_samples=None if a.fine_samples == 0 else a.fine_samples, keep_runs=a.keep_runs)
    if a.json:
        _emit(report, True)
    else:
        print((Path(a.out) / "report.md").read_text())


def cmd_demo(a):
    from eventsnn.validation.demo import run_demo

    check_output(a.out, kind="dir")
    a.resume_hint = "the same command again (" + shlex.join(["eventsnn", *sys.argv[1:]]) + \
        "): finished steps are reused"
    res = run_demo(a.out, quick=a.quick, target=a.target, workers=a.workers, progress=not a.json)
    _emit(res, a.json)


def cmd_sweep(a):
    from eventsnn.sweep import load_config, run_sweep
    from eventsnn.training.loop import pick_device

    check_input(a.config, "CONFIG")
    load_config(a.config, quick=a.quick)  # every problem of the config, before any work
    check_output(a.out, inputs=[a.config], kind="dir")
    pick_device(a.device)
    if a.scheduler:
        check_scheduler(a.scheduler)
    a.resume_hint = "the same command again (" + shlex.join(["eventsnn", *sys.argv[1:]]) + \
        "): finished cells are kept"
    res = run_sweep(a.config, a.out, workers=a.workers, quick=a.quick, progress=not a.json, device=a.device,
                    scheduler=a.scheduler)
    _emit(res, a.json, f"{res['done']}/{res['cells']} cells done ({res['ran']} this run); table: {res['table']}"
                       + (f"; figure: {res['figure']}" if res.get("figure") else ""))


# ----------------------------------------------------------------------------- parser

class _UsageError(Exception):
    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default in its help (unless the default is None/False or already shown)."""

    def _get_help_string(self, action):
        h = action.help or ""
        # identity, not ==: a default of 0 or 0.0 (a seed, a jitter, a sample index) is a value worth showing
        if "%(default)" in h or "default:" in h or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS or not action.option_strings:
            return h
        return h + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (raised, so that ``main`` reports them like any other error)."""

    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kw)

    def error(self, message):
        raise _UsageError(self.prog, message)


def _common(q):
    """--json and --debug, accepted before or after the subcommand."""
    q.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print one JSON object on stdout (errors too: {\"error\": ...})")
    q.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the traceback of an error")


def _add_train_flags(tr):
    """The training flags, generated from the one schema (:class:`eventsnn.training.loop.config.TrainConfig`)."""
    import typing

    from eventsnn.training.config import RENAMED_FLAGS, TrainConfig

    for name, f in TrainConfig.model_fields.items():
        flag = _train_flag(name)
        default = f.get_default(call_default_factory=True)
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        help_ = f.description + ("" if shown in (None, "") else f" (default: {shown})")
        ann = f.annotation
        if ann is bool:
            tr.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif typing.get_origin(ann) is typing.Literal:
            tr.add_argument(flag, dest=name, choices=list(typing.get_args(ann)), help=help_)
        elif typing.get_origin(ann) is list:
            tr.add_argument(flag, dest=name, type=_int_list, metavar="N[,N...]", help=help_)
        elif ann is int or ann == int | None:
            tr.add_argument(flag, dest=name, type=_number(int), metavar="N", help=help_)
        elif ann is float or f.metadata:
            tr.add_argument(flag, dest=name, type=_number(float), metavar="X", help=help_)
        else:
            tr.add_argument(flag, dest=name, metavar=name.split("_")[-1].upper(), help=help_)
    for old, new in RENAMED_FLAGS.items():
        act = tr._option_string_actions[new]
        _renamed(tr, old, new, act.dest, type=act.type, choices=act.choices)


class _Renamed(argparse.Action):
    """An old spelling of a flag: works for one release, hidden from --help, with a one-line warning naming the
    new one (scripts written against the old spelling keep running)."""

    def __init__(self, option_strings, dest, new: str, **kw):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn(f"{option_string} is deprecated and will be removed; use {self.new}", FutureWarning)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def _renamed(q, old: str, new: str, dest: str, flag: bool = False, **kw):
    q.add_argument(old, action=_Renamed, new=new, dest=dest, nargs=0 if flag else None, **kw)


class _VersionAction(argparse.Action):
    """``--version``: computed only when asked (it looks up package versions and the git commit)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from eventsnn.util.provenance import versions_line
        print(versions_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one group of subcommands per stage of the data flow."""
    p = _Parser(prog="eventsnn", description="Train timing-based spiking networks (surrogate gradients, learnable "
                "delays) and verify them: in Brian2 at fine time resolution and exactly, with the event-driven "
                "engine (no time step). Export to a network file, NIR or a readable Brian2 script.")
    p.add_argument("--version", action=_VersionAction, nargs=0,
                   help="show the versions of eventsnn, torch, brian2, numpy ... and exit")
    _common(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _data_parsers(sub)
    _model_parsers(sub)
    _run_parsers(sub)
    _sweep_parser(sub)
    return p


def _data_parsers(sub) -> None:
    """``eventsnn data make | prepare | cochlea | speak | info | transform``."""
    from eventsnn.data.datasets import DEFAULTS, TASK_NAMES

    d = sub.add_parser("data", help="make, inspect and transform event datasets")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION", parser_class=_Parser)
    m = dsub.add_parser("make", help="generate a synthetic timing task (ours, rate-matched, or the paper's)",
                        description="Tasks: isi, polychrony, coincidence (ours: every unit's count has the same "
                                    "distribution in every class) and the paper's, made as the authors make them: "
                                    "paper-isi (ISI figure), paper-ccisi (cross-channel ISI vs --max-isi-ms figure), "
                                    "paper-coincidence (accuracy vs --overlap figure).")
    m.add_argument("task", choices=list(TASK_NAMES), help="which task")
    m.add_argument("--out", required=True, type=Path, help="events file to write")
    m.add_argument("--samples", type=POS_INT, help="number of samples (default: 1000 for ours; the authors' sizes "
                                                   "for paper-*: ~3600 for paper-isi/ccisi, 1500 for coincidence)")
    m.add_argument("--seed", type=SEED, default=0, help="sample seed (use different seeds for train and test)")
    m.add_argument("--task-seed", type=SEED, default=0, help="seed of the class structure (keep equal across splits)")
    m.add_argument("--units", type=POS_INT, help="input units (default: isi 10, polychrony 20, coincidence 30)")
    m.add_argument("--classes", type=POS_INT, help="classes (default: isi 4, polychrony 4, coincidence 3)")
    m.add_argument("--duration-ms", type=POS_FLOAT, help="sample duration in ms (default: " + ", ".join(
        f"{t} {DEFAULTS[t]['duration_ms']:g}" for t in TASK_NAMES) + ")")
    m.add_argument("--jitter-ms", type=NONNEG_FLOAT, default=0.0, help="Gaussian jitter added to every spike (ms)")
    m.add_argument("--overlap", type=PROB, help="coincidence tasks only: 0 (easy) .. 1 (chance) (default: 0); for "
                                                "paper-coincidence the overlap of the on/off count distributions")
    m.add_argument("--max-isi-ms", type=POS_FLOAT, help="paper-isi/paper-ccisi only: longest interval (default 100; "
                                                        "the paper sweeps 50..500 for paper-ccisi)")
    _common(m)
    m.set_defaults(func=cmd_data_make)
    pr = dsub.add_parser("prepare", help="the paper's SHD/SSC variants (whole, part, norm) from the official files",
                         description="Builds the authors' 'whole', 'part' or 'norm' dataset from the union of the "
                                     "official files: binary 100-bin raster over 1.4 s, whole batches of 256 per file, "
                                     "count floor 2, caps (SHD 1%/2000 samples, SSC 2%/20000), class balancing, "
                                     "and their 60/15/15 split (the last 10% unused). Writes OUT/train.h5, val.h5, "
                                     "test.h5 and summary.json.")
    pr.add_argument("dataset", choices=["shd", "ssc"], help="which dataset")
    pr.add_argument("--train", required=True, type=Path, help="official training file (shd_train.h5 / ssc_train.h5)")
    pr.add_argument("--test", required=True, type=Path, help="official test file")
    pr.add_argument("--val", type=Path, help="official validation file (SSC has one; the authors use it too)")
    _renamed(pr, "--valid", "--val", "val", type=Path)
    pr.add_argument("--variant", required=True, choices=["whole", "part", "norm"], help="which variant")
    pr.add_argument("--duration-bins", type=POS_INT, default=200,
                    help="sample length in 14.14 ms bins (the authors pad the 100 bins to 200 in training)")
    pr.add_argument("--seed", type=SEED, default=0, help="seed of spike selection, balancing and shuffling")
    pr.add_argument("--out", required=True, type=Path, help="output directory")
    _common(pr)
    pr.set_defaults(func=cmd_data_prepare)
    co = dsub.add_parser("cochlea", help="audio files through the SHD cochlea model (lauscher 1.0.1's chain) to spikes",
                         description="WAV/FLAC/... files (stereo averaged to mono) through the cochlea model that made "
                                     "SHD, compiled: spike for spike equal to lauscher 1.0.1 (file i draws from "
                                     "numpy.random.RandomState([SEED, i])). Writes one events file in SHD layout.")
    co.add_argument("audio", nargs="+", type=Path, metavar="AUDIO", help="audio files (anything libsndfile reads)")
    co.add_argument("--out", required=True, type=Path, help="events file to write")
    co.add_argument("--channels", type=_number(int, 1, 10_000), default=700, help="cochlea channels (default: 700)")
    co.add_argument("--labels", type=_int_list, help="one class label per file, comma-separated (default: 0 for all)")
    co.add_argument("--seed", type=SEED, default=0, help="seed of the release draws")
    co.add_argument("--workers", type=POS_INT, default=1, help="files in parallel (processes)")
    _common(co)
    co.set_defaults(func=cmd_data_cochlea)
    sp = dsub.add_parser("speak", help="spoken digits: synthetic voices (espeak-ng) through the SHD cochlea model",
                         description="Digits 0-9 in English and German (classes en-0..de-9) said by synthetic voices "
                                     "(variant, pitch, range, rate), test voices never in training, through the SHD "
                                     "cochlea model. Not SHD. Writes OUT/train.h5, test.h5 (SHD layout with "
                                     "extra/speaker, extra/keys) and speakers.json. Sizes (voices train/test x "
                                     "repeats; samples with both languages): tiny 1/1x1 (40), small 2/1x1 (60, about "
                                     "a minute), default 80/20x3 (6000, about an hour on 2 cores), large 160/40x3 "
                                     "(12000).")
    sp.add_argument("--out", required=True, type=Path, help="output directory")
    sp.add_argument("--languages", default="en,de", help="comma-separated subset of en,de (default: en,de)")
    sp.add_argument("--size", default="default", choices=["tiny", "small", "default", "large"],
                    help="how many voices and repetitions (default: default)")
    sp.add_argument("--noise-snr", type=_number(float), metavar="DB", help="add white noise at this SNR in dB")
    sp.add_argument("--channels", type=_number(int, 1, 10_000), default=700, help="cochlea channels (default: 700)")
    sp.add_argument("--seed", type=SEED, default=0, help="seed of voices, placement, noise and release draws")
    sp.add_argument("--workers", type=POS_INT, default=1, help="samples in parallel (processes)")
    _common(sp)
    sp.set_defaults(func=cmd_data_speak)
    i = dsub.add_parser("info", help="sizes, rates, classes (and a count-only baseline)")
    i.add_argument("file", type=Path, metavar="FILE", help="events file (ours, official SHD/SSC, or *_norm)")
    i.add_argument("--rate-baseline", action="store_true", help="held-out accuracy of logistic regression on counts")
    _common(i)
    i.set_defaults(func=cmd_data_info)
    t = dsub.add_parser("transform", help="apply probes/transforms and write a new events file")
    t.add_argument("file", type=Path, metavar="FILE", help="events file to read (never modified)")
    t.add_argument("--out", required=True, type=Path, help="events file to write")
    t.add_argument("--reverse", nargs="?", const="window", choices=["window", "full", "max"],
                   help="time reversal: within each sample's first-to-last spike window (the paper's), of the whole "
                        "duration, or t -> max(t) - t (tonic's)")
    t.add_argument("--jitter", type=NONNEG_FLOAT, metavar="MS", help="Gaussian jitter per spike (ms)")
    t.add_argument("--jitter-neuron", type=NONNEG_FLOAT, metavar="MS", help="one Gaussian offset per unit (ms)")
    t.add_argument("--delete", type=PROB, metavar="P", help="delete each spike with probability P")
    t.add_argument("--randomize", type=PROB, metavar="F", help="move a fraction F of each unit's spikes")
    t.add_argument("--remove-rate", action="store_true", help="the paper's rate-removal (norm) construction")
    t.add_argument("--seed", type=SEED, default=0, help="seed of the random transforms")
    _common(t)
    t.set_defaults(func=cmd_data_transform)


def _model_parsers(sub) -> None:
    """``eventsnn train | export | import-nir``."""
    tr = sub.add_parser("train", help="surrogate-gradient training with learnable delays")
    from eventsnn.training.config import preset_names

    tr.add_argument("--preset", metavar="NAME",
                    help=f"start from a named set of settings shipped with eventsnn ({', '.join(preset_names())}: "
                         "the authors' recipes; --config and flags override it)")
    tr.add_argument("--config", type=Path, help="YAML, TOML or JSON file of training settings (overrides --preset; "
                                                "flags override it)")
    tr.add_argument("--show-config", action="store_true",
                    help="print the merged settings (preset < --config < flags) as YAML (with --json: JSON) and "
                         "exit without training")
    tr.add_argument("--out", type=Path, help="run directory to create")
    tr.add_argument("--resume", type=Path, metavar="RUNDIR",
                    help="continue an interrupted run exactly (only --epochs and --device may change)")
    _add_train_flags(tr)
    _common(tr)
    tr.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="write the trained (validation-selected) network: a network file, a NIR graph "
                                      "or a standalone Brian2 script")
    e.add_argument("rundir", type=Path, metavar="RUNDIR", help="run directory of eventsnn train")
    e.add_argument("--out", required=True, type=Path, help="network file to write (outside RUNDIR)")
    e.add_argument("--format", choices=["h5", "nir", "brian2"], default="h5",
                   help="h5: eventsnn's network file; nir: a NIR graph (axonal delays only; what NIR cannot say "
                        "goes to its metadata); brian2: a readable Brian2 script (+ .npz of parameters) that "
                        "reproduces one sample of --data")
    e.add_argument("--data", type=Path, help="--format brian2: events file of the sample")
    e.add_argument("--sample", type=_number(int, 0), default=0, help="--format brian2: which sample")
    e.add_argument("--dt", type=POS_FLOAT, help="--format brian2: step in ms (finer than the training dt: exact "
                                                "delays and inputs) (default: the training dt)")
    _common(e)
    e.set_defaults(func=cmd_export)

    n = sub.add_parser("import-nir", help="a NIR graph as a network file (to simulate and verify it)")
    n.add_argument("graph", type=Path, metavar="GRAPH", help="NIR file")
    n.add_argument("--dt", type=POS_FLOAT, help="the step in ms (required unless the graph is ours; for snntorch "
                                                "and norse: the step the library simulated with)")
    n.add_argument("--source", choices=["generic", "snntorch", "norse"], default="generic",
                   help="whose conventions: generic = NIR's continuous-time equations; snntorch / norse = that "
                        "library's exporter and discrete-time update, reproduced exactly (one step later per layer)")
    n.add_argument("--out", required=True, type=Path, help="network file to write")
    _common(n)
    n.set_defaults(func=cmd_import_nir)


def _run_parsers(sub) -> None:
    """``eventsnn simulate | compare | verify | demo``."""
    from eventsnn.bridge.engines import ENGINES, TARGETS

    s = sub.add_parser("simulate", help="run a network file on events: torch or Brian2 at a dt, or the exact "
                                        "event-driven engine")
    s.add_argument("network", type=Path, metavar="NETWORK", help="network file")
    s.add_argument("--data", required=True, type=Path, help="events file")
    s.add_argument("--engine", required=True, choices=list(ENGINES),
                   help="torch / brian2: clock-driven at --dt; event: exact, continuous time (no --dt)")
    s.add_argument("--dt", type=POS_FLOAT, help="step in ms; must divide the training dt (default: the training dt)")
    s.add_argument("--target", choices=TARGETS, help="Brian2 code generation target (default: numpy)")
    s.add_argument("--delay-mode", choices=["round", "exact"],
                   help="round: delays on the training grid; exact: real-valued (rounded to --dt) (default: round)")
    _renamed(s, "--delays", "--delay-mode", "delay_mode", choices=["round", "exact"])
    s.add_argument("--inputs", choices=["binned", "exact"],
                   help="binned: the binary raster training saw; exact: every spike, at --dt (default: binned)")
    s.add_argument("--reverse", choices=["window", "full", "max"], help="time-reverse the inputs first")
    s.add_argument("--first", type=POS_INT, metavar="N", help="the first N samples only (default: all)")
    _renamed(s, "--samples", "--first", "first", type=POS_INT)
    s.add_argument("--device", help="torch engine device (default: cpu)")
    s.add_argument("--build-dir", type=Path, help="keep the Brian2 build here (default: a temporary one, removed)")
    s.add_argument("--compile-only", action="store_true", help="standalone targets: generate and compile, do not run")
    s.add_argument("--fast-math", action="store_true", help="Brian2's default -ffast-math -march=native flags")
    s.add_argument("--workers", type=POS_INT,
                   help="brian2 / event: split the samples over this many processes (e.g. the number of cores) "
                        "(default: 1)")
    s.add_argument("--out", required=True, type=Path, help="run file to write")
    _common(s)
    s.set_defaults(func=cmd_simulate)

    c = sub.add_parser("compare", help="compare two run files")
    c.add_argument("run_a", type=Path, metavar="RUN_A", help="run file")
    c.add_argument("run_b", type=Path, metavar="RUN_B", help="run file")
    c.add_argument("--tolerance", type=NONNEG_FLOAT,
                   help="spike matching tolerance in ms (default: the coarser dt of the two runs, at least 0.1 ms: "
                        "a clock-driven run is off continuous time by about a step per layer)")
    _common(c)
    c.set_defaults(func=cmd_compare)

    v = sub.add_parser("verify", help="torch vs Brian2 at the training dt and finer, with probes")
    v.add_argument("network", type=Path, metavar="NETWORK", help="network file")
    v.add_argument("--data", required=True, type=Path, help="events file (test samples)")
    v.add_argument("--dt", type=_dt_list, metavar="MS[,MS...]",
                   help="step sizes in ms, each dividing the training dt (default: the training dt, a tenth and a "
                        "hundredth of it: 1,0.1,0.01 for a 1 ms model)")
    v.add_argument("--probes", default="reverse", help="comma list: reverse, jitter[:MS], jitter-neuron[:MS], "
                                                        "delete[:P], randomize[:F]; '' for none")
    v.add_argument("--target", default="numpy", choices=TARGETS, help="Brian2 code generation target")
    v.add_argument("--first", type=POS_INT, metavar="N", help="the first N samples only (default: all)")
    _renamed(v, "--samples", "--first", "first", type=POS_INT)
    v.add_argument("--fine-samples", type=_number(int, 0), default=16, metavar="N",
                   help="Brian2 at every dt and torch finer than the training dt on the first N samples only "
                        "(default 16; 0: all samples); the exact runs and the reference, torch at the training dt, "
                        "always take every sample")
    v.add_argument("--workers", type=POS_INT, default=1,
                   help="processes (a Dask LocalCluster): over runs when there are at least as many runs, else over "
                        "each run's samples")
    v.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run every run as a task of this Dask cluster (workers must see the same paths)")
    _renamed(v, "--no-exact", "--no-event", "no_event", flag=True)
    v.add_argument("--no-event", action="store_true",
                   help="skip the exact event-driven runs (their cost grows with the spike count: slow for networks "
                        "that fire fast without a refractory period)")
    v.add_argument("--keep-runs", action="store_true",
                   help="keep the run files (OUT/runs/*.h5: every spike of every run, for eventsnn compare or your "
                        "own analysis); by default they are deleted once the report is written")
    v.add_argument("--out", required=True, type=Path, help="report directory (resumable)")
    _common(v)
    v.set_defaults(func=cmd_verify)

    dm = sub.add_parser("demo", help="the whole pipeline on the embedded polychrony task")
    dm.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (resumable)")
    dm.add_argument("--quick", action="store_true", help="smaller task and fewer epochs (for tests)")
    dm.add_argument("--target", default="numpy", choices=TARGETS, help="Brian2 code generation target")
    dm.add_argument("--workers", type=POS_INT, default=min(2, usable_cores()), help="worker processes")
    _common(dm)
    dm.set_defaults(func=cmd_demo)


def _sweep_parser(sub) -> None:
    """``eventsnn sweep``."""
    sw = sub.add_parser("sweep", help="a grid of datasets x transforms x models x seeds (the paper's figures)",
                        description="Runs every cell of CONFIG (YAML; see examples/paper/): data, transforms applied "
                                    "to train/val/test, validation-selected training, test accuracy, test-time "
                                    "probes, optional Brian2 verification. Resumable cell by cell; writes "
                                    "results.jsonl, table.md and figure.png in OUT.")
    sw.add_argument("config", type=Path, metavar="CONFIG", help="sweep config (YAML)")
    sw.add_argument("--out", required=True, type=Path,
                    help="sweep directory (resumable; add seeds, grid values, models or verify to the config and "
                         "rerun: only the new cells run)")
    sw.add_argument("--workers", type=POS_INT, default=1,
                    help="cells trained at once on a Dask LocalCluster (threads are shared out)")
    sw.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                    help="run the cells on this Dask cluster (workers must see the same paths)")
    sw.add_argument("--quick", action="store_true", help="apply the config's quick: overrides (small, for tests)")
    sw.add_argument("--device", default="cpu", help="torch device for training (cpu, cuda, cuda:1)")
    _common(sw)
    sw.set_defaults(func=cmd_sweep)


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split()) or "error"


def _wants(flag: str, argv) -> bool:
    return any(x == flag for x in argv)


def _interrupt_handling() -> dict:
    """Ctrl-C always ends a command with exit code 130 and the resume hint.

    SIGINT raises ``KeyboardInterrupt`` in the main thread wherever it happens to be -- and Python swallows it
    when that is a weakref callback or a ``__del__`` (printing a traceback and going on, to exit 0 at the end).
    Such a swallowed interrupt is raised again at once in the main flow; ``state["hit"]`` also records it, so
    that ``main`` never reports success after an interrupt."""
    import _thread
    import signal
    import threading

    state = {"hit": False, "timers": []}

    def on_sigint(signum, frame):
        state["hit"] = True
        raise KeyboardInterrupt

    previous_hook = sys.unraisablehook

    def unraisable(u):
        if u.exc_type is not None and issubclass(u.exc_type, KeyboardInterrupt):
            # swallowed where it landed: raise it again in the main flow (from another thread, a moment later,
            # so that the handler does not run at once, inside this hook, where it would be swallowed again)
            t = threading.Timer(0.02, _thread.interrupt_main)
            t.daemon = True
            state["timers"].append(t)
            t.start()
            return
        previous_hook(u)

    try:
        previous_handler = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread (main() called from a thread): leave the handlers alone
        return state
    sys.unraisablehook = unraisable

    def restore():
        signal.signal(signal.SIGINT, previous_handler)
        sys.unraisablehook = previous_hook
    state["restore"] = restore
    return state


def _from_interrupt(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the cause or context chain of ``e``."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # torch's CPU allocator asks for transparent huge pages for its large tensors (read once, when torch loads;
    # inherited by the sweep's workers): a training step at 1 ms allocates and first touches hundreds of MB, and
    # 4 kB page faults were a fifth of its time. Set THP_MEM_ALLOC_ENABLE=0 to turn it off.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    as_json, debug = _wants("--json", argv), _wants("--debug", argv)
    interrupt = _interrupt_handling()
    try:
        return _main(argv, as_json, debug, interrupt)
    finally:
        if "restore" in interrupt:  # main() called from Python: give the caller its handlers back
            interrupt["restore"]()


def _main(argv, as_json: bool, debug: bool, interrupt: dict) -> int:
    args = None

    def interrupted() -> int:
        import signal
        try:  # a second Ctrl-C (or a re-raised swallowed one) must not cut the message or the exit short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:
            pass
        for t in interrupt.get("timers", ()):
            t.cancel()
        hint = getattr(args, "resume_hint", None)
        hint = hint() if callable(hint) else hint
        msg = f"interrupted; resume with: {hint}" if hint else "interrupted; no output was written"
        print(f"eventsnn: {msg}", file=sys.stderr)
        return 130

    def report(msg: str, prefix: str = "eventsnn: error: ") -> None:
        line = _one_line(msg)
        if as_json:
            print(json.dumps({"error": line}))
        print(prefix + line, file=sys.stderr)

    shown = set()

    def show_warning(message, category, filename, lineno, file=None, line=None):
        text = _one_line(message)
        if text not in shown:  # the same warning from several places (training, torch, Brian2): once
            shown.add(text)
            print(f"eventsnn: warning: {text}", file=sys.stderr)

    warnings.showwarning = show_warning
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.json = getattr(args, "json", False)
        args.debug = getattr(args, "debug", False)
        args.func(args)
    except _UsageError as e:
        report(f"{e} (see {e.prog} --help)", f"{e.prog}: error: ")
        return 2
    except EventsnnError as e:
        if debug:
            import traceback
            traceback.print_exc()
        report(str(e))
        return 2
    except KeyboardInterrupt:
        return interrupted()
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except MemoryError:
        if debug:
            raise
        report("out of memory; use fewer samples, a smaller batch or a coarser dt")
        return 2
    except Exception as e:  # a bug, not bad input: say so in one line
        if interrupt["hit"] or _from_interrupt(e):
            # Ctrl-C inside compiled code (numba's dispatcher, a C extension) comes back wrapped, e.g. as
            # "SystemError: ... returned a result with an exception set" caused by the KeyboardInterrupt
            return interrupted()
        if debug:
            raise
        report(f"internal error {type(e).__name__}: {e} (please report it; --debug shows the traceback)")
        return 1
    if interrupt["hit"]:  # an interrupt swallowed past every re-raise: never report success
        return interrupted()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _quiet_broken_pipe()
    return 0


def _quiet_broken_pipe() -> int:
    """The reader went away (``eventsnn data info F | head``): stop quietly, as ``yes | head`` does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
