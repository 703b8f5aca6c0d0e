"""The SHD pipeline at full size on a stand-in (no download): time and peak memory of each step; JSON.

Stand-in: official-layout files of 8156 (train) and 2264 (test) samples, 700 channels, SHD density (~8,000 spikes
per sample over ~1 s, channel rates rising along the channel axis, float16 times) and 20 classes. Measured, each in
its own process (peak RSS is that process's): ``eventsnn data prepare shd`` for whole / part / norm, and one
training epoch of the paper's network (2 x 128 LIF, 14.14 ms steps over 200 bins, axonal delays up to 905 ms) on
each variant, with the samples per second. ``--small`` shrinks everything for CI.

    python benchmarks/speech_standin.py [--small] [--epochs 1] [--threads N] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("EVENTSNN_PROGRESS", "0")


def write_standin(path: Path, n: int, seed: int, spikes: int = 8000, classes: int = 20) -> None:
    import h5py

    rng = np.random.default_rng(seed)
    rate = np.linspace(0.2, 1.8, 700)
    rate /= rate.sum()
    with h5py.File(path, "w") as h:
        t = h.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
        u = h.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            k = int(rng.normal(spikes, spikes / 4)) if spikes > 100 else spikes
            k = max(k, 100)
            length = rng.uniform(0.6, 1.3)
            units = rng.choice(700, k, p=rate)
            times = np.sort(rng.uniform(0, length, k))
            t[i] = times.astype(np.float16)
            u[i] = units.astype(np.uint16)
        h.create_dataset("labels", data=rng.integers(0, classes, n).astype(np.uint16))
        h.create_dataset("extra/keys", data=np.array([f"word{c}" for c in range(classes)], dtype=h5py.string_dtype()))
        h.create_dataset("extra/speaker", data=np.zeros(n, np.int64))


def timed(cmd: list[str]) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", "import resource, sys; code = sys.argv[1]; "
                        "sys.argv = ['eventsnn'] + sys.argv[2:]; exec(code); "
                        "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
                        *cmd], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed: {p.stderr.strip().splitlines()[-1:]}")
    rss = [line for line in p.stdout.splitlines() if line.startswith("MAXRSS")]
    return {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(int(rss[-1].split()[1]) / 1024, 1),
            "stdout": [line for line in p.stdout.splitlines() if not line.startswith("MAXRSS")]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="CI-sized stand-in (600 + 300 samples, 5000 spikes each)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--variants", default="whole,part,norm")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    n_train, n_test, spikes = (600, 300, 5000) if a.small else (8156, 2264, 8000)
    out = {"stand_in": {"train": n_train, "test": n_test, "spikes_per_sample": spikes, "channels": 700},
           "threads": a.threads}
    from eventsnn.util.provenance import provenance
    out["provenance"] = provenance()
    with tempfile.TemporaryDirectory(prefix="eventsnn_standin_") as d:
        d = Path(d)
        t0 = time.perf_counter()
        write_standin(d / "shd_train.h5", n_train, 1, spikes)
        write_standin(d / "shd_test.h5", n_test, 2, spikes)
        out["write_standin_s"] = round(time.perf_counter() - t0, 1)
        for v in a.variants.split(","):
            prep = timed(["from eventsnn.cli import main; rc = main(); rc and sys.exit(rc)", "data", "prepare", "shd", "--train",
                          str(d / "shd_train.h5"), "--test", str(d / "shd_test.h5"), "--variant", v, "--out",
                          str(d / v), "--json"])
            summary = json.loads("\n".join(prep.pop("stdout")))
            code = (f"import torch; torch.set_num_threads({a.threads}); from eventsnn import api; "
                    f"m = api.train('{d / v}/train.h5', dict(dt_ms=1400/99, hidden=[128, 128], delays='axonal', "
                    f"max_delay_ms=905.0, epochs={a.epochs}, batch_size=128), val='{d / v}/val.h5'); "
                    "print(m.summary['n_train'], m.summary['seconds'])")
            tr = timed([code])
            n, secs = tr.pop("stdout")[-1].split()
            out[v] = {"prepare": {**prep, "samples": summary["samples"], "units": summary["units"],
                                  "train_val_test": [summary["train"], summary["val"], summary["test"]]},
                      "train_epoch": {"process_seconds": tr["seconds"], "peak_rss_mb": tr["peak_rss_mb"],
                                      "epoch_seconds": round(float(secs) / a.epochs, 2),
                                      "samples_per_s": round(int(n) * a.epochs / float(secs), 1)}}
            print(json.dumps({v: out[v]}), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=None if a.json else 2))


if __name__ == "__main__":
    main()
