"""The exact event-driven engine against Brian2 at dt = 0.01 ms, on the same cores, at several sample counts; JSON.

Workloads (the first two by default):

* ``shd-ff``: the SHD-shaped verification network of ``verify_throughput.py`` (700 inputs -> 256 LIF with axonal
  delays -> 20 readout, 1 s samples, ~8k input spikes at SHD density); random weights, no refractory period.
* ``trained-like``: the shape of ``train_throughput.py`` (700 -> 256 LIF -> 256 recurrent LIF -> 20 readout, axonal
  delays up to 25 ms in both hidden layers and on the recurrent connections), shared time constants (20 / 5 ms),
  a 2 ms refractory period, weights scaled so the hidden layers fire at 10-50 Hz, as a trained model does.
* ``srm-isi``: the authors' ISI network (preset ``paper-isi``) on the paper's ISI task (``data make paper-isi``,
  10 inputs, 10 s samples): 10 -> 100 SRM-alpha (their learned 50-tap input PSP at its alpha start, tau 50 ms) ->
  2 counted SRM outputs, axonal delays U(0, 15) ms on both projections, theta 1, tau_sr = tau_ref = 1 ms,
  scale_ref 2; random weights, the hidden layer at ~60 Hz (trained ones fire at ~10-300 Hz). Not in the default
  set (its samples are 10 s long): ``--workloads srm-isi --counts 1,8,540 --brian2-max 8`` (540 = the authors'
  ISI test file). ``srm_steep_crossings`` counts the crossings where a clocked run bursts
  (:func:`eventsnn.bridge.engines.event_srm.simulate_event_srm`): there Brian2 at 0.01 ms is not expected to match
  every spike.

At each sample count (default 1, 16, 128, 2264 -- the SHD test set) both engines simulate the same samples with
``--workers`` parallel workers (the LIF event engine: threads of one process; the SRM one and Brian2:
processes). Times include compilation: Brian2's code generation and C++ build (each run builds its network), and
numba's compilation of the event engine, which happens once per machine -- the script starts with an empty numba
cache, so the first event run of each engine (LIF, SRM; 1 sample) pays it (``event_s_cold``) and later ones load
the machine code (``event_s``, measured in this process; ``event_s_1_cached`` is the 1-sample run again). Brian2 is run up to ``--brian2-max`` samples (default
128); beyond, its time is extrapolated linearly from its two largest measured counts (``brian2_extrapolated``).
At the largest count the event engine also runs the time-reversed set (``reverse full``), as ``verify`` does.
Also reported: how close Brian2 at 0.01 ms is to the exact run at its largest count, and the load average.

    python benchmarks/event_throughput.py [--counts 1,16,128,2264] [--workloads shd-ff,trained-like,srm-isi]
                                          [--brian2-max 128] [--workers N] [--small] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("EVENTSNN_PROGRESS", "0")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from verify_throughput import workload  # noqa: E402

from eventsnn.bridge.network import Layer, Network  # noqa: E402
from eventsnn.data.events import Events  # noqa: E402
from eventsnn.util.provenance import provenance  # noqa: E402


def trained_like(n_samples, n_in=700, hidden=256, n_out=20, duration_s=1.0, spikes=8000, seed=0):
    """700 -> 256 LIF -> 256 recurrent LIF -> 20 readout with axonal delays, 2 ms refractory period, shared
    time constants; hidden layers at 10-50 Hz on SHD-density random input."""
    rng = np.random.default_rng(seed)
    H = hidden
    full = lambda v, n: np.full(n, v)  # noqa: E731
    l1 = Layer("lif", H, full(20.0, H), full(5.0, H), rng.normal(0.026, 0.156, (n_in, H)), threshold=np.ones(H),
               refractory_ms=full(2.0, H), ff_delay_ms=rng.uniform(0, 25, n_in))
    l2 = Layer("lif", H, full(20.0, H), full(5.0, H), rng.normal(0.02, 0.5, (H, H)), threshold=np.ones(H),
               refractory_ms=full(2.0, H), ff_delay_ms=rng.uniform(0, 25, H),
               rec_weight=rng.normal(-0.01, 0.15, (H, H)), rec_delay_ms=rng.uniform(0, 25, H))
    out = Layer("li", n_out, full(20.0, n_out), full(5.0, n_out), rng.normal(0, 0.3, (H, n_out)))
    net = Network(1.0, n_in, [l1, l2, out], "max").validate()
    tl = [rng.uniform(0, duration_s, spikes) for _ in range(n_samples)]
    ul = [rng.integers(0, n_in, spikes) for _ in range(n_samples)]
    return net, Events.from_lists(tl, ul, rng.integers(0, n_out, n_samples), n_in, duration_s, n_out)


def srm_isi(n_samples, hidden=100, duration_s=10.0, seed=0, **_):
    """The paper-isi preset's network at its start shape on ``make_paper_isi`` samples (docstring above)."""
    from eventsnn.data.paper import make_paper_isi
    from eventsnn.model.srm import start_taps

    ev = make_paper_isi(n_samples, duration_ms=duration_s * 1e3, seed=seed)
    rng = np.random.default_rng(seed)
    n_in, n_out = ev.n_units, ev.n_classes
    srm = lambda n: dict(threshold=np.ones(n), tau_sr_ms=np.ones(n), tau_ref_ms=np.ones(n),  # noqa: E731
                         scale_ref=np.full(n, 2.0))
    l1 = Layer("srm", hidden, None, None, rng.normal(1.0, 1.8, (n_in, hidden)), ff_delay_ms=rng.uniform(0, 15, n_in),
               psp_taps=start_taps(50, 50.0, 1.0), psp_tap_ms=1.0, **srm(hidden))
    out = Layer("srm", n_out, None, None, rng.normal(0.4, 0.54, (hidden, n_out)),
                ff_delay_ms=rng.uniform(0, 15, hidden), **srm(n_out))
    return Network(1.0, n_in, [l1, out], "count").validate(), ev


