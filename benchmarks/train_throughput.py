"""Training throughput of the torch engine (forward + backward + Adam step), printed as JSON.

Workload "SHD-shaped" (default): 700 inputs -> 256 LIF (axonal delays up to 250 steps) -> 256 LIF (recurrent,
axonal delays) -> 20 leaky readout; 1 ms steps, 1000 steps, random binary input at ~8k spikes per sample.
``--small`` shrinks it for CI-sized runs. The engine computes each layer's delayed feed-forward current for the
whole sequence at once (a gather over time plus one matmul) and loops over time only for the recurrence; the
baseline is a plain per-step PyTorch loop of the same network that delays and multiplies inside the loop. Both
are timed in the same run on the same data.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--small] [--json]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from eventsnn.snn import SNN, LIFLayer, log_probs, spike_fn


def build(n_in, hidden, n_out, max_delay, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    l1 = LIFLayer(n_in, hidden, delays="axonal", max_delay_ms=max_delay, weight_scale=4.0, generator=g)
    l2 = LIFLayer(hidden, hidden, delays="axonal", max_delay_ms=max_delay, recurrent=True, weight_scale=4.0,
                  generator=g)
    out = LIFLayer(hidden, n_out, spiking=False, generator=g)
    for l in (l1, l2):
        l.set_delays_trainable(True)
    return SNN([l1, l2, out], 1.0, "max").to(device)


def baseline_forward(model: SNN, x: torch.Tensor):
    """Plain per-step loop: at every step gather the delayed inputs and multiply (same maths, interp delays)."""
    B, T, _ = x.shape
    h = x
    for layer in model.layers:
        a, b, k = layer._propagators(1.0)
        d = layer.ff_delay_ms.clamp(min=0) if layer.ff_delay_ms is not None else None
        v = x.new_zeros(B, layer.size)
        I = x.new_zeros(B, layer.size)
        outs = []
        for n in range(T):
            if d is None:
                inp = h[:, n]
            else:
                lo = torch.floor(d.detach()).long()
                fr = d - lo
                i0 = n - lo
                i1 = i0 - 1
                g0 = h[:, i0.clamp(min=0), torch.arange(h.shape[2], device=h.device)] * (i0 >= 0)
                g1 = h[:, i1.clamp(min=0), torch.arange(h.shape[2], device=h.device)] * (i1 >= 0)
                inp = (1 - fr) * g0 + fr * g1
            v = a * v + k * I
            I = b * I
            cur = inp @ layer.ff_weight
            if layer.spiking:
                s = spike_fn(v - layer.threshold, "fast-sigmoid", 10.0)
                if layer.rec_weight is not None:
                    cur = cur + s @ layer.rec_weight
                I = I + cur
                v = v * (1 - s.detach())
                outs.append(s)
            else:
                I = I + cur
                outs.append(v)
        h = torch.stack(outs, 1)
    return h.max(1).values


def time_steps(fn, n_iter):
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n_iter):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n_iter


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--small", action="store_true", help="CI-sized workload")
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--batch", type=int, help="override the workload's batch size (e.g. a CPU-sized SHD run)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if a.small:
        n_in, hidden, n_out, T, B, max_delay, density = 100, 64, 20, 200, 32, 50, 8000 / 700 / 1000
    else:
        n_in, hidden, n_out, T, B, max_delay, density = 700, 256, 20, 1000, 256, 250, 8000 / 700 / 1000
    B = a.batch or B
    torch.manual_seed(0)
    x = (torch.rand(B, T, n_in, device=dev) < density).float()
    y = torch.randint(0, n_out, (B,), device=dev)
    model = build(n_in, hidden, n_out, max_delay, dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def engine_step(backend="fused"):
        scores, _, _ = model(x, delay_mode="interp", surrogate="fast-sigmoid", slope=10.0, backend=backend)
        loss = torch.nn.functional.nll_loss(log_probs(scores, "max"), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def baseline_step():
        loss = torch.nn.functional.nll_loss(torch.log_softmax(baseline_forward(model, x), 1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    t_engine = time_steps(engine_step, a.iters)
    t_autograd = time_steps(lambda: engine_step("autograd"), max(1, a.iters // 2))
    t_base = time_steps(baseline_step, max(1, a.iters // 2))
    res = {"samples_per_s": B / t_engine, "baseline_samples_per_s": B / t_base, "speedup": t_base / t_engine,
           "autograd_scan_samples_per_s": B / t_autograd,
           "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
           "torch_threads": torch.get_num_threads(), "workload": "small" if a.small else "shd-shaped",
           "batch": B, "steps": T, "inputs": n_in, "hidden": hidden,
           "shd_epoch_s_estimate": 8156 / (B / t_engine)}
    print(json.dumps(res) if a.json else json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
