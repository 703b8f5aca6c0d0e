"""The SHD cochlea model: eventsnn's compiled chain vs lauscher 1.0.1 on one spoken digit, in one run; JSON.

The clip: "seven" said by espeak-ng (en+m1) placed in the middle of ``--seconds`` of 22050 Hz audio. Each
measurement runs in its own process (peak memory is that process's resident-set high-water mark, VmHWM; lauscher's
multiprocessing workers are reported beside it):

* ``eventsnn``: numba compilation, then the clip with the transfer matrix computed (cold: a fresh cache
  directory), then the same clip again (warm: the matrix in memory, the usual case inside a data set);
* ``eventsnn_disk``: a new process whose matrix is on disk (the first clip of a data-set worker);
* ``lauscher``: ``Wave2Spike`` as its command line runs it (a worker pool over all cores) with
  ``numpy.random.seed([0, 0])``; its spikes are compared with eventsnn's (same seed -> equal).

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
    if mode.startswith("eventsnn"):
        from eventsnn.data import cochlea as C

        t0 = time.perf_counter()
        C.clip_spikes(x[len(x) // 2 - 1000:len(x) // 2 + 1000], RATE, 2, np.random.RandomState(1), disk_cache=False)   # compile
        res = {"compile_s": time.perf_counter() - t0}
        t0 = time.perf_counter()
        t, u = C.clip_spikes(x, RATE, channels, np.random.RandomState([0, 0]))
        res["first_clip_s" if mode == "eventsnn_disk" else "cold_s"] = time.perf_counter() - t0
        if mode == "eventsnn":
            t0 = time.perf_counter()
            C.clip_spikes(x, RATE, channels, np.random.RandomState([0, 1]))
            res["warm_s"] = time.perf_counter() - t0
        res["spikes"] = len(t)
    else:
        import resource

        from lauscher.audiowaves import MonoAudioWave
        from lauscher.transformations.wave2spike import Wave2Spike

        np.random.seed([0, 0])
        t0 = time.perf_counter()
        sp = MonoAudioWave(x.copy(), RATE).transform(Wave2Spike(num_channels=channels))
        res = {"seconds": time.perf_counter() - t0, "workers": os.cpu_count(),
               "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
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
        if scale != 1:
            res["lauscher"]["scaled_s"] = res["lauscher"]["seconds"] * scale
            res["spikes_equal"] = None
        else:
            e, la = np.load(f"{tmp}/e.npz"), np.load(f"{tmp}/l.npz")
            res["spikes_equal"] = bool(np.array_equal(e["t"], la["t"]) and np.array_equal(e["u"], la["u"]))
        base = res["lauscher"].get("scaled_s", res["lauscher"]["seconds"])
        res["speedup_warm"] = base / res["eventsnn"]["warm_s"]
        res["speedup_matrix_on_disk"] = base / res["eventsnn_disk"]["first_clip_s"]
        res["speedup_cold"] = base / res["eventsnn"]["cold_s"]
        res["load_average_at_end"] = os.getloadavg()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
