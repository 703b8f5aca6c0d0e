"""Axonal delays into a narrow layer on the CPU: the fused kernel against the gather + matmul, printed as JSON.

A dense input (a hidden layer that fires in more than 5% of its steps, too dense for the spike-list paths) with
learned (interpolated) axonal delays into a few neurons -- the readout of the synthetic tasks and of speech --
goes through one numba kernel (``eventsnn.model.delays._AxonalDense``); the baseline, measured in the same run on
the same data, is the formulation it replaced there (and that CUDA uses): two delayed copies of the whole input,
their blend and a matmul. Each row says whether the default rule (``_fused_axonal``) takes the kernel there.

Rows:

* ``layer``: forward + backward of the delayed current alone, input ``[32, 10000, 100]`` (10 s at 1 ms, batch
  32) at 8%, 25% and 100% density, delays U(0, 15) steps, into 2, 4, 20, 32 and 64 neurons;
* ``paper-isi step``: one training step (forward, probSpikes loss, backward, Nadam) of the authors' ISI network
  (``--preset paper-isi``: 10 inputs -> learned 50-tap PSP -> 100 SRM -> delays -> 2 counted SRM outputs) on a
  batch of 32 samples of ``data make paper-isi``.

Best of ``--iters`` after one warm-up of each (numba compiles once); the two are interleaved. ``--small``: 1 s samples.

    python benchmarks/narrow_delays.py [--iters 3] [--threads 1] [--small] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from eventsnn.model import delays


def compare(fn, iters):
    """``fn`` with the fused kernel (wherever it can run) and with the gather + matmul: one warm-up run of each
    (numba compiles once), then ``iters`` runs of each, interleaved; the best times ``(fused_s, baseline_s)``."""
    times = {True: [], False: []}
    rule = delays._fused_axonal
    try:
        for n in range(iters + 1):
            for use in (True, False):
                delays._fused_axonal = lambda x, w, use=use: use and delays.cpu_backend.applies(x, w)
                t0 = time.perf_counter()
                fn()
                if n:
                    times[use].append(time.perf_counter() - t0)
    finally:
        delays._fused_axonal = rule
    return min(times[True]), min(times[False])


def layer_rows(T, iters):
    rows = []
    for density in (0.08, 0.25, 1.0):
        for n_post in (2, 4, 20, 32, 64):
            g = torch.Generator().manual_seed(0)
            x = (torch.rand(32, T, 100, generator=g) < density).float().requires_grad_()
            w = torch.randn(100, n_post, generator=g).requires_grad_()
            d = (torch.rand(100, generator=g) * 15).requires_grad_()
            go = torch.randn(32, T, n_post, generator=g)

            def step():
                x.grad = w.grad = d.grad = None
                delays.delayed_current(x, w, d, "interp").backward(go)

            fused, base = compare(step, iters)
            rows.append({"row": "layer", "density": density, "n_pre": 100, "n_post": n_post, "steps": T, "batch": 32,
                         "fused_s": fused, "baseline_s": base, "speedup": base / fused,
                         "fused_by_default": delays._fused_axonal(x, w)})
    return rows


def isi_step(T, iters):
    from eventsnn.data.paper import make_paper_isi
    from eventsnn.model.layers import summed_loss
    from eventsnn.training.config import TrainConfig
    from eventsnn.training.loop import Batcher, build_model, make_optimizer

    settings = TrainConfig.from_preset("paper-isi")
    settings["max_delay_ms"] = float(T)
    cfg = TrainConfig.read(settings)
    ev = make_paper_isi(32, duration_ms=float(T), seed=0)
    torch.manual_seed(0)
    model = build_model(cfg, ev.n_units, ev.n_classes, torch.device("cpu"))
    opt = make_optimizer(model, cfg)
    x, y = Batcher(ev, cfg.dt_ms, "cpu")(np.arange(len(ev)))

    def step():
        opt.zero_grad()
        scores, trace, _ = model(x, delay_mode="interp", surrogate=cfg.surrogate, slope=cfg.slope)
        summed_loss(scores, trace, y, cfg.readout, cfg.loss, cfg.rate_true, cfg.rate_false).backward()
        opt.step()

    fused, base = compare(step, iters)
    return {"row": "paper-isi step", "batch": len(ev), "steps": x.shape[1], "fused_s": fused, "baseline_s": base,
            "speedup": base / fused, "samples_per_s": len(ev) / fused, "baseline_samples_per_s": len(ev) / base}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch (and numba) threads")
    ap.add_argument("--small", action="store_true", help="CI-sized: 1 s samples")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    T = 1000 if a.small else 10_000
    rows = layer_rows(T, a.iters) + [isi_step(T, a.iters)]
    import numba
    res = {"rows": rows, **{k: rows[-1][k] for k in ("samples_per_s", "baseline_samples_per_s")},
           "threads": a.threads, "cpu_count": os.cpu_count(), "loadavg": os.getloadavg(),
           "versions": {"torch": torch.__version__, "numba": numba.__version__}}
    print(json.dumps(res) if a.json else json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
