"""The SHD cochlea model: eventsnn's compiled chain vs lauscher 1.0.1 on one spoken digit, in one run; JSON.

The clip: "seven" said by espeak-ng (en+m1) placed in the middle of ``--seconds`` of 22050 Hz audio. Each
measurement runs in its own process (peak memory is that process's resident-set high-water mark, VmHWM; lauscher's
multiprocessing workers are reported beside it):

* ``eventsnn``: numba compilation, then the clip with the transfer matrix computed and written to a fresh cache
  directory (cold), then the same clip again (warm: the matrix read from the disk cache block by block, the
  usual case inside a data set);
* ``eventsnn_disk``: a new process whose matrix is on disk (the first clip of a data-set worker);
* ``lauscher``: ``Wave2Spike`` as its command line runs it (a worker pool over all cores) with
  ``numpy.random.seed([0, 0])``; its spikes are compared with eventsnn's (same seed -> equal).

Wall time on a shared machine depends on the load; the CPU time (user + system, of lauscher's workers too) is
reported beside it, and the speed-ups are given for both.

``--lauscher-channels C`` / ``--lauscher-seconds S`` run lauscher smaller and scale its time linearly in channels
and length (reported as ``lauscher.scaled_s``; the spikes are then not compared).

    python benchmarks/cochlea.py [--channels 700] [--seconds 1.0] [--lauscher-channels C] [--lauscher-seconds S]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("EVENTSNN_PROGRESS", "0")
RATE = 22050


def clip(seconds: float) -> np.ndarray:
    from eventsnn.data.speech import Espeak, trim

    x = trim(Espeak.get().say("seven", "en", "m1", 50, 50, 175)).astype(np.float64) / 32768.0
    n = int(round(seconds * RATE))
    out = np.zeros(n)
    x = x[:n]
    s = (n - len(x)) // 2
    out[s:s + len(x)] = x
    return out


def vmhwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, channels: int, seconds: float, out: str) -> dict:
    x = clip(seconds)
    res = {}
    if mode.startswith("eventsnn"):
        from eventsnn.data import cochlea as C

        def timed(fn, *args):
            w, c = time.perf_counter(), time.process_time()
            r = fn(*args)
            return r, time.perf_counter() - w, time.process_time() - c

        mid = x[len(x) // 2 - 1000:len(x) // 2 + 1000]
        _, res["compile_s"], _ = timed(C.clip_spikes, mid, RATE, 2, np.random.RandomState(1), False)
        (t, u), wall, cpu = timed(C.clip_spikes, x, RATE, channels, np.random.RandomState([0, 0]))
        key = "first_clip" if mode == "eventsnn_disk" else "cold"
        res[f"{key}_s"], res[f"{key}_cpu_s"] = wall, cpu
        if mode == "eventsnn":
            _, res["warm_s"], res["warm_cpu_s"] = timed(C.clip_spikes, x, RATE, channels,
                                                        np.random.RandomState([0, 1]))
        res["spikes"] = len(t)
    else:
        import resource

        from lauscher.audiowaves import MonoAudioWave
        from lauscher.transformations.wave2spike import Wave2Spike

        def cpu():
            return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                       for f in ("ru_utime", "ru_stime"))

        np.random.seed([0, 0])
        t0, c0 = time.perf_counter(), cpu()
        sp = MonoAudioWave(x.copy(), RATE).transform(Wave2Spike(num_channels=channels))
        res.update({"seconds": time.perf_counter() - t0, "cpu_s": cpu() - c0, "workers": os.cpu_count(),
                    "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024})
        t, u = sp.spike_times, sp.spike_labels
        res["spikes"] = len(t)
    np.savez(out, t=t, u=u)
    res["peak_rss_mb"] = vmhwm_mb()
    return res


def run_child(mode, channels, seconds, out, env) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", mode, "--channels", str(channels), "--seconds",
                        str(seconds), "--out", out], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def versions() -> dict:
    from importlib import metadata
    v = {"python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    for pkg in ("eventsnn", "lauscher", "numpy", "scipy", "numba", "espeakng-loader"):
        try:
            v[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            v[pkg] = None
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=700)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--lauscher-channels", type=int, help="run lauscher at fewer channels and scale (default: same)")
    ap.add_argument("--lauscher-seconds", type=float, help="run lauscher on a shorter clip and scale (default: same)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.channels, a.seconds, a.out)))
        return
    lc = a.lauscher_channels or a.channels
    ls = a.lauscher_seconds or a.seconds
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, EVENTSNN_CACHE_DIR=str(Path(tmp) / "cache"), EVENTSNN_PROGRESS="0")
        res = {"benchmark": "cochlea", "clip": f"'seven' (espeak-ng en+m1) in {a.seconds:g} s at {RATE} Hz",
               "channels": a.channels, "versions": versions(), "load_average_at_start": os.getloadavg()}
        res["eventsnn"] = run_child("eventsnn", a.channels, a.seconds, f"{tmp}/e.npz", env)
        res["eventsnn_disk"] = run_child("eventsnn_disk", a.channels, a.seconds, f"{tmp}/d.npz", env)
        res["lauscher"] = run_child("lauscher", lc, ls, f"{tmp}/l.npz", env)
        res["lauscher"].update(channels=lc, clip_s=ls)
        scale = (a.channels / lc) * (a.seconds / ls)
        lau = res["lauscher"]
        if scale != 1:
            lau["scaled_s"], lau["scaled_cpu_s"] = lau["seconds"] * scale, lau["cpu_s"] * scale
            res["spikes_equal"] = None
        else:
            e, la = np.load(f"{tmp}/e.npz"), np.load(f"{tmp}/l.npz")
            res["spikes_equal"] = bool(np.array_equal(e["t"], la["t"]) and np.array_equal(e["u"], la["u"]))
        wall, cpu = lau.get("scaled_s", lau["seconds"]), lau.get("scaled_cpu_s", lau["cpu_s"])
        ev = res["eventsnn"]
        res["speedup"] = {"warm_wall": wall / ev["warm_s"], "warm_cpu": cpu / ev["warm_cpu_s"],
                          "cold_wall": wall / ev["cold_s"], "cold_cpu": cpu / ev["cold_cpu_s"]}
        res["load_average_at_end"] = os.getloadavg()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
