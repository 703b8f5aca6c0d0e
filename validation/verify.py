"""High-resolution verification: the same network in torch and Brian2, at the training dt and finer.

For every input condition (original, and each probe such as time reversal)
it runs:

* torch at the training dt (rounded delays, binned inputs) -- the reference;
* Brian2 at the training dt, same settings -- must agree spike for spike;
* torch and Brian2 at each finer dt with exact (real-valued) delays and
  unbinned input times -- how the solution behaves as dt -> 0.

Run files go to DIR/runs/ (each written atomically; an existing one is reused
only if its recorded spec and input hashes match), then ``report.json``,
``report.md`` and figures; once those are written the run files are deleted
unless asked to keep them (``keep_runs``, ``--keep-runs``).
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eventsnn.bridge.engines import BUILT_TARGETS
from eventsnn.bridge.runfile import RunReader, sample_chunks
from eventsnn.data.events import bin_events, warn_merged
from eventsnn.util import jsonio
from eventsnn.util.dask_pool import Pool
from eventsnn.util.errors import EventsnnError, EventsnnWarning
from eventsnn.util.files import atomic_path, dir_lock, remove_stale, sha256_file
from eventsnn.util.progress import progress_bar
from eventsnn.util.provenance import provenance
from eventsnn.validation.compare import CHUNK_SPIKES, RunComparison


@dataclass
class RunSpec:
    name: str
    engine: str
    dt_ms: float
    delays: str
    inputs: str
    transform: str | None
    target: str
    samples: int | None = None  # the first N samples only (None: all of the verification's samples)

    def key(self, net_sha, ev_sha, n_samples) -> str:
        n = n_samples if self.samples is None else min(self.samples, n_samples)
        return json.dumps({"engine": self.engine, "dt_ms": self.dt_ms, "delays": self.delays, "inputs": self.inputs,
                           "transform": self.transform, "target": self.target if self.engine == "brian2" else "cpu",
                           "network_sha256": net_sha, "events_sha256": ev_sha, "n_samples": n},
                          sort_keys=True)

    def n(self, n_samples: int) -> int:
        return n_samples if self.samples is None else min(self.samples, n_samples)


FINE_SAMPLES = 16  # default number of samples of the clock-driven runs other than the reference


def plan_runs(train_dt: float, dts: list[float], transforms: list, target: str, event: bool = True,
              fine_samples: int | None = None) -> list[RunSpec]:
    """Every run of a verification: first the exact (event) runs, for the original inputs and each probe, on every
    sample -- they cost the least and answer the most; then each clock-driven engine at each dt. The reference,
    torch at the training dt (rounded delays, binned inputs), takes every sample: the exact runs are compared
    with it. The other clock-driven runs -- Brian2 at the training dt (the export's spike-for-spike check) and
    both engines finer (exact delays and inputs) -- take the first ``fine_samples`` samples (None: every
    sample): a clock at 0.01 ms costs seconds per sample, and Brian2 at the training dt as much as the reference
    (on an SHD-sized test set both reversals included, ~12 of a 26-minute verify's runs, and half its report)."""
    from eventsnn.bridge.engines import ENGINES

    clocked = [name for name, e in ENGINES.items() if e.clock]
    tags = [None] + [t.name for t in transforms]
    specs = []
    if event:
        specs += [RunSpec(f"event-{tr or 'none'}", "event", 0.0, "exact", "exact", tr, "cpu") for tr in tags]
    for tr in tags:
        tag = tr or "none"
        for dt in sorted(set(dts), reverse=True):
            coarse = abs(dt - train_dt) < 1e-12
            mode = ("round", "binned") if coarse else ("exact", "exact")
            for engine in clocked:
                reference = coarse and engine == "torch"
                specs.append(RunSpec(f"{engine}-dt{dt:g}-{tag}", engine, dt, *mode, tr,
                                     target if engine == "brian2" else "cpu", None if reference else fine_samples))
    return specs


def _execute(job: list) -> list[str]:
    """Run the specs of one job in turn (in this or a worker process), each writing its run file; their names."""

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EventsnnWarning)  # input merges are reported once, by verify itself
        return [_execute_run(*args) for args in job]


COMPILED_TARGETS = BUILT_TARGETS + ("cython",)  # Brian2 targets whose compiled code a rebuild can reuse


def _jobs(todo: list) -> list[list]:
    """The runs grouped into jobs: compiled Brian2 runs that differ only in their inputs (the probes at one dt)
    form one job sharing one build directory, so that after the first only what differs is recompiled (for the
    reversals, the arrays' sizes in objects.cpp: a few seconds instead of a 20-40 s cpp_standalone compile);
    every other run is a job of its own."""
    groups: dict = {}
    for t in todo:
        s = t[0]
        shared = s.engine == "brian2" and s.target in COMPILED_TARGETS
        groups.setdefault((s.target, s.dt_ms, s.delays, s.inputs) if shared else id(t), []).append(t)
    return list(groups.values())


def _brian2_build_dir(spec, scratch) -> Path:
    """One build directory per group of :func:`_jobs`, under this invocation's own ``scratch`` folder (a task
    of an earlier, interrupted verify that is still running somewhere never shares it)."""
    return Path(scratch) / f"brian2-{spec.target}-dt{spec.dt_ms!r}-{spec.delays}-{spec.inputs}"


def _execute_run(spec, net_path, data_path, n_samples, outdir, key, scratch, split) -> str:
    from eventsnn.bridge import load_network
    from eventsnn.bridge.engines import get_engine, run_to_file
    from eventsnn.data.datasets import load_any
    from eventsnn.data.transforms import transform_by_name

    net = load_network(net_path)
    events = load_any(data_path)
    events = events.subset(np.arange(min(n_samples, len(events))))
    tr = transform_by_name(spec.transform)
    if tr is not None:
        events = tr(events)
    attrs = {"spec": key, "transform": spec.transform or "none", "name": spec.name,
             "provenance": provenance(), "worker": os.environ.get("EVENTSNN_WORKER", "")}
    out = Path(outdir) / "runs" / f"{spec.name}.h5"
    e = get_engine(spec.engine)
    opts = {"dt_ms": spec.dt_ms, "delays": spec.delays, "inputs": spec.inputs} if e.clock else {}
    if "target" in e.options:
        opts["target"] = spec.target
    if "workers" in e.options:
        opts["workers"] = split
    if spec.engine == "brian2":
        opts["build_dir"] = _brian2_build_dir(spec, scratch)  # shared by the job's runs; removed by verify
    s = run_to_file(spec.engine, net, events, out, attrs=attrs, scratch_parent=scratch, **opts)
    with atomic_path(out.with_suffix(".timing.json")) as tmp:  # wall time beside the run file, not in it
        tmp.write_text(jsonio.dumps({"wall_s": s["wall_s"]}))
    return spec.name


def verify(net_path, data_path, outdir, dts=None, probes="reverse", target="numpy",
           first: int | None = None, workers: int = 1, progress: bool = True, scheduler: str | None = None,
           event: bool = True, fine_samples: int | None = FINE_SAMPLES, network_name: str | None = None,
           keep_runs: bool = False) -> dict:
    """Run every (engine, dt, probe) combination, write the run files, the report and the figures.

    Parameters
    ----------
    net_path, data_path : path
        Network file and events file (test samples).
    outdir : path
        Report directory: ``report.json``, ``report.md``, figures; ``runs/*.h5`` while it runs (and after, with
        ``keep_runs``). Resumable: a run file is
        reused when its recorded spec and the sha256 of network and data match. Locked while in use.
    dts : sequence of float
        Step sizes in ms; each must divide the training dt (which is always included).
    probes : str
        Comma list of probes (:func:`eventsnn.data.transforms.parse_probes`).
    target : str
        Brian2 target. ``first``: the first N samples only. ``workers``: processes (a Dask ``LocalCluster``).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://HOST:PORT``): every run becomes a task there (the workers
        must see ``outdir`` and the input files at the same paths).
    event : bool
        Include the exact event-driven runs (default). Their cost grows with the number of spikes, without the
        clock's cap of one spike per step: a network firing fast without a refractory period can make them the
        slowest part by far.
    fine_samples : int or None
        The clock-driven runs other than the reference -- Brian2 at every dt, torch finer than the training dt --
        simulate the first this many samples (default :data:`FINE_SAMPLES`; the report names the number per
        run); None: every sample. The exact runs and the reference (torch at the training dt) always take every
        sample.
    network_name : str, optional
        What the report and figure titles call the network (default: the network file's name).
    keep_runs : bool
        Keep the run files (``runs/*.h5``: every spike of every run, ~1 GB per exact run of an SHD-sized test
        set) after the report; by default they are deleted once the report and figures are written (an
        interrupted verify still resumes from the runs finished so far; a finished one, rerun, recomputes them).

    Returns
    -------
    dict
        The report (also written to ``report.json``).

    Raises
    ------
    EventsnnError
        Bad files or arguments, or another process using ``outdir``.
    """
    from eventsnn.bridge import load_network
    from eventsnn.bridge.engines import check_compatible
    from eventsnn.data.datasets import load_any
    from eventsnn.data.transforms import parse_probes

    net = load_network(net_path)
    events = load_any(data_path)
    if dts is None:  # a tenth and a hundredth of the training step (1 ms training: 1, 0.1, 0.01)
        dts = [net.dt_ms / 10, net.dt_ms / 100]
    dts = sorted({float(d) for d in dts} | {net.dt_ms}, reverse=True)
    for d in dts:
        if d > net.dt_ms:
            raise EventsnnError(f"--dt {d:g} is coarser than the training dt {net.dt_ms:g} ms")
        check_compatible(net, events, d, data=data_path, network=net_path)
    transforms = parse_probes(probes) if probes else []
    if fine_samples is not None and int(fine_samples) < 1:
        raise EventsnnError(f"--fine-samples must be at least 1, got {fine_samples}")
    n = len(events) if first is None else min(first, len(events))
    merged = bin_events(events, net.dt_ms, np.arange(n)).binary()
    outdir = Path(outdir)
    settings = {"network_sha256": sha256_file(net_path), "events_sha256": sha256_file(data_path), "dts_ms": dts,
                "probes": [t.name for t in transforms], "target": target, "samples": n, "event": bool(event),
                "fine_samples": fine_samples}
    with dir_lock(outdir, "this verify directory"):
        _claim(outdir, settings)
        # leftovers of a killed earlier verify: temporary run files and build directories
        warn_merged(merged.merged, merged.n_spikes, net.dt_ms, "input")
        remove_stale(outdir / "runs")
        shutil.rmtree(outdir / "build", ignore_errors=True)
        (outdir / "runs").mkdir(parents=True, exist_ok=True)
        return _verify_locked(net, net_path, data_path, outdir, dts, transforms, target, n, workers, progress,
                              merged.merged, scheduler, event, fine_samples, network_name, keep_runs)


SETTINGS_FILE = "verify_settings.json"


def _claim(outdir: Path, settings: dict) -> None:
    """Record this verification's settings in ``outdir``, or refuse a directory that holds another one: a
    rerun with the same settings resumes it, one with other settings would silently replace its report."""
    f = outdir / SETTINGS_FILE
    if f.exists():
        try:
            old = json.loads(f.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old != settings:
            names = {"network_sha256": "the network file", "events_sha256": "the events file", "dts_ms": "--dt",
                     "probes": "--probes", "target": "--target", "samples": "--first", "event": "--no-event",
                     "fine_samples": "--fine-samples"}
            diff = [f"{names.get(k, k)} ({old.get(k)} there, {settings.get(k)} now)" if not k.endswith("sha256")
                    else f"{names[k]} (its contents differ)" for k in settings if old.get(k) != settings.get(k)]
            raise EventsnnError(f"--out {outdir}: holds a verification with other settings: {'; '.join(diff)}; "
                                "choose another --out (or delete it); the same settings resume it")
    with atomic_path(f) as tmp:
        tmp.write_text(jsonio.dumps(settings, indent=2))


def _verify_locked(net, net_path, data_path, outdir: Path, dts, transforms, target, n, workers, progress,
                   merged_at_train_dt: int, scheduler: str | None = None, event: bool = True,
                   fine_samples: int | None = None, network_name: str | None = None,
                   keep_runs: bool = False) -> dict:

    net_sha, ev_sha = sha256_file(net_path), sha256_file(data_path)
    scratch = outdir / "build" / uuid.uuid4().hex[:12]  # this invocation's build directories
    specs = plan_runs(net.dt_ms, dts, transforms, target, event, fine_samples)
    todo = []
    for s in specs:
        key = s.key(net_sha, ev_sha, n)
        f = outdir / "runs" / f"{s.name}.h5"
        if f.exists():
            try:
                if RunReader(f).attrs.get("spec") == json.loads(key):
                    continue
            except EventsnnError:
                pass  # unreadable: recompute
        todo.append((s, str(net_path), str(data_path), s.n(n), str(outdir), key, str(scratch)))
    # the exact runs first, here, their samples over `workers` threads (one compiled engine, no process start);
    # then the clock-driven ones (grouped into jobs, see _jobs), with workers over jobs while there are enough
    # runs (always on a given cluster), else over the samples of each run
    here = [t for t in todo if t[0].engine == "event" and scheduler is None]
    todo = [t for t in todo if not (t[0].engine == "event" and scheduler is None)]
    over_runs = scheduler is not None or (workers > 1 and len(todo) >= workers)
    todo = [(*t, 1 if over_runs else workers) for t in todo]
    t0 = time.perf_counter()
    try:
        with progress_bar(total=len(specs), desc="verify runs", disable=not progress,
                          initial=len(specs) - len(todo) - len(here)) as bar:
            for t in here:
                _execute([(*t, workers)])
                bar.update(1)
            with Pool(workers if over_runs else 1, scheduler) as pool:
                for _, names in pool.as_completed(_execute, _jobs(todo)):
                    bar.update(len(names))
    finally:  # this invocation's Brian2 build directories, interrupted or not (finished runs are kept: a rerun
        shutil.rmtree(scratch, ignore_errors=True)  # reuses them)
        try:
            (outdir / "build").rmdir()
        except OSError:
            pass  # another invocation's (still running on a cluster) or not made
    t1 = time.perf_counter()
    report = build_report(outdir, specs, net, n)
    report["wall_s"] = {"runs": round(t1 - t0, 2), "report": round(time.perf_counter() - t1, 2),
                        "runs_computed": len(todo)}
    report["provenance"] = provenance()
    report["network_sha256"], report["events_sha256"] = net_sha, ev_sha
    report["network"] = network_name or Path(net_path).name
    report["input_spikes_merged_at_train_dt"] = int(merged_at_train_dt)
    if not keep_runs:
        for r in report["runs"]:
            r["file"] = None
    write_report(outdir, report)  # (its figures read the run files)
    if not keep_runs:
        for sp in specs:
            for f in (outdir / "runs" / f"{sp.name}.h5", outdir / "runs" / f"{sp.name}.timing.json"):
                f.unlink(missing_ok=True)
        try:
            (outdir / "runs").rmdir()
        except OSError:
            pass  # other files there (not ours): left alone
    return report


EXACT_TOL_MS = 0.1  # "matched within 0.1 ms" of the exact run


def _vs_exact_comparisons(dt_ms: float, train_dt_ms: float) -> list:
    """The three comparisons of a clock-driven run against the exact run: matched within 0.1 ms, within 1 dt,
    and within ``max(train dt, 10 dt)`` (wide enough not to censor the shifts it measures)."""
    return [RunComparison(tol, traces=False) for tol in (EXACT_TOL_MS, dt_ms, max(train_dt_ms, 10 * dt_ms))]


def _vs_exact(comparisons) -> dict:
    """How far a clock-driven run is from the exact (event) run: per layer, the fraction of the exact run's
    spikes matched within 0.1 ms and within 1 dt, and the median and 95th percentile of the absolute shift of
    the spikes matched within the wide tolerance."""
    c01, cdt, cw = (c.result() for c in comparisons)
    wide = comparisons[2].tol_ms
    layers = []
    for L01, Ldt, Lw in zip(c01["layers"], cdt["layers"], cw["layers"]):
        layers.append({"layer": L01["layer"], "n_exact": L01["n_a"], "n_run": L01["n_b"],
                       "matched_0.1ms": L01["matched_fraction"], "matched_1dt": Ldt["matched_fraction"],
                       "shift_tolerance_ms": wide, "matched_wide": Lw["matched_fraction"],
                       "median_abs_shift_ms": Lw["median_abs_shift_ms"], "p95_abs_shift_ms": Lw["p95_abs_shift_ms"]})
    return {"prediction_agreement": c01["prediction_agreement"], "layers": layers}


def convergence_orders(runs: list[dict], train_dt: float) -> list[dict]:
    """Least-squares slope of log(median shift from the exact run) against log(dt), per engine, input
    condition and layer (first order: slope 1), over the runs finer than the training dt only -- those share
    the exact run's configuration (real-valued delays, every input spike); the training-dt run rounds delays
    and bins inputs, so a line through it measures that change, not convergence. With fewer than two finer dts
    (with a positive median shift) the order is not fitted (``None``, ``"fitted": False``); ``points`` holds
    every dt's median shift, the training dt's too, for the figure."""
    out = []
    keys = sorted({(r["engine"], r["transform"] or "none") for r in runs if "vs_exact" in r})
    for eng, tr in keys:
        rs = sorted((r for r in runs if r["engine"] == eng and (r["transform"] or "none") == tr and "vs_exact" in r),
                    key=lambda r: r["dt_ms"])
        n_layers = len(rs[0]["vs_exact"]["layers"]) if rs else 0
        for li in range(n_layers):
            pts = [(r["dt_ms"], r["vs_exact"]["layers"][li]["median_abs_shift_ms"]) for r in rs]
            pts = [(d, m) for d, m in pts if m is not None and m > 0]
            fit = [(d, m) for d, m in pts if d < train_dt - 1e-12]
            order = None
            if len({d for d, _ in fit}) >= 2:
                x, y = np.log([d for d, _ in fit]), np.log([m for _, m in fit])
                order = float(np.polyfit(x, y, 1)[0])
            out.append({"engine": eng, "transform": tr, "layer": li, "order": order, "fitted": order is not None,
                        "fit_dts_ms": [d for d, _ in fit] if order is not None else [],
                        "points": [{"dt_ms": d, "median_abs_shift_ms": m} for d, m in pts]})
    return out


def build_report(outdir: Path, specs: list[RunSpec], net, n: int, chunk_spikes: int = CHUNK_SPIKES) -> dict:
    """Compare every run with torch at the training dt and with the exact run, chunk by chunk of samples (at
    most ``chunk_spikes`` hidden spikes of any one run per chunk), so memory does not grow with the runs."""
    readers = {s.name: RunReader(outdir / "runs" / f"{s.name}.h5") for s in specs}
    ref_dt = net.dt_ms
    per_sample = np.zeros(n, np.int64)
    for r in readers.values():  # runs on the first samples only (fine dt) add to those
        sp = r.spikes_per_sample()[:n]
        per_sample[:len(sp)] = np.maximum(per_sample[:len(sp)], sp)
    chunks = sample_chunks(per_sample, chunk_spikes)
    vs_ref = {s.name: RunComparison(ref_dt) for s in specs}
    vs_exact = {s.name: _vs_exact_comparisons(s.dt_ms, ref_dt) for s in specs
                if s.engine != "event" and f"event-{s.transform or 'none'}" in readers}
    tags = list(dict.fromkeys(s.transform or "none" for s in specs))
    for lo, hi in chunks:
        for tag in tags:
            ref_name, exact_name = f"torch-dt{ref_dt:g}-{tag}", f"event-{tag}"
            refs = {}  # (reference, exact) read up to each run's last sample in this chunk

            def upto(h):
                if h not in refs:
                    refs[h] = (readers[ref_name].read(lo, h),
                               readers[exact_name].read(lo, h) if exact_name in readers else None)
                return refs[h]

            for s in specs:
                if (s.transform or "none") != tag:
                    continue
                h = min(hi, len(readers[s.name].labels))
                if h <= lo:
                    continue  # a run on the first samples only, done before this chunk
                ref, exact = upto(h)
                r = ref if s.name == ref_name else exact if s.name == exact_name else readers[s.name].read(lo, h)
                vs_ref[s.name].add(ref, r)
                for c in vs_exact.get(s.name, ()):
                    c.add(exact, r)
    out = []
    for s in specs:
        r = readers[s.name]
        cmp_ = vs_ref[s.name].result()
        rec = {"name": s.name, "engine": s.engine, "dt_ms": s.dt_ms, "delays": s.delays, "inputs": s.inputs,
               "transform": s.transform, "target": str(r.header["target"]), "samples": len(r.labels),
               "accuracy": r.accuracy,
               "agreement_with_torch": cmp_["prediction_agreement"],
               "spike_mismatch": (sum(L.get("exact_mismatch", 0) for L in cmp_["layers"])
                                  if abs(s.dt_ms - ref_dt) < 1e-12 else None),
               "spike_timing": {"layers": cmp_["layers"], "trace_correlation": cmp_["trace_correlation"]},
               "file": f"runs/{s.name}.h5"}
        if s.name in vs_exact:
            rec["vs_exact"] = _vs_exact(vs_exact[s.name])
        timing = outdir / "runs" / f"{s.name}.timing.json"
        if timing.exists():
            rec["wall_s"] = json.loads(timing.read_text()).get("wall_s")
        out.append(rec)
    return {"n_samples": n, "train_dt_ms": ref_dt, "network_readout": net.readout, "n_outputs": net.n_outputs,
            "runs": out, "convergence": convergence_orders(out, ref_dt), "report_chunks": len(chunks)}


def write_report(outdir: Path, report: dict) -> None:
    with atomic_path(outdir / "report.json") as tmp:
        tmp.write_text(jsonio.dumps(report, indent=2))
    lines = ["# Verification report", "",
             f"{report['n_samples']} samples; training dt {report['train_dt_ms']:g} ms. Reference: torch at the "
             "training dt (rounded delays, binned inputs). Fine-dt runs use exact delays and unbinned inputs; "
             "`event` is the exact continuous-time run (no time step).", ""]
    n = report["n_samples"]
    subset = sorted({r["samples"] for r in report["runs"] if r.get("samples", n) < n})
    if subset:
        lines += [f"The Brian2 runs and the runs finer than the training dt simulate the first "
                  f"{', '.join(map(str, subset))} samples only (`--fine-samples`); their rows compare on those "
                  "samples.", ""]
    lines += ["| run | engine | dt (ms) | transform | accuracy | agreement with torch | exact spike mismatches | "
              "matched spikes (layer 0, tol = train dt) | median abs shift (ms) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        L0 = r["spike_timing"]["layers"][0] if r["spike_timing"]["layers"] else {}
        med = L0.get("median_abs_shift_ms")
        lines.append(f"| {r['name']} | {r['engine']} | {r['dt_ms']:g} | {r['transform'] or 'none'} | "
                     f"{r['accuracy']:.3f} | {r['agreement_with_torch']:.3f} | "
                     f"{'' if r['spike_mismatch'] is None else r['spike_mismatch']} | "
                     f"{L0.get('matched_fraction', float('nan')):.3f} | {'' if med is None else f'{med:.3g}'} |")
    exact_rows = [r for r in report["runs"] if "vs_exact" in r]
    if exact_rows:
        lines += ["", "## Against the exact (event-driven) run", "",
                  "Per hidden layer: fraction of the exact run's spikes matched within 0.1 ms and within 1 dt, and "
                  "the median / 95th percentile of the absolute shift of the spikes matched within max(train dt, "
                  "10 dt).", "",
                  "| run | accuracy | agreement with exact | layer | matched ≤0.1 ms | matched ≤1 dt | median shift (ms) "
                  "| p95 shift (ms) |", "|---|---|---|---|---|---|---|---|"]
        fmt = lambda x: "" if x is None else f"{x:.3g}"  # noqa: E731
        for r in exact_rows:
            for L in r["vs_exact"]["layers"]:
                lines.append(f"| {r['name']} | {r['accuracy']:.3f} | {r['vs_exact']['prediction_agreement']:.3f} | "
                             f"{L['layer']} | {L['matched_0.1ms']:.3f} | {L['matched_1dt']:.3f} | "
                             f"{fmt(L['median_abs_shift_ms'])} | {fmt(L['p95_abs_shift_ms'])} |")
        lines += ["", "Convergence order (slope of log median shift against log dt, fitted over the dts finer than "
                  "the training dt only, and only when there are at least two; 1 = first order):", "",
                  "| engine | transform | layer | order |", "|---|---|---|---|"]
        for c in report["convergence"]:
            order = "not fitted (needs two dts finer than the training dt)" if c["order"] is None \
                else f"{c['order']:.2f}"
            lines.append(f"| {c['engine']} | {c['transform']} | {c['layer']} | {order} |")
    lines += ["", "Figures: `accuracy_vs_dt.png`, `error_vs_dt.png`, `raster.png`, `spike_shifts.png`."]
    with atomic_path(outdir / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    try:
        _figures(outdir, report)
    except Exception as e:  # figures are a convenience; the report stands without them
        import warnings
        warnings.warn(f"figures not written ({e})", stacklevel=2)


def _figures(outdir: Path, report: dict) -> None:
    """accuracy_vs_dt.png, error_vs_dt.png, raster.png, spike_shifts.png; each title says what it shows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    name = report.get("network") or "network (in memory)"
    n_out = report.get("n_outputs")

    def save(fig, fname):
        fig.tight_layout()
        with atomic_path(outdir / fname) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)

    # 1. accuracy against dt: one colour per input condition; torch filled, Brian2 hollow and larger (the two
    #    coincide when the bridge is exact), the exact run as a dotted horizontal line, chance as a grey line
    fig, ax = plt.subplots(figsize=(8, 4.8))
    transforms = sorted({r["transform"] or "none" for r in runs}, key=lambda t: (t != "none", t))
    colours = {t: f"C{i}" for i, t in enumerate(transforms)}
    # equal accuracies are common (the bridge is exact; probes can tie): each condition is drawn slightly apart
    # in dt (a few % on the log axis), with its own marker size, so that no legend entry hides under another
    spread = {t: 1.0 + 0.06 * (i - (len(transforms) - 1) / 2) for i, t in enumerate(transforms)}
    for ti, tr in enumerate(transforms):
        for eng, style in (("torch", dict(marker="s", ls="--", ms=4 + ti, lw=1)),
                           ("brian2", dict(marker="o", ls="-", ms=9 + 2 * ti, mfc="none", lw=1.5))):
            pts = sorted((r["dt_ms"] * spread[tr], r["accuracy"]) for r in runs
                         if r["engine"] == eng and (r["transform"] or "none") == tr)
            if pts:
                ax.plot(*zip(*pts), color=colours[tr], label=f"{eng}, {tr}", zorder=3 if eng == "torch" else 2,
                        **style)
        ex = [r for r in runs if r["engine"] == "event" and (r["transform"] or "none") == tr]
        if ex:
            ax.axhline(ex[0]["accuracy"], color=colours[tr], ls=(ti, (1, 2)), lw=1.5, label=f"exact (event), {tr}")
    if n_out:
        ax.axhline(1.0 / n_out, color="grey", lw=1, label=f"chance (1/{n_out})")
    ax.set_xscale("log")
    ax.set_xlabel("time step dt (ms)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_title(f"{name}: accuracy vs dt, {report['n_samples']} samples\n(conditions drawn slightly apart in dt "
                 "so that equal values stay visible)", fontsize=9)
    save(fig, "accuracy_vs_dt.png")

    # 2. distance from the exact run against dt, log-log, with a first-order reference
    conv = [c for c in report.get("convergence", []) if c["transform"] == "none" and c["points"]]
    if conv:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for c in conv:
            d, m = zip(*[(p["dt_ms"], p["median_abs_shift_ms"]) for p in c["points"]])
            order = "" if c["order"] is None else f" (order {c['order']:.2f})"
            ax.plot(d, m, "o-" if c["engine"] == "brian2" else "s--", label=f"{c['engine']}, layer {c['layer']}{order}")
        dd = np.array(sorted({p["dt_ms"] for c in conv for p in c["points"]}))
        ax.plot(dd, dd, color="grey", lw=1, ls=":", label="= dt (first order)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("time step dt (ms)")
        ax.set_ylabel("median |spike time - exact| (ms)")
        ax.legend(fontsize=7)
        ax.set_title(f"{name}: convergence to the exact run (original inputs)")
        save(fig, "error_vs_dt.png")

    # 3. raster of sample 0: inputs, and layer 0 in the exact run, the finest Brian2 run and torch at train dt
    ref = next(r for r in runs if r["engine"] == "torch" and r["transform"] is None
               and abs(r["dt_ms"] - report["train_dt_ms"]) < 1e-12)
    clocked = [r for r in runs if r["engine"] == "brian2" and r["transform"] is None]
    fine = min(clocked, key=lambda r: r["dt_ms"])
    exact = next((r for r in runs if r["engine"] == "event" and r["transform"] is None), None)
    show = [(ref, "|", 12), (fine, "|", 8)] + ([(exact, ".", 6)] if exact else [])
    # the figures read only the first chunk of samples (the raster shows sample 0)
    readers = [RunReader(outdir / "runs" / f"{r['name']}.h5") for r, _, _ in show]
    m = min(len(rd.labels) for rd in readers)
    hi = sample_chunks(np.max([rd.spikes_per_sample()[:m] for rd in readers], axis=0), CHUNK_SPIKES)[0][1]
    loaded = [(rd.read(0, hi), m, s) for rd, (_, m, s) in zip(readers, show)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run, marker, size in loaded:
        if run.layers:
            L = run.layers[0]
            sel = L.sample == 0
            label = f"{run.engine} dt={run.dt_ms:g} ms" if run.engine != "event" else "exact (event)"
            ax.plot(L.time_ms[sel], L.unit[sel], marker, ms=size, ls="none",
                    label=f"{label}: predicts {run.prediction[0]}")
    r0 = loaded[0][0]
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("hidden neuron (layer 0)")
    ax.set_title(f"{name}, sample 0 (label {r0.labels[0]}):\nlayer-0 spikes, engines overlaid on the same rows",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=len(loaded))  # below, off the spikes
    save(fig, "raster.png")

    # 4. spike-time shifts of the finest clock-driven run against the exact run (or torch at train dt)
    base = loaded[-1][0] if exact else loaded[0][0]
    other = loaded[1][0]
    from eventsnn.validation.compare import spike_shift_values
    # the wide tolerance of the report (max(train dt, 10 dt)): the whole range of shifts, not only those within
    # 0.1 ms; the 0.1 ms band is marked
    tol = max(report["train_dt_ms"], 10 * other.dt_ms)
    shifts, n_a, n_matched = spike_shift_values(base.layers[0], other.layers[0], tol) if base.layers else ([], 0, 0)
    shifts = np.asarray(shifts)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    if len(shifts):
        lim = max(float(np.abs(shifts).max()), EXACT_TOL_MS) * 1.05
        ax.hist(shifts, bins=np.linspace(-lim, lim, 81))
        ax.set_xlim(-lim, lim)
        ax.set_yscale("log")
    for x in (-EXACT_TOL_MS, EXACT_TOL_MS):
        ax.axvline(x, color="grey", ls=":", lw=1)
    ax.set_xlabel(f"Brian2 dt={other.dt_ms:g} ms minus {'exact' if exact else 'torch'} spike time (ms); "
                  f"dotted: ±{EXACT_TOL_MS:g} ms")
    ax.set_ylabel("matched spikes (log)")
    within = int(np.sum(np.abs(shifts) <= EXACT_TOL_MS + 1e-12))
    unmatched = (n_a - n_matched) / n_a if n_a else 0.0
    ax.set_title(f"{name}: layer-0 spike shifts, {hi} samples\n{n_matched}/{n_a} matched within {tol:g} ms "
                 f"({within} within {EXACT_TOL_MS:g} ms); {100 * unmatched:.1f}% unmatched", fontsize=9)
    save(fig, "spike_shifts.png")
