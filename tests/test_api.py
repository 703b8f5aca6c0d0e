"""The Python API: in-memory objects in and out, the tour example end to end."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import eventsnn
from eventsnn.data.datasets import make_polychrony
from eventsnn.data.events import save_events

ROOT = Path(__file__).resolve().parents[1]


def test_api_train_export_simulate_compare_verify(tmp_path):
    tr, te = make_polychrony(samples=150, seed=1), make_polychrony(samples=20, seed=2)
    m = eventsnn.train(tr, {"epochs": 2, "hidden": [8]}, test=te, seed=1)
    assert isinstance(m, eventsnn.TrainedModel) and m.rundir is None and len(m.history) == 2
    assert m.config.hidden == [8] and 0 <= m.summary["test_acc"] <= 1
    net = eventsnn.export(m)
    assert isinstance(net, eventsnn.Network) and net.layers[0].ff_delay_ms is not None
    assert next(m.model.parameters()).dtype.is_floating_point  # the model was not converted in place
    a = eventsnn.simulate(net, te, engine="torch")
    b = eventsnn.simulate(net, te, engine="event")
    assert a.n_samples == b.n_samples == 20 and b.engine == "event"
    c = eventsnn.compare(a, b)
    assert 0 <= c["prediction_agreement"] <= 1
    rep = eventsnn.verify(net, te, out=tmp_path / "v", dt=(1.0,), probes="")
    assert {r["engine"] for r in rep["runs"]} == {"torch", "brian2", "event"}
    assert (tmp_path / "v" / "report.md").exists()
    # paths work where objects do; errors are EventsnnError
    f = tmp_path / "te.h5"
    save_events(te, f)
    assert eventsnn.simulate(net, f, engine="torch", first=5).n_samples == 5
    with pytest.raises(eventsnn.EventsnnError, match="expected an Events object"):
        eventsnn.simulate(net, [1, 2, 3])
    with pytest.raises(eventsnn.EventsnnError, match="--epochs"):
        eventsnn.train(tr, epochs=0)
    with pytest.raises(eventsnn.EventsnnError, match="no time step"):
        eventsnn.simulate(net, te, engine="event", dt=0.1)
    with pytest.raises(eventsnn.EventsnnError, match="must divide the training dt"):
        eventsnn.simulate(net, te, engine="torch", dt=0.3)
    four = make_polychrony(samples=8, seed=3)
    four.labels[:] = 4  # a fifth class the 4-output network never saw
    with pytest.raises(eventsnn.EventsnnError, match="labels go up to 4 but the network has 4 outputs"):
        eventsnn.simulate(net, four, engine="torch")


def test_import_is_light_and_help_lists_the_api():
    code = "import sys, eventsnn; print('torch' in sys.modules, 'brian2' in sys.modules); help(eventsnn)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("False False")
    assert "eventsnn.train(events, config" in p.stdout and "eventsnn.verify" in p.stdout


@pytest.mark.slow
def test_api_tour_example_runs(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "examples" / "api_tour.py"), "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "tour_raster.png").exists() and (tmp_path / "verify" / "report.json").exists()
    assert "exact" in p.stdout


class _SampleDataset:
    """A torch-style map dataset over an Events object: one-sample Events items, or tonic arrays passed through a
    transform (like tonic's datasets); counts reads."""

    def __init__(self, events, tonic=False, transform=None):
        self.events, self.tonic, self.transform, self.reads = events, tonic, transform, 0

    def __len__(self):
        return len(self.events)

    def __getitem__(self, i):
        self.reads += 1
        item = self.events.to_tonic(i) if self.tonic else self.events.subset([i])
        if self.transform is not None:
            item = self.transform(item)
        return item, int(self.events.labels[i])


def test_training_from_a_dataset_equals_training_from_events_and_streams():
    """A torch Dataset of samples trains the same model as the Events it holds (read batch by batch)."""
    import torch

    from eventsnn.data.datasets import DatasetSource
    tr, va = make_polychrony(samples=96, seed=1), make_polychrony(samples=32, seed=3)
    cfg = {"epochs": 2, "hidden": [8], "batch_size": 16}
    a = eventsnn.train(tr, cfg, val=va, seed=2)
    ds, dv = _SampleDataset(tr), _SampleDataset(va)
    src = DatasetSource(ds, tr.n_units, tr.n_classes, tr.duration_s)
    b = eventsnn.train(src, cfg, val=DatasetSource(dv, va.n_units, va.n_classes, va.duration_s), seed=2)
    assert ds.reads == 2 * len(tr) and dv.reads == 2 * len(va)  # every epoch reads every sample once, no more
    for (n, p), (_, q) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)
    assert a.history == [{**h, "seconds": a.history[i]["seconds"]} for i, h in enumerate(b.history)]


def test_dataset_transforms_run_again_every_epoch_and_bad_items_are_named():
    """tonic-style items with a random per-read transform: each epoch sees fresh jitter; bad items fail clearly."""
    from eventsnn.data.datasets import DatasetSource
    tr = make_polychrony(samples=64, seed=1)
    rng = np.random.default_rng(0)
    seen = []

    def jitter(a):  # tonic-style transform on a structured array (t in microseconds)
        out = a.copy()
        out["t"] = np.clip(out["t"] + rng.normal(0, 300, len(out)).round().astype(np.int64), 0, None)
        seen.append(out["t"].sum())
        return out

    ds = _SampleDataset(tr, tonic=True, transform=jitter)
    m = eventsnn.train(DatasetSource(ds, tr.n_units, tr.n_classes, tr.duration_s), epochs=2, hidden=[8],
                       val_fraction=0.25, seed=1)
    assert len(m.history) == 2 and ds.reads == 2 * len(tr)
    assert len(set(seen)) > len(tr)  # the same sample differs between epochs
    with pytest.raises(eventsnn.EventsnnError, match=r"dataset\[\d+\]: expected a tonic event array"):
        eventsnn.train(DatasetSource([(1.0, 0)] * 8, 4, 2, 0.1), epochs=1)
    with pytest.raises(eventsnn.EventsnnError, match="n_units must be a positive integer"):
        DatasetSource(ds, 0, 2, 0.1)
