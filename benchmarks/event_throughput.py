"""The exact event-driven engine against Brian2 at dt = 0.01 ms, per sample, on the same cores; JSON.

Workload (default): the SHD-shaped verification network of ``verify_throughput.py`` (700 inputs -> 256 LIF
with axonal delays -> 20 readout, 1 s samples, ~8k input spikes at SHD density). Both engines simulate the
same samples with ``workers`` processes; Brian2's time includes code generation and compilation (its
many-samples-per-build path), the event engine's includes numba's compilation. Also reported: how close
Brian2 at 0.01 ms is to the exact run (fraction of hidden spikes within 0.1 ms, median shift).
``--small`` shrinks the workload for CI.

    python benchmarks/event_throughput.py [--target cpp_standalone] [--samples N] [--workers N] [--small] [--json]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from verify_throughput import workload  # noqa: E402

from eventsnn.bridge.engines.brian2 import simulate_brian2  # noqa: E402
from eventsnn.bridge.engines.event import simulate_event  # noqa: E402
from eventsnn.util.provenance import provenance  # noqa: E402
from eventsnn.validation.compare import compare_runs  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="cpp_standalone", choices=["numpy", "cython", "cpp_standalone"])
    ap.add_argument("--small", action="store_true", help="CI-sized workload (numpy target)")
    ap.add_argument("--samples", type=int)
    ap.add_argument("--dt", type=float, default=0.01, help="Brian2 step (ms)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.small:
        shape = dict(n_in=100, hidden=32, n_out=5, duration_s=0.1, spikes=120)
        n, target, dt = a.samples or 8, "numpy", max(a.dt, 0.1)
    else:
        shape = dict(n_in=700, hidden=256, n_out=20, duration_s=1.0, spikes=8000)
        n, target, dt = a.samples or 32, a.target, a.dt
    workers = max(1, min(a.workers, n))
    net, ev = workload(n_samples=n, **shape)
    t0 = time.perf_counter()
    exact = simulate_event(net, ev, workers=workers)
    t_event = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        b2 = simulate_brian2(net, ev, dt_ms=dt, target=target, delays="exact", inputs="exact", build_dir=d,
                             workers=workers)
        t_b2 = time.perf_counter() - t0
    c = compare_runs(exact, b2, tol_ms=0.1)
    cw = compare_runs(exact, b2, tol_ms=1.0)
    res = {"samples": n, "workers": workers, "workload": "small" if a.small else "shd-shaped",
           "event_s_per_sample": t_event / n, "event_samples_per_s": n / t_event,
           "brian2_s_per_sample": t_b2 / n, "brian2_samples_per_s": n / t_b2,
           "speedup_event_over_brian2": t_b2 / t_event, "brian2_target": target, "brian2_dt_ms": dt,
           "hidden_spikes_exact": int(len(exact.layers[0].time_ms)),
           "brian2_matched_within_0.1ms": c["layers"][0]["matched_fraction"],
           "brian2_median_shift_ms": cw["layers"][0]["median_abs_shift_ms"],
           "prediction_agreement": c["prediction_agreement"], "cpu_count": os.cpu_count(),
           "versions": {k: v for k, v in provenance().items() if k in ("eventsnn", "brian2", "numpy", "git_commit")}}
    res["samples_per_s"], res["baseline_samples_per_s"] = res["event_samples_per_s"], res["brian2_samples_per_s"]
    print(json.dumps(res) if a.json else json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
