"""SRM-alpha training step: the fused scan against the autograd reference loop, printed as JSON.

Workload: the authors' speech network shape, 700 -> 128 -> 128 SRM-alpha layers with axonal delays on the
hidden inputs and a counted 20-unit SRM output, 200 steps (the authors' padded SHD raster), batch 16, random
binary input at SHD density, theta 10, tau_sr 1, tau_ref 2, scale_ref 2 (steps); one training step = forward +
backward (spike-count loss) + Nadam. ``baseline`` is the same step with ``backend="autograd"`` (the per-step
reference loop), measured in the same run on the same data; the spikes of both are checked equal.

    python benchmarks/srm_scan.py [--small] [--iters 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from eventsnn.model.layers import SNN, rate_loss
from eventsnn.model.srm_layer import SRMLayer


def step_time(model, opt, x, y, backend, iters):
    """Best time of ``iters`` training steps after one warm-up step (numba compiles its kernel once)."""
    times, spikes = [], None
    for n in range(iters + 1):
        t0 = time.perf_counter()
        scores, trace, hidden = model(x, delay_mode="interp", surrogate="fast-sigmoid", slope=1.0, backend=backend)
        loss = rate_loss(scores, y, trace.shape[1], 0.2, 0.02)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if n:
            times.append(time.perf_counter() - t0)
        else:
            spikes = [h.detach().clone() for h in hidden]
    return min(times), spikes


def build(n_in, hidden, seed=0):
    g = torch.Generator().manual_seed(seed)
    kw = dict(tau_sr_ms=1.0, tau_ref_ms=2.0, scale_ref=2.0, threshold=10.0, weight_scale=40.0, generator=g)
    layers = [SRMLayer(n_in, hidden, **kw), SRMLayer(hidden, hidden, delays="axonal", max_delay_ms=64.0, **kw),
              SRMLayer(hidden, 20, delays="axonal", max_delay_ms=64.0, **kw)]
    for L in layers:
        L.set_delays_trainable(L.ff_delay_ms is not None)
    return SNN(layers, 1.0, "count")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="CI-sized workload (100 inputs, 50 steps, batch 4)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    n_in, T, B, hidden = (100, 50, 4, 32) if a.small else (700, 200, 16, 128)
    torch.manual_seed(0)
    x = (torch.rand(B, T, n_in) < 8000 / 700 / 1000).float()
    y = torch.randint(0, 20, (B,))
    res = {"batch": B, "steps": T, "inputs": n_in, "hidden": hidden, "threads": torch.get_num_threads()}
    out = {}
    for backend in ("fused", "autograd"):
        model = build(n_in, hidden)
        opt = torch.optim.NAdam(model.parameters(), lr=1e-3)
        out[backend] = step_time(model, opt, x, y, backend, a.iters)
    res["samples_per_s"] = B / out["fused"][0]
    res["baseline_samples_per_s"] = B / out["autograd"][0]
    res["speedup"] = res["samples_per_s"] / res["baseline_samples_per_s"]
    res["same_spikes"] = all(torch.equal(p, q) for p, q in zip(out["fused"][1], out["autograd"][1]))
    res["hidden_spikes_per_neuron"] = float(sum(h.sum() for h in out["fused"][1]) / (B * 2 * hidden))
    print(json.dumps(res) if a.json else json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
