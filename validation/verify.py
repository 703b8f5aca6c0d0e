"""High-resolution verification: the same network in torch and Brian2, at the training dt and finer.

For every input condition (original, and each probe such as time reversal)
it runs:

* torch at the training dt (rounded delays, binned inputs) -- the reference;
* Brian2 at the training dt, same settings -- must agree spike for spike;
* torch and Brian2 at each finer dt with exact (real-valued) delays and
  unbinned input times -- how the solution behaves as dt -> 0.

Run files go to DIR/runs/ (each written atomically; an existing one is reused
only if its recorded spec and input hashes match), then ``report.json``,
``report.md`` and figures.
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eventsnn.errors import EventsnnError, atomic_path, dir_lock, remove_stale, sha256_file
from eventsnn.provenance import provenance
from eventsnn.runfile import load_run, save_run

from .compare import compare_runs


@dataclass
class RunSpec:
    name: str
    engine: str
    dt_ms: float
    delays: str
    inputs: str
    transform: str | None
    target: str

    def key(self, net_sha, ev_sha, n_samples) -> str:
        return json.dumps({"engine": self.engine, "dt_ms": self.dt_ms, "delays": self.delays, "inputs": self.inputs,
                           "transform": self.transform, "target": self.target if self.engine == "brian2" else "cpu",
                           "network_sha256": net_sha, "events_sha256": ev_sha, "n_samples": n_samples},
                          sort_keys=True)


def plan_runs(train_dt: float, dts: list[float], transforms: list, target: str) -> list[RunSpec]:
    specs = []
    for tr in [None] + [t.name for t in transforms]:
        tag = tr or "none"
        for dt in sorted(set(dts), reverse=True):
            coarse = abs(dt - train_dt) < 1e-12
            mode = ("round", "binned") if coarse else ("exact", "exact")
            for engine in ("torch", "brian2"):
                specs.append(RunSpec(f"{engine}-dt{dt:g}-{tag}", engine, dt, *mode, tr,
                                     target if engine == "brian2" else "cpu"))
    return specs


def _execute(args) -> str:
    """Run one spec (in this or a worker process) and write its run file; return the name."""
    spec, net_path, data_path, n_samples, outdir, key, split = args
    from eventsnn.bridge import load_network
    from eventsnn.datasets import load_any
    from eventsnn.transforms import transform_by_name

    net = load_network(net_path)
    events = load_any(data_path)
    events = events.subset(np.arange(min(n_samples, len(events))))
    tr = transform_by_name(spec.transform)
    if tr is not None:
        events = tr(events)
    if spec.engine == "torch":
        import torch
        torch.set_num_threads(1 if os.environ.get("EVENTSNN_WORKER") else torch.get_num_threads())
        from eventsnn.bridge.from_torch import simulate_torch
        run = simulate_torch(net, events, dt_ms=spec.dt_ms, delays=spec.delays, inputs=spec.inputs)
    else:
        from eventsnn.bridge.brian2_sim import simulate_brian2
        build = Path(outdir) / "build" / f"{spec.name}-{os.getpid()}"
        try:
            run = simulate_brian2(net, events, dt_ms=spec.dt_ms, target=spec.target, delays=spec.delays,
                                  inputs=spec.inputs, build_dir=build, workers=split)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    run.attrs.update({"spec": key, "transform": spec.transform or "none", "name": spec.name,
                      "provenance": provenance()})
    save_run(run, Path(outdir) / "runs" / f"{spec.name}.h5")
    return spec.name


def _worker_init():
    os.environ["EVENTSNN_WORKER"] = "1"


def verify(net_path, data_path, outdir, dts=(1.0, 0.1, 0.01), probes="reverse", target="numpy",
           samples: int | None = None, workers: int = 1, progress: bool = True) -> dict:
    """Run every (engine, dt, probe) combination, write the run files, the report and the figures.

    Parameters
    ----------
    net_path, data_path : path
        Network file and events file (test samples).
    outdir : path
        Report directory: ``runs/*.h5``, ``report.json``, ``report.md``, figures. Resumable: a run file is
        reused when its recorded spec and the sha256 of network and data match. Locked while in use.
    dts : sequence of float
        Step sizes in ms; each must divide the training dt (which is always included).
    probes : str
        Comma list of probes (:func:`eventsnn.transforms.parse_probes`).
    target : str
        Brian2 target. ``samples``: the first N samples only. ``workers``: processes.

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
    from eventsnn.datasets import load_any
    from eventsnn.transforms import parse_probes

    net = load_network(net_path)
    events = load_any(data_path)
    if events.n_units != net.n_inputs:
        raise EventsnnError(f"{data_path}: {events.n_units} units but the network has {net.n_inputs} inputs")
    dts = sorted({float(d) for d in dts} | {net.dt_ms}, reverse=True)
    for d in dts:
        if d > net.dt_ms:
            raise EventsnnError(f"--dt {d:g} is coarser than the training dt {net.dt_ms:g} ms")
    from eventsnn.contract import grid_ratio
    for d in dts:
        try:
            grid_ratio(net.dt_ms, d)
        except ValueError as e:
            raise EventsnnError(f"--dt: {e}") from None
    transforms = parse_probes(probes) if probes else []
    n = len(events) if samples is None else min(samples, len(events))
    outdir = Path(outdir)
    with dir_lock(outdir, "this verify directory"):
        # leftovers of a killed earlier verify: temporary run files and build directories
        remove_stale(outdir / "runs")
        shutil.rmtree(outdir / "build", ignore_errors=True)
        (outdir / "runs").mkdir(parents=True, exist_ok=True)
        return _verify_locked(net, net_path, data_path, outdir, dts, transforms, target, n, workers, progress)


def _verify_locked(net, net_path, data_path, outdir: Path, dts, transforms, target, n, workers, progress) -> dict:
    from eventsnn.progress import progress_bar

    net_sha, ev_sha = sha256_file(net_path), sha256_file(data_path)
    specs = plan_runs(net.dt_ms, dts, transforms, target)
    todo = []
    for s in specs:
        key = s.key(net_sha, ev_sha, n)
        f = outdir / "runs" / f"{s.name}.h5"
        if f.exists():
            try:
                if load_run(f).attrs.get("spec") == json.loads(key):
                    continue
            except EventsnnError:
                pass  # unreadable: recompute
        todo.append((s, str(net_path), str(data_path), n, str(outdir), key))
    # workers: over runs while there are enough of them, else over the samples of each Brian2 run
    over_runs = workers > 1 and len(todo) >= workers
    todo = [(*t, 1 if over_runs else workers) for t in todo]
    with progress_bar(total=len(specs), desc="verify runs", disable=not progress,
                      initial=len(specs) - len(todo)) as bar:
        if over_runs:
            import multiprocessing as mp
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init) as ex:
                for _ in ex.map(_execute, todo):
                    bar.update(1)
        else:
            for t in todo:
                _execute(t)
                bar.update(1)
    shutil.rmtree(outdir / "build", ignore_errors=True)
    report = build_report(outdir, specs, net, n)
    report["provenance"] = provenance()
    report["network_sha256"], report["events_sha256"] = net_sha, ev_sha
    write_report(outdir, report)
    return report


def build_report(outdir: Path, specs: list[RunSpec], net, n: int) -> dict:
    runs = {s.name: load_run(outdir / "runs" / f"{s.name}.h5") for s in specs}
    ref_dt = net.dt_ms
    out = []
    for s in specs:
        r = runs[s.name]
        ref = runs[f"torch-dt{ref_dt:g}-{s.transform or 'none'}"]
        cmp_ = compare_runs(ref, r, tol_ms=ref_dt)
        rec = {"name": s.name, "engine": s.engine, "dt_ms": s.dt_ms, "delays": s.delays, "inputs": s.inputs,
               "transform": s.transform, "target": r.target, "accuracy": r.accuracy,
               "agreement_with_torch": cmp_["prediction_agreement"],
               "spike_mismatch": (sum(L.get("exact_mismatch", 0) for L in cmp_["layers"])
                                  if abs(s.dt_ms - ref_dt) < 1e-12 else None),
               "spike_timing": {"layers": cmp_["layers"], "trace_correlation": cmp_["trace_correlation"]},
               "file": f"runs/{s.name}.h5"}
        if "wall_s" in r.attrs:
            rec["wall_s"] = r.attrs["wall_s"]
        out.append(rec)
    return {"n_samples": n, "train_dt_ms": ref_dt, "network_readout": net.readout, "runs": out}


def write_report(outdir: Path, report: dict) -> None:
    with atomic_path(outdir / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    lines = ["# Verification report", "",
             f"{report['n_samples']} samples; training dt {report['train_dt_ms']:g} ms. Reference: torch at the "
             "training dt (rounded delays, binned inputs). Fine-dt runs use exact delays and unbinned inputs.", "",
             "| run | engine | dt (ms) | transform | accuracy | agreement with torch | exact spike mismatches | "
             "matched spikes (layer 0, tol = train dt) | median abs shift (ms) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        L0 = r["spike_timing"]["layers"][0] if r["spike_timing"]["layers"] else {}
        med = L0.get("median_abs_shift_ms")
        lines.append(f"| {r['name']} | {r['engine']} | {r['dt_ms']:g} | {r['transform'] or 'none'} | "
                     f"{r['accuracy']:.3f} | {r['agreement_with_torch']:.3f} | "
                     f"{'' if r['spike_mismatch'] is None else r['spike_mismatch']} | "
                     f"{L0.get('matched_fraction', float('nan')):.3f} | {'' if med is None else f'{med:.3g}'} |")
    lines += ["", "Figures: `accuracy_vs_dt.png`, `raster.png`, `spike_shifts.png`."]
    with atomic_path(outdir / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    try:
        _figures(outdir, report)
    except Exception as e:  # figures are a convenience; the report stands without them
        print(f"eventsnn: warning: figures not written ({e})")


def _figures(outdir: Path, report: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = {}
    for r in runs:
        groups.setdefault((r["engine"], r["transform"] or "none"), []).append((r["dt_ms"], r["accuracy"]))
    for (eng, tr), pts in sorted(groups.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if eng == "brian2" else "s--", label=f"{eng}, {tr}")
    ax.set_xscale("log")
    ax.set_xlabel("dt (ms)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("accuracy versus time step")
    fig.tight_layout()
    with atomic_path(outdir / "accuracy_vs_dt.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)

    ref = next(r for r in runs if r["engine"] == "torch" and r["transform"] is None
               and abs(r["dt_ms"] - report["train_dt_ms"]) < 1e-12)
    fine = min((r for r in runs if r["engine"] == "brian2" and r["transform"] is None), key=lambda r: r["dt_ms"])
    ra, rb = load_run(outdir / ref["file"]), load_run(outdir / fine["file"])
    fig, ax = plt.subplots(figsize=(7, 4))
    if ra.layers:
        La, Lb = ra.layers[0], rb.layers[0]
        ax.plot(La.time_ms[La.sample == 0], La.unit[La.sample == 0], "|", ms=10, label=f"torch dt={ra.dt_ms:g} ms")
        ax.plot(Lb.time_ms[Lb.sample == 0], Lb.unit[Lb.sample == 0] + 0.3, "|", ms=10,
                label=f"Brian2 dt={rb.dt_ms:g} ms")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("hidden neuron (layer 0)")
    ax.set_title("sample 0: hidden spikes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(outdir / "raster.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)

    from .compare import match_spikes
    shifts = []
    if ra.layers:
        La, Lb = ra.layers[0], rb.layers[0]
        for s in np.unique(La.sample):
            for u in np.unique(La.unit[La.sample == s]):
                a = np.sort(La.time_ms[(La.sample == s) & (La.unit == u)])
                b = np.sort(Lb.time_ms[(Lb.sample == s) & (Lb.unit == u)])
                ia, ib = match_spikes(a, b, report["train_dt_ms"])
                shifts.append(b[ib] - a[ia])
    shifts = np.concatenate(shifts) if shifts else np.zeros(0)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(shifts, bins=50)
    ax.set_xlabel(f"Brian2 dt={rb.dt_ms:g} ms minus torch dt={ra.dt_ms:g} ms spike time (ms)")
    ax.set_ylabel("matched spikes")
    ax.set_title("spike-time shifts, layer 0")
    fig.tight_layout()
    with atomic_path(outdir / "spike_shifts.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
