"""A tour of the Python API, notebook style: data -> train -> export -> simulate -> verify -> plots.

    python examples/api_tour.py [--out tour_out] [--quick]

Each cell is a few lines; run them one by one in a notebook if you like. Everything stays in memory except
what ``verify`` and the plots write to ``--out``.
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import eventsnn  # noqa: E402
from eventsnn.data.datasets import make_polychrony  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--out", type=Path, default=Path("tour_out"))
ap.add_argument("--quick", action="store_true", help="tiny sizes (what the test runs)")
a = ap.parse_args()
a.out.mkdir(parents=True, exist_ok=True)
n_train, n_test, epochs = (200, 40, 3) if a.quick else (600, 300, 400)  # 400: a cap; early stopping ends it

# %% 1. data: the polychrony task (class = order within pairs of units); train and test share the task seed
train_ev = make_polychrony(samples=n_train, seed=1)
test_ev = make_polychrony(samples=n_test, seed=2)
print(f"{len(train_ev)} training samples, {train_ev.n_units} units, {train_ev.n_classes} classes")

# %% 2. train with learnable axonal delays (validation split carved from the training samples) until validation
#       stops improving for 8 epochs (a progress bar shows on a terminal; progress=True/False to choose)
model = eventsnn.train(train_ev, {"delays": "axonal", "epochs": epochs, "patience": 8, "hidden": [32], "lr": 0.02,
                                  "lr_delay": 1.0}, test=test_ev)
print(f"best epoch {model.summary['best_epoch']} of {model.summary['epochs_run']}: validation "
      f"{model.summary['val_acc']:.3f}, test {model.summary['test_acc']:.3f}")

# %% 3. export: the network with real-valued delays in ms, as the network file holds it
net = eventsnn.export(model)
print(f"exported: {net.n_inputs} inputs -> {[L.size for L in net.layers]}; first delays (ms): "
      f"{net.layers[0].ff_delay_ms[:4].round(2).tolist()}")

# %% 4. simulate: the training clock, Brian2 at 0.1 ms, and the exact continuous-time network
coarse = eventsnn.simulate(net, test_ev, engine="torch")
fine = eventsnn.simulate(net, test_ev, engine="brian2", dt=0.1, delay_mode="exact", inputs="exact")
exact = eventsnn.simulate(net, test_ev, engine="event")
for name, run in (("torch, training dt", coarse), ("Brian2, 0.1 ms", fine), ("exact", exact)):
    print(f"{name:20s} accuracy {run.accuracy:.3f}")
c = eventsnn.compare(exact, fine, tolerance=0.1)
print(f"Brian2 at 0.1 ms: {c['layers'][0]['matched_fraction']:.1%} of exact hidden spikes within 0.1 ms")

# %% 5. verify: every engine and dt, with time reversal, against the exact run; report and figures on disk
report = eventsnn.verify(net, test_ev, out=a.out / "verify", dt=(1.0, 0.1), probes="reverse-window")
print((a.out / "verify" / "report.md").read_text().splitlines()[2])

# %% 6. plot: exact and clock-driven hidden spikes of one sample
fig, ax = plt.subplots(figsize=(7, 3.5))
for run, style, label in ((coarse, "|", "torch dt = 1 ms"), (exact, ".", "exact")):
    L = run.layers[0]
    sel = L.sample == 0
    ax.plot(L.time_ms[sel], L.unit[sel], style, ms=8, ls="none", label=label)
ax.set_xlabel("time (ms)")
ax.set_ylabel("hidden neuron")
ax.set_title(f"sample 0 (label {test_ev.labels[0]}): hidden spikes, clock-driven vs exact")
ax.legend()
fig.tight_layout()
fig.savefig(a.out / "tour_raster.png", dpi=110)
print(f"wrote {a.out / 'tour_raster.png'} and {a.out / 'verify'}")
