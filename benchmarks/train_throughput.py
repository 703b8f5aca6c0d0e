"""Training throughput (forward + backward + Adam step) of eventsnn against a plain PyTorch loop and
``torch.compile`` of that loop, at several batch sizes, with and without axonal delays; printed as JSON.

Workload "SHD-shaped" (default): 700 inputs -> 256 LIF -> 256 LIF (recurrent) -> 20 leaky readout, 1 ms steps,
1000 steps, random binary input at ~8k spikes per sample; with ``axonal`` delays each of the two hidden layers
has learnable delays up to 250 steps. ``--small`` shrinks it for CI-sized runs. ``--workload paper-isi``: the
paper's ISI task at its size, 10 inputs -> 100 LIF -> 2 leaky readout, 10,000 steps of 1 ms, ~34 input spikes per
sample (the density of ``eventsnn data make paper-isi``), axonal delays up to 15 steps; no recurrence.

Implementations, all on the same model parameters and data, timed in interleaved rounds in one process:

* ``eventsnn``: the engine as training uses it (delays for the whole sequence at once, the fused scan);
* ``plain``: the per-step loop a user writes first, layer by layer: the delayed input gathered for the whole
  sequence (interp delays), then at every step multiply the step's slice, update the LIF state, spike (the same
  maths, the same learnable per-neuron time constants, the same surrogate);
* ``compiled``: the same loop with its per-step cell under ``torch.compile`` (compile time excluded: one
  warm-up step per implementation before timing).

    python benchmarks/train_throughput.py [--batch 16,64,256] [--delays none,axonal] [--device cpu|cuda]
                                          [--impls eventsnn,plain,compiled] [--iters 3] [--small] [--json]
                                          [--workload shd-shaped|small|paper-isi]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as the eventsnn command runs (docs/performance.md)
import torch  # noqa: E402

from eventsnn.model.layers import SNN, LIFLayer, log_probs, spike_fn  # noqa: E402

from _memory import in_child, peak_mb  # noqa: E402

IMPLS = ("eventsnn", "plain", "compiled")
# inputs, hidden, outputs, steps, maximum delay (steps), input spike density, two hidden layers (the 2nd recurrent)
WORKLOADS = {"shd-shaped": (700, 256, 20, 1000, 250, 8000 / 700 / 1000, True),
             "small": (100, 64, 20, 200, 50, 8000 / 700 / 1000, True),
             "paper-isi": (10, 100, 2, 10_000, 15, 34 / 10 / 10_000, False)}


def build(n_in, hidden, n_out, delays, max_delay, device, seed=0, two_layers=True):
    g = torch.Generator().manual_seed(seed)
    hid = [LIFLayer(n_in, hidden, delays=delays, max_delay_ms=max_delay, weight_scale=4.0, generator=g)]
    if two_layers:
        hid.append(LIFLayer(hidden, hidden, delays=delays, max_delay_ms=max_delay, recurrent=True, weight_scale=4.0,
                            generator=g))
    out = LIFLayer(hidden, n_out, spiking=False, generator=g)
    for layer in hid:
        layer.set_delays_trainable(delays != "none")
    return SNN([*hid, out], 1.0, "max").to(device)


def lif_cell(v, I, inp, s_rec, w, w_rec, a, b, k, theta, spiking: bool):
    """One step of one layer (the contract's order): integrate, threshold, deliver, reset."""
    v = a * v + k * I
    I = b * I
    cur = inp @ w
    if not spiking:
        return v, I + cur, v
    s = spike_fn(v - theta, "fast-sigmoid", 10.0)
    if w_rec is not None:
        cur = cur + s @ w_rec
    return v * (1 - s.detach()), I + cur, s


def delayed(h: torch.Tensor, d: torch.Tensor | None) -> torch.Tensor:
    """Each input column of ``h [B, T, N]`` delayed by ``d [N]`` steps (linear interpolation), whole sequence."""
    if d is None:
        return h
    B, T, N = h.shape
    lo = torch.floor(d.detach()).long()
    fr = d - lo
    out = 0
    for shift, wgt in ((lo, 1 - fr), (lo + 1, fr)):
        idx = torch.arange(T, device=h.device)[:, None] - shift[None, :]
        g = h.gather(1, idx.clamp(min=0).expand(B, T, N)) * (idx >= 0)
        out = out + wgt * g
    return out


def loop_forward(model: SNN, x: torch.Tensor, cell):
    """The per-step loop over time, layer by layer: a layer's delayed input is gathered for the whole sequence
    (one gather per tap), then each step multiplies its slice, updates the state and emits spikes. Steps are
    taken with ``unbind`` and joined with ``stack`` (indexing ``h[:, n]`` would make every step's backward
    write a full-size gradient)."""
    B, T, _ = x.shape
    h = x
    for layer in model.layers:
        a, b, k = layer._propagators(1.0)
        d = layer.ff_delay_ms.clamp(min=0) if layer.ff_delay_ms is not None else None
        v = x.new_zeros(B, layer.size)
        I = x.new_zeros(B, layer.size)
        s = x.new_zeros(B, layer.size)
        outs = []
        for inp in delayed(h, d).unbind(1):
            v, I, s = cell(v, I, inp, s, layer.ff_weight, layer.rec_weight, a, b, k, layer.threshold, layer.spiking)
            outs.append(s)
        h = torch.stack(outs, 1)
    return h.max(1).values


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def setup(cfg, batch, delays, impls, device):
    """Data, model, optimiser and a training-step function per implementation."""
    n_in, hidden, n_out, T, max_delay, density, two_layers = cfg
    torch.manual_seed(0)
    x = (torch.rand(batch, T, n_in, device=device) < density).float()
    y = torch.randint(0, n_out, (batch,), device=device)
    model = build(n_in, hidden, n_out, delays, max_delay, device, two_layers=two_layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    # one graph per layer and per requires_grad pattern of the state (the first steps start from constants):
    # about 9, more than dynamo's default recompile limit of 8, past which it would silently run eagerly
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 64)
    compiled_cell = torch.compile(lif_cell, dynamic=False) if "compiled" in impls else None

    def step(impl):
        if impl == "eventsnn":
            scores, _, _ = model(x, delay_mode="interp", surrogate="fast-sigmoid", slope=10.0)
            logp = log_probs(scores, "max")
        else:
            logp = torch.log_softmax(loop_forward(model, x, lif_cell if impl == "plain" else compiled_cell), 1)
        loss = torch.nn.functional.nll_loss(logp, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def measure(cfg, batch, delays, impls, iters, device, child_args):
    step = setup(cfg, batch, delays, impls, device)
    warm = {impl: timed(lambda: step(impl), device) for impl in impls}  # warm-up and compilation, not timed
    times = {i: [] for i in impls}
    for _ in range(iters):  # interleaved rounds: each implementation sees the same machine state
        for impl in impls:
            times[impl].append(timed(lambda: step(impl), device))
    res = {"batch": batch, "delays": delays}
    for impl in impls:
        best = min(times[impl])
        peak = in_child(__file__, ["--memory-of", f"{batch},{delays},{impl}", *child_args])["peak_mb"]
        res[impl] = {"samples_per_s": batch / best, "step_s": best, "peak_mb": peak, "first_step_s": warm[impl]}
    for impl in impls:
        if impl != "eventsnn" and "eventsnn" in impls:
            res[f"eventsnn_vs_{impl}"] = res["eventsnn"]["samples_per_s"] / res[impl]["samples_per_s"]
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--small", action="store_true", help="CI-sized workload (100 -> 64 -> 64 -> 20, 200 steps)")
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="shd-shaped",
                    help="shd-shaped (default), small (= --small) or paper-isi (10 -> 100 -> 2, 10,000 steps)")
    ap.add_argument("--batch", default="16,64,256", help="batch sizes, comma-separated")
    ap.add_argument("--delays", default="none,axonal", help="delay kinds, comma-separated: none, axonal")
    ap.add_argument("--impls", default=",".join(IMPLS), help=f"implementations, comma-separated: {', '.join(IMPLS)}")
    ap.add_argument("--iters", type=int, default=3, help="timed rounds per configuration (best is reported)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--memory-of", help=argparse.SUPPRESS)  # batch,delays,impl: two steps in this process, peak
    a = ap.parse_args()
    impls = [i for i in a.impls.split(",") if i]
    bad = [i for i in impls if i not in IMPLS] + [d for d in a.delays.split(",") if d not in ("none", "axonal")]
    if bad:
        ap.error(f"unknown implementation or delay kind: {', '.join(bad)}")
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    workload = "small" if a.small else a.workload
    cfg = WORKLOADS[workload]
    child_args = ["--device", a.device, "--workload", workload] + (["--threads", str(a.threads)] if a.threads else [])
    if a.memory_of:
        batch, delays, impl = a.memory_of.split(",")
        step = setup(cfg, int(batch), delays, [impl], dev)
        step(impl)
        step(impl)
        print(json.dumps({"peak_mb": peak_mb(dev)}))
        return
    rows = []
    for d in a.delays.split(","):
        for b in a.batch.split(","):
            rows.append(measure(cfg, int(b), d, impls, a.iters, dev, child_args))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress: one row at a time
    res = {"rows": rows, "workload": workload, "steps": cfg[3], "inputs": cfg[0],
           "hidden": cfg[1], "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev)}
    print(json.dumps(res) if a.json else json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
