"""Per-synapse delay training cost against the maximum delay, printed as JSON.

Workload (issue 16): one 700 -> 256 LIF layer with learnable delays + a 20-unit leaky readout, 1000 steps of
1 ms, batch 8, random binary input at SHD density (~8k spikes per sample); one training step = forward +
backward + Adam. Rows: axonal delays (one per presynaptic neuron), and per-synapse delays with the loop
formulation (one matmul per distinct delay: the baseline, what eventsnn did before) and the taps formulation
(cost independent of the maximum delay). Each row runs in its own process (so that its peak resident memory
is its own) on the same data (same seed).

    python benchmarks/synaptic_delays.py [--max-delays 25,100,250] [--loop-max 250] [--small] [--json]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from eventsnn.model.layers import SNN, LIFLayer, log_probs

from _memory import in_child, peak_mb


def one_row(kind, method, max_delay, small, iters):
    """Best time of ``iters`` training steps after one warm-up step (numba compiles its kernel once)."""
    n_in, T, B, hidden = (100, 200, 8, 64) if small else (700, 1000, 8, 256)
    torch.manual_seed(0)
    x = (torch.rand(B, T, n_in) < 8000 / 700 / 1000).float()
    y = torch.randint(0, 20, (B,))
    g = torch.Generator().manual_seed(0)
    layer = LIFLayer(n_in, hidden, delays=kind, max_delay_ms=max_delay, weight_scale=4.0, generator=g)
    layer.set_delays_trainable(True)
    layer.delay_method = method if kind == "synaptic" else "auto"
    model = SNN([layer, LIFLayer(hidden, 20, spiking=False, generator=g)], 1.0, "max")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for n in range(iters + 1):
        t0 = time.perf_counter()
        scores, _, _ = model(x, delay_mode="interp", surrogate="fast-sigmoid", slope=10.0)
        loss = torch.nn.functional.nll_loss(log_probs(scores, "max"), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if n:
            times.append(time.perf_counter() - t0)
    return {"delays": kind, "method": method, "max_delay_steps": max_delay, "samples_per_s": B / min(times),
            "peak_rss_mb": peak_mb(), "batch": B, "steps": T, "inputs": n_in}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-delays", default="25,100,250", help="maximum delays in steps, comma-separated")
    ap.add_argument("--loop-max", type=int, default=250, help="skip the loop baseline above this maximum delay")
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--small", action="store_true", help="CI-sized workload (100 inputs, 200 steps)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--row", help=argparse.SUPPRESS)  # kind,method,max_delay: one row in this process
    a = ap.parse_args()
    if a.row:
        kind, method, dmax = a.row.split(",")
        print(json.dumps(one_row(kind, method, int(dmax), a.small, a.iters)))
        return
    rows = []
    for dmax in [int(v) for v in a.max_delays.split(",")]:
        for kind, method in (("axonal", "gather"), ("synaptic", "loop"), ("synaptic", "taps")):
            if method == "loop" and dmax > a.loop_max:
                continue
            args = ["--row", f"{kind},{method},{dmax}", "--iters", str(a.iters)] + (["--small"] if a.small else [])
            rows.append(in_child(__file__, args))
    by = {(r["method"], r["max_delay_steps"]): r["samples_per_s"] for r in rows}
    for r in rows:
        if r["method"] == "taps" and ("loop", r["max_delay_steps"]) in by:
            r["speedup_vs_loop"] = r["samples_per_s"] / by[("loop", r["max_delay_steps"])]
        if r["delays"] == "synaptic":
            r["slowdown_vs_axonal"] = by[("gather", r["max_delay_steps"])] / r["samples_per_s"]
    res = {"rows": rows, "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    print(json.dumps(res) if a.json else json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