WORKLOADS = {"shd-ff": workload, "trained-like": trained_like, "srm-isi": srm_isi}


def timed(f):
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0, round((load + os.getloadavg()[0]) / 2, 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="cpp_standalone", choices=["numpy", "cython", "cpp_standalone"])
    ap.add_argument("--small", action="store_true", help="CI-sized workloads (numpy target, dt 0.1 ms)")
    ap.add_argument("--counts", default=None, help="sample counts (default 1,16,128,2264; --small: 1,8)")
    ap.add_argument("--workloads", default="shd-ff,trained-like")
    ap.add_argument("--brian2-max", type=int, default=128, help="largest count Brian2 runs (beyond: extrapolated)")
    ap.add_argument("--dt", type=float, default=0.01, help="Brian2 step (ms)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    for wl in a.workloads.split(","):
        if wl not in WORKLOADS:
            ap.error(f"--workloads: unknown workload {wl!r}; choose from {', '.join(WORKLOADS)}")
    # an empty numba cache: the first event run pays the compilation, as on a fresh machine
    cache = tempfile.TemporaryDirectory(prefix="eventsnn-bench-cache-")
    os.environ["EVENTSNN_CACHE_DIR"] = cache.name
    from eventsnn.bridge.engines.brian2 import simulate_brian2
    from eventsnn.bridge.engines.event import simulate_event
    from eventsnn.data.transforms import Reverse
    from eventsnn.validation.compare import compare_runs

    if a.small:
        shape = dict(n_in=100, hidden=32, n_out=5, duration_s=0.1, spikes=120)
        counts, target, dt = [int(c) for c in (a.counts or "1,8").split(",")], "numpy", max(a.dt, 0.1)
    else:
        shape = dict(n_in=700, hidden=256, n_out=20, duration_s=1.0, spikes=8000)
        counts, target, dt = [int(c) for c in (a.counts or "1,16,128,2264").split(",")], a.target, a.dt
    counts = sorted(set(counts))
    n_max = counts[-1]
    results = {}
    compiled = set()  # the engines (lif, srm) whose first run has paid numba's compilation
    for wl in a.workloads.split(","):
        # the ISI task needs samples longer than its 100 ms maximum interval
        wl_shape = dict(shape, hidden=16, duration_s=1.0) if a.small and wl == "srm-isi" else shape
        net, ev = WORKLOADS[wl](n_samples=n_max, **wl_shape)
        engine = "srm" if any(L.kind == "srm" for L in net.layers) else "lif"
        points = []
        b2_runs = {}
        for n in counts:
            sub = ev.subset(np.arange(n))
            w = max(1, min(a.workers, n))
            exact, t_ev, load_ev = timed(lambda: simulate_event(net, sub, workers=w))
            pt = {"samples": n, "workers": w, "event_s": t_ev, "event_load": load_ev,
                  "hidden_spikes_per_sample": [len(L.time_ms) / n for L in exact.layers]}
            if "srm_steep_crossings" in exact.attrs:
                pt["srm_steep_crossings"] = exact.attrs["srm_steep_crossings"]
            if engine not in compiled:
                pt["event_s_cold"] = t_ev
                _, pt["event_s"], _ = timed(lambda: simulate_event(net, sub, workers=w))
                pt["event_s_1_cached"] = pt["event_s"]
                compiled.add(engine)
            if n == n_max:
                rev = Reverse("full")(sub)
                _, pt["event_reversed_s"], pt["event_reversed_load"] = timed(
                    lambda: simulate_event(net, rev, workers=w))
                pt["event_original_and_reversed_s"] = pt["event_s"] + pt["event_reversed_s"]
            if n <= a.brian2_max:
                with tempfile.TemporaryDirectory() as d:
                    b2, t_b2, load_b2 = timed(lambda: simulate_brian2(
                        net, sub, dt_ms=dt, target=target, delays="exact", inputs="exact", build_dir=d, workers=w))
                pt.update(brian2_s=t_b2, brian2_load=load_b2, brian2_extrapolated=False)
                b2_runs[n] = t_b2
                c = compare_runs(exact, b2, tol_ms=0.1)
                cw = compare_runs(exact, b2, tol_ms=1.0)
                pt["brian2_vs_exact"] = {"matched_within_0.1ms": [L["matched_fraction"] for L in c["layers"]],
                                         "median_abs_shift_ms": [L["median_abs_shift_ms"] for L in cw["layers"]],
                                         "prediction_agreement": c["prediction_agreement"]}
            elif len(b2_runs) >= 2:
                (n1, t1), (n2, t2) = sorted(b2_runs.items())[-2:]
                per = (t2 - t1) / (n2 - n1)
                how = f"linear in samples through its runs at {n1} and {n2} samples"
                if per <= 0:  # the smaller run took longer (a loaded machine): scale the larger one instead
                    per, how = t2 / n2, f"proportional to its run at {n2} samples (its runs at {n1} and {n2} " \
                                        "samples gave no positive slope)"
                pt.update(brian2_s=t2 + per * (n - n2), brian2_extrapolated=True, brian2_extrapolated_from=how)
            if "brian2_s" in pt:
                pt["speedup_event_over_brian2"] = pt["brian2_s"] / pt["event_s"]
                if "event_s_cold" in pt:
                    pt["speedup_cold_event_over_brian2"] = pt["brian2_s"] / pt["event_s_cold"]
            points.append(pt)
            print(json.dumps({"workload": wl, **pt}), file=sys.stderr)
        results[wl] = points
    first = results[a.workloads.split(",")[0]]
    top = max((p for p in first if not p.get("brian2_extrapolated", True)), key=lambda p: p["samples"])
    res = {"workloads": results, "brian2_target": target, "brian2_dt_ms": dt, "workload_shape": "small" if a.small
           else "shd-shaped", "cpu_count": os.cpu_count(), "loadavg_end": os.getloadavg(),
           "versions": {k: v for k, v in provenance().items()
                        if k in ("eventsnn", "brian2", "numpy", "numba", "python", "git_commit")}}
    import numba
    res["versions"]["numba"] = numba.__version__
    # the summary at the largest count Brian2 ran, first workload (the keys CI checks)
    res.update(samples=top["samples"], event_s_per_sample=top["event_s"] / top["samples"],
               brian2_s_per_sample=top["brian2_s"] / top["samples"],
               samples_per_s=top["samples"] / top["event_s"], baseline_samples_per_s=top["samples"] / top["brian2_s"],
               **{"brian2_matched_within_0.1ms": top["brian2_vs_exact"]["matched_within_0.1ms"][0]})
    print(json.dumps(res) if a.json else json.dumps(res, indent=2))
    cache.cleanup()


if __name__ == "__main__":
    main()
