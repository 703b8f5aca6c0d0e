"""Train and verify at the real size of SHD on a stand-in, with 1 and 2 processes/workers; JSON.

Stand-in (no download): 8156 training and 2264 test samples, 700 units, 1 s, ~8,000 spikes per sample (SHD's
density; channel rates rising along the channel axis), 20 classes, written as eventsnn events files.

* train: one epoch of 700 -> 256 LIF -> 256 recurrent LIF -> 20 readout (axonal delays up to 250 ms, 1 ms steps,
  batch 64, validation on 10% of the training file), with ``eventsnn train`` in one process (all cores) and with
  ``torchrun --nproc-per-node 2`` (one thread each): wall time, samples/s, peak memory of the largest process.
* verify: the trained network on the first ``--verify-samples`` test samples at the training dt and 0.01 ms with
  the reversal probe (torch and Brian2 ``cpp_standalone``, each on the samples and their reversal; ``--no-exact``:
  the exact engine did not finish one sample of this network in 5 minutes, see the README), with ``--workers 1``
  and ``--workers 2`` (a Dask LocalCluster): wall time, samples/s, peak memory.

Each step runs in its own process. ``--small`` shrinks everything for CI (0.1 s samples, the training dt only, numpy
target). ``--workdir DIR`` keeps the stand-in, the trained runs and each finished step's numbers
(``DIR/steps.json``) there, so a run cut short resumes where it stopped (default: a temporary directory).

    python benchmarks/scale.py [--small] [--verify-samples 128] [--workdir DIR] [--json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("EVENTSNN_PROGRESS", "0")


def write_standin(path: Path, n: int, seed: int, spikes: int, n_units: int = 700, duration_s: float = 1.0,
                  classes: int = 20) -> None:
    from eventsnn.data.events import Events, save_events

    rng = np.random.default_rng(seed)
    rate = np.linspace(0.2, 1.8, n_units)
    rate /= rate.sum()
    counts = np.maximum(100, rng.normal(spikes, spikes / 4, n).astype(int)) if spikes > 100 else np.full(n, spikes)
    times = [np.sort(rng.uniform(0, rng.uniform(0.6, 1.0) * duration_s, k)) for k in counts]
    units = [rng.choice(n_units, k, p=rate) for k in counts]
    save_events(Events.from_lists(times, units, rng.integers(0, classes, n), n_units, duration_s, classes,
                                  source="stand-in"), path)


_WRAP = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
         "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
         "sys.exit(r.returncode)")


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Run a command in a fresh wrapper process; wall seconds and the peak resident memory of its largest process
    (MiB; the wrapper's children are only this command's processes)."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _WRAP, *map(str, cmd)], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd[:4]))} failed:\n{p.stderr[-3000:]}")
    peak = [line.split()[1] for line in p.stderr.splitlines() if line.startswith("PEAK_KB")]
    return {"seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(int(peak[-1]) / 1024, 1),
            "stdout": p.stdout}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="CI-sized (300 + 40 samples, 100 units, 0.2 s)")
    ap.add_argument("--verify-samples", type=int, default=128)
    ap.add_argument("--workdir", help="keep files and finished steps here; rerunning resumes")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.small:
        n_train, n_test, spikes, n_units, dur, hidden, max_delay, vs = 300, 40, 150, 100, 0.1, "32,32", 50, 4
        vdt, target = "1", "numpy"
    else:
        n_train, n_test, spikes, n_units, dur, hidden, max_delay, vs = 8156, 2264, 8000, 700, 1.0, "256,256", 250, \
            a.verify_samples
        vdt, target = "0.01", "cpp_standalone"
    from eventsnn.util.provenance import provenance
    out = {"stand_in": {"train": n_train, "test": n_test, "spikes_per_sample": spikes, "units": n_units},
           "cores": os.cpu_count(), "provenance": provenance()}
    exe = [sys.executable, "-m", "eventsnn"]
    with contextlib.ExitStack() as stack:
        if a.workdir:
            d = Path(a.workdir)
            d.mkdir(parents=True, exist_ok=True)
        else:
            d = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eventsnn_scale_")))
        steps_file = d / "steps.json"
        steps = json.loads(steps_file.read_text()) if steps_file.exists() else {}

        def step(name, fn):
            """Run ``fn`` unless a finished result of step ``name`` is in the work directory."""
            if name not in steps:
                steps[name] = fn()
                steps_file.write_text(json.dumps(steps, indent=1))
            print(json.dumps({name: steps[name]}), file=sys.stderr, flush=True)
            return steps[name]

        for name, n, seed in (("train.h5", n_train, 1), ("test.h5", n_test, 2)):
            if not (d / name).exists():
                write_standin(d / ".part.h5", n, seed, spikes, n_units, dur)
                os.replace(d / ".part.h5", d / name)
        train_args = ["train", "--data", str(d / "train.h5"), "--hidden", hidden, "--recurrent", "--delays",
                      "axonal", "--max-delay-ms", str(max_delay), "--epochs", "1", "--batch-size", "64",
                      "--val-fraction", "0.1", "--json"]
        out["train"] = {}
        for procs in (1, 2):
            run = d / f"run{procs}"

            def train(procs=procs, run=run):
                shutil.rmtree(run, ignore_errors=True)  # a cut-short run starts again: its timing would mix
                if procs == 1:
                    cmd = exe + train_args + ["--out", str(run)]
                    env = {}
                else:
                    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "eventsnn"] + train_args + ["--out", str(run)]
                    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // 2))}
                r = timed(cmd, env)
                summary = json.loads((run / "summary.json").read_text())
                epoch_s = summary["seconds"]
                return {"wall_s": r["seconds"], "epoch_s": round(epoch_s, 1), "peak_rss_mb": r["peak_rss_mb"],
                        "samples_per_s": round(summary["n_train"] / epoch_s, 1), "val_acc": summary["val_acc"]}
            out["train"][f"{procs}_process"] = step(f"train_{procs}_process", train)
        t1, t2 = (out["train"][k]["samples_per_s"] for k in ("1_process", "2_process"))
        out["train"]["scaling_1_to_2"] = round(t2 / t1, 2)
        net = d / "net.h5"
        if not net.exists():
            timed(exe + ["export", str(d / "run1"), "--out", str(net)])
        out["verify"] = {"samples": vs, "dt_ms": sorted({1.0, float(vdt)}, reverse=True), "probes": "reverse",
                         "target": target}
        for workers in (1, 2):
            rep = d / f"verify{workers}-{vs}"

            def verify(workers=workers, rep=rep):
                shutil.rmtree(rep, ignore_errors=True)  # timed from scratch, not resumed
                r = timed(exe + ["verify", str(net), "--data", str(d / "test.h5"), "--dt", vdt, "--probes",
                                 "reverse", "--no-event", "--target", target, "--first", str(vs), "--workers", str(workers),
                                 "--out", str(rep), "--json"])
                report = json.loads((rep / "report.json").read_text())
                shutil.rmtree(rep / "runs", ignore_errors=True)  # GBs at 0.01 ms; the numbers are kept
                return {"wall_s": r["seconds"], "peak_rss_mb": r["peak_rss_mb"], "runs": len(report["runs"]),
                        "samples_per_s": round(vs / r["seconds"], 3), "report_chunks": report.get("report_chunks"),
                        "runs_wall_s": report["wall_s"]["runs"], "report_wall_s": report["wall_s"]["report"],
                        "run_seconds": {x["name"]: round(x.get("wall_s", float("nan")), 1) for x in report["runs"]}}
            out["verify"][f"{workers}_workers"] = step(f"verify_{workers}_workers_{vs}_samples", verify)
        v1, v2 = (out["verify"][f"{w}_workers"]["samples_per_s"] for w in (1, 2))
        out["verify"]["scaling_1_to_2"] = round(v2 / v1, 2)
    print(json.dumps(out, indent=None if a.json else 2))


if __name__ == "__main__":
    main()
