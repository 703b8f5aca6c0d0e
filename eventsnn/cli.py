"""The ``eventsnn`` command line: the one composition root (imports the other packages lazily).

Errors in user input print one line on stderr and exit with code 2
(``--debug`` shows the traceback). ``--json`` prints one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import EventsnnError, fail


def _floats(s: str) -> list[float]:
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def _emit(obj, as_json: bool, text: str | None = None):
    if as_json:
        print(json.dumps(obj, indent=None, default=float))
    elif text is not None:
        print(text)


# ----------------------------------------------------------------------------- data

def cmd_data_make(a):
    from .datasets import make_coincidence, make_isi, make_polychrony
    from .events import save_events

    common = dict(samples=a.samples, seed=a.seed, task_seed=a.task_seed, jitter_ms=a.jitter_ms)
    if a.samples < 1:
        raise EventsnnError("--samples must be >= 1")
    if a.task == "isi":
        ev = make_isi(units=a.units or 10, classes=a.classes or 4, duration_ms=a.duration_ms or 100.0, **common)
    elif a.task == "polychrony":
        ev = make_polychrony(units=a.units or 20, classes=a.classes or 4, duration_ms=a.duration_ms or 100.0, **common)
    else:
        ev = make_coincidence(group_size=(a.units // 3) if a.units else 10, overlap=a.overlap, **common)
    save_events(ev, a.out)
    _emit({"out": str(a.out), "samples": len(ev), "units": ev.n_units, "classes": ev.n_classes,
           "duration_s": ev.duration_s}, a.json, f"wrote {a.out}: {len(ev)} samples, {ev.n_units} units, "
                                               f"{ev.n_classes} classes, {ev.duration_s * 1e3:g} ms")


def cmd_data_info(a):
    import numpy as np

    from .datasets import count_baseline, load_any

    ev = load_any(a.file)
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
    text = "\n".join(f"{k}: {v}" for k, v in info.items())
    _emit(info, a.json, text)


def cmd_data_transform(a):
    from .datasets import load_any
    from .events import save_events
    from .transforms import Compose, Delete, Jitter, RandomizeTiming, RemoveRate, Reverse

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
    ev.source = f"{ev.source}|{Compose(ts).name}"
    save_events(ev, a.out)
    _emit({"out": str(a.out), "transform": Compose(ts).name, "samples": len(ev), "units": ev.n_units},
          a.json, f"wrote {a.out} ({Compose(ts).name}): {len(ev)} samples, {ev.n_units} units")


# ----------------------------------------------------------------------------- train / export

def cmd_train(a):
    from dataclasses import fields

    from .train import TrainConfig, train

    if a.resume:
        summary = train(TrainConfig(), a.resume, resume=True, progress=not a.json)
    else:
        if not a.out or not a.data and not a.config:
            raise EventsnnError("train needs --data F --out RUNDIR (or --resume RUNDIR)")
        values = TrainConfig.from_file(a.config) if a.config else {}
        for f in fields(TrainConfig):
            v = getattr(a, f.name, None)
            if v is not None:
                values[f.name] = v
        cfg = TrainConfig(**values)
        summary = train(cfg, a.out, progress=not a.json)
    text = (f"best epoch {summary['best_epoch']}: validation accuracy {summary['val_acc']:.4f}"
            + (f", test accuracy {summary['test_acc']:.4f}" if "test_acc" in summary else "")
            + f" ({summary['epochs_run']} epochs, {summary['seconds']:.1f} s on {summary['device']})")
    _emit(summary, a.json, text)


def cmd_export(a):
    import torch

    from eventsnn.bridge import save_network
    from eventsnn.bridge.from_torch import network_from_model

    from .train import load_checkpoint, load_trained_model

    model = load_trained_model(a.rundir, dtype=torch.float64)
    ck = load_checkpoint(Path(a.rundir) / "checkpoint.pt")
    meta = {"source_rundir": str(Path(a.rundir).resolve()), "best_epoch": int(ck["best"]["epoch"]),
            "val_acc": float(ck["best"]["val_acc"]), "delays": ck["config"]["delays"]}
    net = network_from_model(model, meta)
    save_network(net, a.out)
    _emit({"out": str(a.out), **meta}, a.json, f"wrote {a.out} (delays: {meta['delays']}, "
                                                f"validation accuracy {meta['val_acc']:.4f})")


# ----------------------------------------------------------------------------- simulate / compare / verify / demo

def cmd_simulate(a):
    import numpy as np

    from eventsnn.bridge import load_network

    from .datasets import load_any
    from .errors import sha256_file
    from .runfile import save_run
    from .transforms import Reverse

    net = load_network(a.network)
    events = load_any(a.data)
    if events.n_units != net.n_inputs:
        raise fail(a.data, f"{events.n_units} units but the network {a.network} has {net.n_inputs} inputs")
    dt = a.dt if a.dt is not None else net.dt_ms
    if not dt > 0:
        raise EventsnnError(f"--dt must be > 0, got {dt}")
    idx = np.arange(len(events) if a.samples is None else min(a.samples, len(events)))
    events = events.subset(idx)
    transform = None
    if a.reverse:
        events = Reverse(a.reverse)(events)
        transform = f"reverse-{a.reverse}"
    progress = not a.json
    try:
        if a.engine == "torch":
            from eventsnn.bridge.from_torch import simulate_torch
            run = simulate_torch(net, events, dt_ms=dt, delays=a.delays, inputs=a.inputs, progress=progress,
                                 device=a.device)
        else:
            from eventsnn.bridge.brian2_sim import simulate_brian2
            build = Path(a.build_dir) if a.build_dir else Path(a.out).parent / f".eventsnn_build_{os.getpid()}"
            try:
                run = simulate_brian2(net, events, dt_ms=dt, target=a.target, delays=a.delays, inputs=a.inputs,
                                      build_dir=build, progress=progress, compile_only=a.compile_only,
                                      exact_math=not a.fast_math, workers=a.workers)
            finally:
                if not a.build_dir and not a.compile_only:
                    import shutil
                    shutil.rmtree(build, ignore_errors=True)
            if a.compile_only:
                _emit({"compiled": str(run)}, a.json, f"generated and compiled {run} (not run)")
                return
    except ValueError as e:
        raise EventsnnError(str(e)) from None
    run.attrs.update({"network_sha256": sha256_file(a.network), "events_sha256": sha256_file(a.data),
                      "transform": transform or "none"})
    save_run(run, a.out)
    out = {"out": str(a.out), "engine": run.engine, "dt_ms": run.dt_ms, "target": run.target, "delays": run.delays,
           "inputs": run.inputs, "samples": run.n_samples, "accuracy": run.accuracy,
           "spikes_per_layer": [int(len(L.step)) for L in run.layers]}
    _emit(out, a.json, f"wrote {a.out}: {run.engine} dt={run.dt_ms:g} ms, {run.n_samples} samples, "
                       f"accuracy {run.accuracy:.4f}, hidden spikes {out['spikes_per_layer']}")


def cmd_compare(a):
    from eventsnn.validation.compare import compare_runs, format_comparison

    from .runfile import load_run

    ra, rb = load_run(a.run_a), load_run(a.run_b)
    c = compare_runs(ra, rb, a.tolerance)
    c.update({"a": str(a.run_a), "b": str(a.run_b)})
    _emit(c, a.json, format_comparison(c, Path(a.run_a).name, Path(a.run_b).name))


def cmd_verify(a):
    from eventsnn.validation.verify import verify

    report = verify(a.network, a.data, a.out, dts=a.dt, probes=a.probes, target=a.target, samples=a.samples,
                    workers=a.workers, progress=not a.json)
    if a.json:
        _emit(report, True)
    else:
        print((Path(a.out) / "report.md").read_text())


def cmd_demo(a):
    from eventsnn.validation.demo import run_demo

    res = run_demo(a.out, quick=a.quick, target=a.target, workers=a.workers, progress=not a.json)
    _emit(res, a.json)


# ----------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eventsnn", description="Train timing-based spiking networks and verify them "
                                "in Brian2 at fine time resolution.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def js(q):
        q.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    d = sub.add_parser("data", help="make, inspect and transform event datasets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    m = dsub.add_parser("make", help="generate a synthetic timing task")
    m.add_argument("task", choices=["isi", "polychrony", "coincidence"])
    m.add_argument("--out", required=True, type=Path)
    m.add_argument("--samples", type=int, default=1000)
    m.add_argument("--seed", type=int, default=0, help="sample seed (use different seeds for train and test)")
    m.add_argument("--task-seed", type=int, default=0, help="seed of the class structure (keep equal across splits)")
    m.add_argument("--units", type=int)
    m.add_argument("--classes", type=int)
    m.add_argument("--duration-ms", type=float)
    m.add_argument("--jitter-ms", type=float, default=0.0)
    m.add_argument("--overlap", type=float, default=0.0, help="coincidence: 0 (easy) .. 1 (chance)")
    js(m)
    m.set_defaults(func=cmd_data_make)
    i = dsub.add_parser("info", help="sizes, rates, classes (and a count-only baseline)")
    i.add_argument("file", type=Path)
    i.add_argument("--rate-baseline", action="store_true", help="held-out accuracy of logistic regression on counts")
    js(i)
    i.set_defaults(func=cmd_data_info)
    t = dsub.add_parser("transform", help="apply probes/transforms and write a new events file")
    t.add_argument("file", type=Path)
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--reverse", nargs="?", const="window", choices=["window", "full"])
    t.add_argument("--jitter", type=float, metavar="MS")
    t.add_argument("--jitter-neuron", type=float, metavar="MS")
    t.add_argument("--delete", type=float, metavar="P")
    t.add_argument("--randomize", type=float, metavar="F", help="move a fraction F of each unit's spikes")
    t.add_argument("--remove-rate", action="store_true", help="the paper's rate-removal (norm) construction")
    t.add_argument("--seed", type=int, default=0)
    js(t)
    t.set_defaults(func=cmd_data_transform)

    tr = sub.add_parser("train", help="surrogate-gradient training with learnable delays")
    tr.add_argument("--data", help="training events file (validation is carved from it)")
    tr.add_argument("--test-data", dest="test_data", help="held-out test file (evaluated once, at the end)")
    tr.add_argument("--config", help="YAML, TOML or JSON file of training settings (flags override it)")
    tr.add_argument("--out", type=Path, help="run directory")
    tr.add_argument("--resume", type=Path, metavar="RUNDIR", help="continue an interrupted run exactly")
    tr.add_argument("--val-fraction", dest="val_fraction", type=float)
    tr.add_argument("--delays", choices=["none", "axonal", "synaptic"])
    tr.add_argument("--max-delay-ms", dest="max_delay_ms", type=float)
    tr.add_argument("--recurrent", action="store_true", default=None)
    tr.add_argument("--hidden", type=lambda s: [int(x) for x in s.split(",")], help="e.g. 64 or 128,128")
    tr.add_argument("--readout", choices=["max", "mean", "last", "softmax-sum"])
    tr.add_argument("--reset", choices=["zero", "subtract"])
    tr.add_argument("--surrogate", choices=["fast-sigmoid", "atan", "multi-gaussian"])
    tr.add_argument("--slope", type=float)
    tr.add_argument("--learn-taus", dest="learn_taus", action="store_true", default=None)
    tr.add_argument("--tau-mem-ms", dest="tau_mem_ms", type=float)
    tr.add_argument("--tau-syn-ms", dest="tau_syn_ms", type=float)
    tr.add_argument("--dt-ms", dest="dt_ms", type=float)
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--batch-size", dest="batch_size", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--lr-delay", dest="lr_delay", type=float)
    tr.add_argument("--lr-tau", dest="lr_tau", type=float)
    tr.add_argument("--spike-reg", dest="spike_reg", type=float)
    tr.add_argument("--weight-scale", dest="weight_scale", type=float)
    tr.add_argument("--patience", type=int)
    tr.add_argument("--seed", type=int)
    tr.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    js(tr)
    tr.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="write the trained (validation-selected) network file")
    e.add_argument("rundir", type=Path)
    e.add_argument("--out", required=True, type=Path)
    js(e)
    e.set_defaults(func=cmd_export)

    s = sub.add_parser("simulate", help="run a network file on events in torch or Brian2")
    s.add_argument("network", type=Path)
    s.add_argument("--data", required=True, type=Path)
    s.add_argument("--engine", required=True, choices=["torch", "brian2"])
    s.add_argument("--dt", type=float, help="step in ms (default: the training dt); must divide the training dt")
    s.add_argument("--target", default="numpy", choices=["numpy", "cython", "cpp_standalone", "cuda_standalone"])
    s.add_argument("--delays", default="round", choices=["round", "exact"])
    s.add_argument("--inputs", default="binned", choices=["binned", "exact"])
    s.add_argument("--reverse", choices=["window", "full"])
    s.add_argument("--samples", type=int, help="first N samples only")
    s.add_argument("--device", default="cpu", help="torch engine device")
    s.add_argument("--build-dir", help="keep the Brian2 build here (default: a temporary one, removed)")
    s.add_argument("--compile-only", action="store_true", help="standalone targets: generate and compile, do not run")
    s.add_argument("--fast-math", action="store_true", help="Brian2's default -ffast-math -march=native flags")
    s.add_argument("--workers", type=int, default=1,
                   help="Brian2: split the samples over this many processes (e.g. the number of cores)")
    s.add_argument("--out", required=True, type=Path)
    js(s)
    s.set_defaults(func=cmd_simulate)

    c = sub.add_parser("compare", help="compare two run files")
    c.add_argument("run_a", type=Path)
    c.add_argument("run_b", type=Path)
    c.add_argument("--tolerance", type=float, help="spike matching tolerance in ms (default: the coarser dt)")
    js(c)
    c.set_defaults(func=cmd_compare)

    v = sub.add_parser("verify", help="torch vs Brian2 at the training dt and finer, with probes")
    v.add_argument("network", type=Path)
    v.add_argument("--data", required=True, type=Path)
    v.add_argument("--dt", type=_floats, default=[1.0, 0.1, 0.01])
    v.add_argument("--probes", default="reverse", help="comma list: reverse, jitter[:MS], jitter-neuron[:MS], "
                                                        "delete[:P], randomize[:F]; '' for none")
    v.add_argument("--target", default="numpy", choices=["numpy", "cython", "cpp_standalone", "cuda_standalone"])
    v.add_argument("--samples", type=int)
    v.add_argument("--workers", type=int, default=1,
                   help="processes: over runs when there are at least as many runs, else over each run's samples")
    v.add_argument("--out", required=True, type=Path)
    js(v)
    v.set_defaults(func=cmd_verify)

    dm = sub.add_parser("demo", help="the whole pipeline on the embedded polychrony task")
    dm.add_argument("--out", type=Path, default=Path("demo_out"))
    dm.add_argument("--quick", action="store_true", help="smaller task and fewer epochs (for tests)")
    dm.add_argument("--target", default="numpy", choices=["numpy", "cython", "cpp_standalone", "cuda_standalone"])
    dm.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    js(dm)
    dm.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except EventsnnError as e:
        if args.debug:
            raise
        print(f"eventsnn: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eventsnn: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
