"""Fixed cost per command: wall time of small CLI calls whose work is negligible.

    python benchmarks/startup.py [--repeat 5] [--json]

Measures, each in a fresh process (median of ``--repeat`` runs; numba/Brian2 caches warm after the first run):
``eventsnn --version``, ``eventsnn data info`` on a 20-sample file, and ``eventsnn simulate --engine event`` of a
20-input -> 8 LIF -> 3 readout network on 5 samples. The baseline is ``python -c pass`` in the same run, so the
numbers are comparable across machines; ``cpu_median_s`` (user + system time of the child) is what a busy machine
distorts least. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def _make_inputs(d: str) -> tuple[str, str]:
    from eventsnn.bridge.network import Layer, Network, save_network
    from eventsnn.data.datasets import make_polychrony
    from eventsnn.data.events import save_events
    ev = make_polychrony(samples=20, seed=0)
    save_events(ev, os.path.join(d, "data.h5"))
    rng = np.random.default_rng(0)
    n_in, n_hid, n_out = ev.n_units, 8, ev.n_classes
    hid = Layer("lif", n_hid, np.full(n_hid, 20.0), np.full(n_hid, 5.0), rng.normal(0.5, 0.3, (n_in, n_hid)),
                threshold=np.ones(n_hid), ff_delay_ms=rng.uniform(0, 5, n_in))
    out = Layer("li", n_out, np.full(n_out, 20.0), np.full(n_out, 5.0), rng.normal(0, 0.5, (n_hid, n_out)))
    save_network(Network(n_inputs=n_in, layers=[hid, out], dt_ms=1.0), os.path.join(d, "net.h5"))
    return os.path.join(d, "data.h5"), os.path.join(d, "net.h5")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _time(cmd: list[str], repeat: int) -> dict:
    walls, cpus = [], []
    for _ in range(repeat + 1):                    # the first run warms the caches and is not counted
        t0, c0 = time.perf_counter(), _cpu()
        r = subprocess.run(cmd, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    return {"median_s": round(statistics.median(walls[1:]), 3), "min_s": round(min(walls[1:]), 3),
            "first_s": round(walls[0], 3), "cpu_median_s": round(statistics.median(cpus[1:]), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", action="store_true", help="(default) print one JSON object")
    a = p.parse_args()
    exe = [sys.executable, "-m", "eventsnn"]
    with tempfile.TemporaryDirectory() as d:
        data, net = _make_inputs(d)
        res = {
            "python -c pass (baseline)": _time([sys.executable, "-c", "pass"], a.repeat),
            "eventsnn --version": _time(exe + ["--version"], a.repeat),
            "eventsnn data info": _time(exe + ["data", "info", data], a.repeat),
            "eventsnn simulate --engine event (5 samples)": _time(
                exe + ["simulate", net, "--data", data, "--engine", "event", "--first", "5",
                       "--out", os.path.join(d, "run.h5")], a.repeat),
        }
    load = os.getloadavg()
    print(json.dumps({"benchmark": "startup", "repeat": a.repeat, "loadavg_1m": round(load[0], 2),
                      "cpus": os.cpu_count(), "results": res}, indent=1))


if __name__ == "__main__":
    main()
