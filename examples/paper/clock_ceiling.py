"""A sweep's trained models verified with the clock's rate ceiling carried into continuous time.

A clocked network fires at most once per step, and a network trained without a refractory period may rely on that
ceiling: in continuous time it fires more (the spoken-digit LIF models 4-12x; the SRM networks of the ISI task,
whose neurons have no reset, in bursts at one instant) and can lose its solution. ``eventsnn train
--refractory-ms DT`` (DT the training step) trains *the same network* (at the training step a period of one step
changes nothing: same spikes, same gradients, tested) and exports it with the period: for LIF layers a refractory
period, for SRM layers a dead time. This script does that for the models a sweep has already trained: it exports
each cell's model, gives its spiking layers ``refractory_ms = dt``, and runs ``eventsnn verify`` on the whole test
split (the original and the time-reversal probes; exact engine and, at the training step, torch and Brian2). It
writes ``OUT/refractory.json`` and ``OUT/refractory.md``, and resumes: a cell verified by an earlier run with the
same data, probes and ``--first`` is not verified again.

    python examples/paper/clock_ceiling.py --sweep results/paper/digits_whole \\
        --data data/digits_whole/test.h5 --out results/paper/digits_whole/refractory --workers 2
    python examples/paper/clock_ceiling.py --sweep results/paper/isi_600_srm_psp --probes reverse-window \\
        --out results/paper/isi_600_srm_psp/clock_ceiling --workers 1

Without ``--data`` each cell is verified on the test file its sweep verified it on (``verify/inputs/events.h5``).
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
from eventsnn.sweep import cell_dir
from eventsnn.util.provenance import provenance


def _run(*args):
    r = subprocess.run([sys.executable, "-m", "eventsnn", *map(str, args)], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"eventsnn {' '.join(map(str, args))} failed:\n{r.stderr}")
    return r.stdout


def verify_cell(cell: Path, data: Path, out: Path, workers: int, target: str, first: int | None,
                probes: str) -> dict:
    run = cell / "run"
    cfg = json.loads((run / "config.json").read_text())
    done = out / "row.json"  # a cell verified by an earlier run of this command (it resumes)
    if done.exists():
        row = json.loads(done.read_text())
        if row["samples_asked"] == first and row["probes_asked"] == probes and row["data"] == str(data):
            return row["row"]
    out.mkdir(parents=True, exist_ok=True)
    plain, capped = out / "network.h5", out / "network_refractory.h5"
    if not capped.exists():
        _run("export", run, "--out", plain)
        net = load_network(plain)
        for L in net.layers:
            if L.kind in ("lif", "srm"):
                L.refractory_ms = np.full(L.size, net.dt_ms)
        save_network(net.validate(), capped)
        plain.unlink()
    t0 = time.perf_counter()
    _run("verify", capped, "--data", data, "--dt", cfg["dt_ms"], "--probes", probes, "--target", target,
         "--fine-samples", 0,  # Brian2 at the training step on every sample too (cheap at 14 ms)
         "--workers", workers, "--out", out / "verify", "--json", *(["--first", first] if first else []))
    wall = time.perf_counter() - t0
    report = json.loads((out / "verify" / "report.json").read_text())
    runs = {r["name"]: r for r in report["runs"]}
    dt = f"dt{cfg['dt_ms']:g}"
    row = {"model": cfg["delays"], "neuron": cfg.get("neuron", "lif"), "seed": cfg["seed"],
           "samples": report["n_samples"],
           "verify_wall_s": round(wall, 1), "verify_runs_s": report["wall_s"]["runs"]}
    for probe in ["none"] + [p for p in ("reverse-window", "reverse-full") if f"event-{p}" in runs]:
        ev, to, b2 = runs[f"event-{probe}"], runs[f"torch-{dt}-{probe}"], runs[f"brian2-{dt}-{probe}"]
        row[probe] = {"exact": ev["accuracy"], "clock_torch": to["accuracy"], "clock_brian2": b2["accuracy"],
                      "brian2_spike_mismatch": b2["spike_mismatch"],
                      "exact_agrees_with_clock": ev["agreement_with_torch"],
                      "hidden_spikes_clock": [L["n_a"] for L in ev["spike_timing"]["layers"]],
                      "hidden_spikes_exact": [L["n_b"] for L in ev["spike_timing"]["layers"]],
                      "matched_within_one_step": [round(L["matched_fraction"], 4)
                                                  for L in ev["spike_timing"]["layers"]]}
    done.write_text(json.dumps({"samples_asked": first, "probes_asked": probes, "data": str(data), "row": row}))
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", type=Path, required=True, help="a finished sweep directory (cells/*/run)")
    p.add_argument("--data", type=Path, help="the test split the models are verified on (default: each cell's "
                                             "verify/inputs/events.h5, the file its sweep verified it on)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--target", default="cpp_standalone")
    p.add_argument("--first", type=int, help="the first N test samples only (a trial; default: all)")
    p.add_argument("--probes", default="reverse", choices=["reverse", "reverse-window", "reverse-full", "none"],
                   help="the time-reversal probes (default: both)")
    a = p.parse_args(argv)
    for path, what in ((a.sweep / "cells", "--sweep"), (a.sweep / "results.jsonl", "--sweep"), (a.data, "--data")):
        if path is not None and not path.exists():
            sys.exit(f"{what}: {path} does not exist")
    records = [json.loads(x) for x in (a.sweep / "results.jsonl").read_text().splitlines() if x.strip()]
    done = [(r["cell"], cell_dir(a.sweep, r["cell"])) for r in records]
    cells = [(cell, c) for cell, c in done if (c / "run" / "checkpoint.pt").exists()]
    if not cells:
        sys.exit(f"--sweep: {a.sweep} has no finished cell with its checkpoint")
    for _, c in cells:
        if a.data is None and not (c / "verify" / "inputs" / "events.h5").exists():
            sys.exit(f"--data: not given, and {c / 'verify' / 'inputs' / 'events.h5'} does not exist")
    rows = []
    for cell, c in cells:
        print(f"{c.name} ...", file=sys.stderr, flush=True)
        data = a.data or c / "verify" / "inputs" / "events.h5"
        row = verify_cell(c, data, a.out / c.name, a.workers, a.target, a.first, a.probes)
        rows.append({"cell": c.name, "transforms": cell.get("transforms", {}), **row})
        rows.sort(key=lambda r: (json.dumps(r["transforms"], sort_keys=True), r["model"], r["seed"]))
        write(a, rows)


def write(a, rows):
    summary = {"what": "the sweep's models exported with a refractory period (LIF) or dead time (SRM) of one "
                       "training step, verified on the whole test split (exact engine; torch and Brian2 at the "
                       "training step)",
               "command": "python examples/paper/clock_ceiling.py " + " ".join(sys.argv[1:]),
               "provenance": provenance(), "rows": rows}
    (a.out / "refractory.json").write_text(json.dumps(summary, indent=1))
    probes = [p for p in ("reverse-window", "reverse-full") if all(p in r for r in rows)]
    head = ["| transforms | model | seed | test at the clock (torch = Brian2) | exact | exact agrees with the clock"]
    head += [f" | reversed ({p.split('-')[1]}) clock / exact" for p in probes]
    head += [" | hidden spikes clock → exact (per layer) | verify wall |"]
    lines = ["".join(head), "|---" * (8 + len(probes)) + "|"]

    def where(r):
        return ", ".join(f"{k} {v}" for k, v in r["transforms"].items()) or "--"
    for r in rows:
        n = r["none"]
        sp = ", ".join(f"{c:,} → {e:,}" for c, e in zip(n["hidden_spikes_clock"], n["hidden_spikes_exact"]))
        rev = "".join(f" | {100 * r[p]['clock_torch']:.1f}% / {100 * r[p]['exact']:.1f}%" for p in probes)
        lines.append(f"| {where(r)} | {r['model']} | {r['seed']} | {100 * n['clock_torch']:.1f}% | "
                     f"{100 * n['exact']:.1f}% | {100 * n['exact_agrees_with_clock']:.0f}%{rev} | {sp} | "
                     f"{r['verify_wall_s']:.0f} s |")
    for key in sorted({(where(r), r["model"]) for r in rows}):
        xs = [r for r in rows if (where(r), r["model"]) == key]
        if len(xs) > 1:
            c = [100 * r["none"]["clock_torch"] for r in xs]
            e = [100 * r["none"]["exact"] for r in xs]
            lines.append(f"| {key[0]} | {key[1]} | mean ± sd (n={len(xs)}) | "
                         f"{statistics.mean(c):.1f} ± {statistics.stdev(c):.1f}% | "
                         f"{statistics.mean(e):.1f} ± {statistics.stdev(e):.1f}% |" + " |" * (3 + len(probes)))
    (a.out / "refractory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
