"""Brian2 verification throughput, printed as JSON.

Workload (default): 700 inputs -> 256 LIF with axonal delays -> 20 readout, 1 s samples at SHD density
(~8k input spikes), dt = 0.01 ms. eventsnn runs many samples in one build (copies side by side, samples in
time windows) and splits the samples over ``--workers`` processes (default: every core, at most one per 32
samples). The baseline is a per-sample loop in one process: one network, new input spikes for each sample (``SpikeGeneratorGroup.set_spikes``
+ ``Network.restore``), on the same runtime target (Cython for the standalone targets), code generation and
compilation excluded from its time; timed in the same run. ``--small`` shrinks the workload for CI.

    python benchmarks/verify_throughput.py [--target numpy|cython|cpp_standalone] [--workers N] [--small] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("EVENTSNN_PROGRESS", "0")

from eventsnn.bridge.engines.brian2 import simulate_brian2  # noqa: E402
from eventsnn.bridge.network import Layer, Network  # noqa: E402
from eventsnn.data.events import Events, bin_for_run  # noqa: E402


def workload(n_in, hidden, n_out, duration_s, spikes, n_samples, seed=0):
    rng = np.random.default_rng(seed)
    net = Network(1.0, n_in, [
        Layer("lif", hidden, np.full(hidden, 20.0), np.full(hidden, 5.0),
              rng.normal(0, 3.0 / np.sqrt(n_in), (n_in, hidden)) + 0.05, threshold=np.ones(hidden),
              ff_delay_ms=rng.uniform(0, 25, n_in)),
        Layer("li", n_out, np.full(n_out, 20.0), np.full(n_out, 5.0), rng.normal(0, 0.3, (hidden, n_out)))],
        "max").validate()
    tl = [rng.uniform(0, duration_s, spikes) for _ in range(n_samples)]
    ul = [rng.integers(0, n_in, spikes) for _ in range(n_samples)]
    return net, Events.from_lists(tl, ul, rng.integers(0, n_out, n_samples), n_in, duration_s, n_out)


def baseline_per_sample(net, ev, dt_ms, n, build_dir, target):
    """One network (runtime target), new inputs per sample: the straightforward Brian2 loop."""
    import brian2 as b2

    from eventsnn.bridge.engines.brian2 import _configure
    from eventsnn.model.contract import propagators
    _configure(target, Path(build_dir), exact=True)
    b2.start_scope()
    b2.defaultclock.dt = dt_ms * b2.ms
    L0, L1 = net.layers
    inp = b2.SpikeGeneratorGroup(net.n_inputs, [0], [0] * b2.ms)
    groups, syns = [], []
    pre = inp
    for li, L in enumerate(net.layers):
        a, b, k = propagators(L.tau_mem_ms, L.tau_syn_ms, dt_ms)
        G = b2.NeuronGroup(L.size, "v : 1\nI : 1\na : 1 (constant)\nb : 1 (constant)\nk : 1 (constant)",
                           threshold="v >= 1" if L.kind == "lif" else None, reset="v = 0" if L.kind == "lif" else None)
        G.a, G.b, G.k = a, b, k
        G.run_regularly("v = a*v + k*I\nI = b*I", when="groups")
        S = b2.Synapses(pre, G, "w : 1 (constant)", on_pre="I_post += w")
        S.connect()
        S.w = L.ff_weight.ravel()
        if L.ff_delay_ms is not None:
            S.delay = np.repeat(np.floor(L.ff_delay_ms / dt_ms + 0.5) * dt_ms, L.size) * b2.ms
        groups.append(G)
        syns.append(S)
        pre = G
    mon = b2.SpikeMonitor(groups[0])
    vmon = b2.StateMonitor(groups[1], "v", record=True, dt=1 * b2.ms)
    net_b2 = b2.Network(inp, *groups, *syns, mon, vmon)
    net_b2.store()
    b = bin_for_run(ev, np.arange(n), dt_ms, 1.0, "exact")
    sample, step, unit, T = b.sample, b.step, b.unit, b.n_steps  # (the baseline delivers one spike per step)
    net_b2.run(2 * dt_ms * b2.ms, namespace={})  # code generation / compilation, not timed
    t0 = time.perf_counter()
    for s in range(n):
        net_b2.restore()
        m = sample == s
        inp.set_spikes(unit[m], step[m] * dt_ms * b2.ms)
        net_b2.run(T * dt_ms * b2.ms, namespace={})
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="numpy", choices=["numpy", "cython", "cpp_standalone", "cuda_standalone"])
    ap.add_argument("--small", action="store_true", help="CI-sized workload")
    ap.add_argument("--samples", type=int)
    ap.add_argument("--dt", type=float)
    ap.add_argument("--workers", type=int,
                    help="processes (default: every core, but at most one per 32 samples: each process pays its own "
                         "start-up and compilation)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.small:
        shape = dict(n_in=100, hidden=32, n_out=5, duration_s=0.1, spikes=120)
        n, dt, n_base = a.samples or 16, a.dt or 0.1, 2
    else:
        shape = dict(n_in=700, hidden=256, n_out=20, duration_s=1.0, spikes=8000)
        n, dt, n_base = a.samples or 128, a.dt or 0.01, 1
    workers = a.workers or max(1, min(os.cpu_count() or 1, n // 32))
    net, ev = workload(n_samples=n, **shape)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        run = simulate_brian2(net, ev, dt_ms=dt, target=a.target, delays="exact", inputs="exact", build_dir=d,
                              workers=workers)
        t_many = time.perf_counter() - t0
        base_target = a.target if a.target in ("numpy", "cython") else "cython"
        t_base = baseline_per_sample(net, ev, dt, n_base, Path(d) / "baseline", base_target)
    res = {"samples_per_s": n / t_many, "samples_per_s_excluding_build": n / run.attrs["wall_s"],
           "baseline_samples_per_s": n_base / t_base,
           "speedup": (n / t_many) / (n_base / t_base), "dt_ms": dt, "target": a.target,
           "baseline_target": f"{base_target} (runtime, one process, per-sample restore + set_spikes)",
           "samples": n, "workers": run.attrs.get("workers", 1),
           "copies": run.attrs["copies"], "windows": run.attrs["windows"], "wall_s_incl_build": t_many,
           "simulate_wall_s": run.attrs["wall_s"], "workload": "small" if a.small else "shd-shaped",
           "cpu_count": os.cpu_count()}
    print(json.dumps(res) if a.json else json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
