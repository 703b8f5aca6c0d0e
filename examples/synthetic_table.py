"""The synthetic half of the paper's results: test accuracy per task and delay type, 3 seeds.

For each task (isi, polychrony, coincidence at overlap 0 and 0.5) it generates a
training file (seed 1) and an independent test file (seed 2), trains with
delays none / axonal / synaptic for seeds 0, 1, 2 with the default settings
(model selection on a validation split of the training file) -- and once more
for isi with time constants on the scale of its intervals -- and reports the
test accuracy mean and spread, plus the count-only (logistic regression on
spike counts) baseline on the same test file.

    python examples/synthetic_table.py --out results/synthetic   # prints a Markdown table, writes table.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("EVENTSNN_PROGRESS", "0")

from eventsnn.data.datasets import count_baseline, make_coincidence, make_isi, make_polychrony  # noqa: E402
from eventsnn.data.events import save_events  # noqa: E402
from eventsnn.training.loop import train  # noqa: E402
from eventsnn.training.config import TrainConfig

DATA = {
    "isi": lambda seed, n: make_isi(samples=n, seed=seed),
    "polychrony": lambda seed, n: make_polychrony(samples=n, seed=seed),
    "coincidence_overlap_0": lambda seed, n: make_coincidence(samples=n, seed=seed, overlap=0.0),
    "coincidence_overlap_0.5": lambda seed, n: make_coincidence(samples=n, seed=seed, overlap=0.5),
}
# table row -> (data set, training settings that differ from the defaults of `eventsnn train`)
TASKS = {
    "isi": ("isi", {}),
    # the ISI task's intervals are 3-15 ms: membrane and synaptic time constants on that scale, and longer training
    "isi (tau 5/2 ms, 128 hidden, 150 epochs)": ("isi", {"tau_mem_ms": 5.0, "tau_syn_ms": 2.0, "hidden": [128],
                                                         "epochs": 150, "patience": 40}),
    "polychrony": ("polychrony", {}),
    "coincidence (overlap 0)": ("coincidence_overlap_0", {}),
    "coincidence (overlap 0.5)": ("coincidence_overlap_0.5", {}),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("results/synthetic"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train-samples", type=int, default=1000)
    ap.add_argument("--test-samples", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=None, help="override the default epochs (for a quick look)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    table_f = a.out / "table.json"
    results = json.loads(table_f.read_text()) if table_f.exists() else {}
    for task, (data, settings) in TASKS.items():
        slug = data if not settings else f"{data}_tuned"
        make = DATA[data]
        tr, te = a.out / f"{data}_train.h5", a.out / f"{data}_test.h5"
        test_ev = make(2, a.test_samples)
        if not tr.exists():
            save_events(make(1, a.train_samples), tr)
            save_events(test_ev, te)
        row = results.setdefault(task, {"count_only": count_baseline(test_ev, test_fraction=0.5)})
        for delays in ("none", "axonal", "synaptic"):
            accs = row.setdefault(delays, {})
            for seed in range(a.seeds):
                if str(seed) in accs:
                    continue
                kw = dict(settings, **({"epochs": a.epochs} if a.epochs else {}))
                s = train(TrainConfig(data=str(tr), test_data=str(te), delays=delays, seed=seed, **kw),
                          a.out / "runs" / f"{slug}_{delays}_s{seed}", progress=False)
                accs[str(seed)] = {"test_acc": s["test_acc"], "val_acc": s["val_acc"], "seconds": s["seconds"]}
                table_f.write_text(json.dumps(results, indent=2))
                print(f"{task:28s} {delays:9s} seed {seed}: test {s['test_acc']:.3f} (val {s['val_acc']:.3f}, "
                      f"{s['seconds']:.0f} s)", flush=True)
    print(markdown({t: results[t] for t in TASKS if t in results}))


def markdown(results: dict) -> str:
    lines = ["| task | count-only | no delays | axonal delays | synaptic delays |", "|---|---|---|---|---|"]
    for task, row in results.items():
        cells = [f"{row['count_only']:.3f}"]
        for delays in ("none", "axonal", "synaptic"):
            acc = np.array([v["test_acc"] for v in row.get(delays, {}).values()])
            cells.append(f"{acc.mean():.3f} ± {acc.std():.3f} (n={len(acc)})" if len(acc) else "")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
