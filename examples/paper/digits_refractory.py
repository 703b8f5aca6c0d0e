"""The trained spoken-digit models verified with the clock's rate ceiling carried into continuous time.

Models trained at 14.14 ms without a refractory period rely on the clock's ceiling of one spike per step; in
continuous time they fire 4-12x more and lose most of their accuracy. ``eventsnn train --refractory-ms DT`` (DT the
training step) trains *the same network* (at the training step a period of one step changes nothing: same spikes,
same gradients, tested) and exports it with the period. This script does that for the models a sweep has already
trained: it exports each cell's model, gives its spiking layers ``refractory_ms = dt``, and runs ``eventsnn verify``
on the whole test split (original, reversed in windows, reversed in full; exact engine and, at the training step,
torch and Brian2). It writes ``OUT/refractory.json`` and ``OUT/refractory.md``.

    python examples/paper/digits_refractory.py --sweep results/paper/digits_whole \\
        --data data/digits_whole/test.h5 --out results/paper/digits_whole/refractory --workers 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from eventsnn.bridge import load_network, save_network
from eventsnn.util.provenance import provenance


def _run(*args):
    r = subprocess.run([sys.executable, "-m", "eventsnn", *map(str, args)], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"eventsnn {' '.join(map(str, args))} failed:\n{r.stderr}")
    return r.stdout


def verify_cell(cell: Path, data: Path, out: Path, workers: int, target: str, first: int | None) -> dict:
    run = cell / "run"
    cfg = json.loads((run / "config.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    plain, capped = out / "network.h5", out / "network_refractory.h5"
    if not capped.exists():
        _run("export", run, "--out", plain)
        net = load_network(plain)
        for L in net.layers:
            if L.kind == "lif":
                L.refractory_ms = np.full(L.size, net.dt_ms)
        save_network(net.validate(), capped)
        plain.unlink()
    t0 = time.perf_counter()
    _run("verify", capped, "--data", data, "--dt", cfg["dt_ms"], "--probes", "reverse", "--target", target,
         "--fine-samples", 0,  # Brian2 at the training step on every sample too (cheap at 14 ms)
         "--workers", workers, "--out", out / "verify", "--json", *(["--first", first] if first else []))
    wall = time.perf_counter() - t0
    report = json.loads((out / "verify" / "report.json").read_text())
    runs = {r["name"]: r for r in report["runs"]}
    dt = f"dt{cfg['dt_ms']:g}"
    row = {"model": cfg["delays"], "seed": cfg["seed"], "samples": report["n_samples"],
           "verify_wall_s": round(wall, 1), "verify_runs_s": report["wall_s"]["runs"]}
    for probe in ("none", "reverse-window", "reverse-full"):
        ev, to, b2 = runs[f"event-{probe}"], runs[f"torch-{dt}-{probe}"], runs[f"brian2-{dt}-{probe}"]
        row[probe] = {"exact": ev["accuracy"], "clock_torch": to["accuracy"], "clock_brian2": b2["accuracy"],
                      "brian2_spike_mismatch": b2["spike_mismatch"],
                      "exact_agrees_with_clock": ev["agreement_with_torch"],
                      "hidden_spikes_clock": [L["n_a"] for L in ev["spike_timing"]["layers"]],
                      "hidden_spikes_exact": [L["n_b"] for L in ev["spike_timing"]["layers"]],
                      "matched_within_one_step": [round(L["matched_fraction"], 4)
                                                  for L in ev["spike_timing"]["layers"]]}
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", type=Path, required=True, help="a finished sweep directory (cells/*/run)")
    p.add_argument("--data", type=Path, required=True, help="the test split the models are verified on")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--target", default="cpp_standalone")
    p.add_argument("--first", type=int, help="the first N test samples only (a trial; default: all)")
    a = p.parse_args(argv)
    for path, what in ((a.sweep / "cells", "--sweep"), (a.data, "--data")):
        if not path.exists():
            sys.exit(f"{what}: {path} does not exist")
    cells = sorted(c for c in (a.sweep / "cells").iterdir() if (c / "run" / "checkpoint.pt").exists())
    rows = []
    for c in cells:
        print(f"{c.name} ...", file=sys.stderr, flush=True)
        rows.append(verify_cell(c, a.data, a.out / c.name, a.workers, a.target, a.first))
        rows.sort(key=lambda r: (r["model"], r["seed"]))
        write(a, rows)


def write(a, rows):
    summary = {"what": "the sweep's models exported with a refractory period of one training step, verified on "
                       "the whole test split (exact engine; torch and Brian2 at the training step)",
               "command": "python examples/paper/digits_refractory.py " + " ".join(sys.argv[1:]),
               "provenance": provenance(), "rows": rows}
    (a.out / "refractory.json").write_text(json.dumps(summary, indent=1))
    lines = ["| model | seed | test at the clock (torch = Brian2) | exact | reversed (window) clock / exact | "
             "reversed (full) clock / exact | hidden spikes clock → exact (per layer) | verify wall |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        n, w, f = r["none"], r["reverse-window"], r["reverse-full"]
        sp = ", ".join(f"{c:,} → {e:,}" for c, e in zip(n["hidden_spikes_clock"], n["hidden_spikes_exact"]))
        lines.append(f"| {r['model']} | {r['seed']} | {100 * n['clock_torch']:.1f}% | {100 * n['exact']:.1f}% | "
                     f"{100 * w['clock_torch']:.1f}% / {100 * w['exact']:.1f}% | "
                     f"{100 * f['clock_torch']:.1f}% / {100 * f['exact']:.1f}% | {sp} | {r['verify_wall_s']:.0f} s |")
    for model in sorted({r["model"] for r in rows}):
        xs = [r for r in rows if r["model"] == model]
        if len(xs) > 1:
            c = [100 * r["none"]["clock_torch"] for r in xs]
            e = [100 * r["none"]["exact"] for r in xs]
            lines.append(f"| {model} | mean ± sd (n={len(xs)}) | {statistics.mean(c):.1f} ± {statistics.stdev(c):.1f}% "
                         f"| {statistics.mean(e):.1f} ± {statistics.stdev(e):.1f}% | | | | |")
    (a.out / "refractory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
