"""The Python API: in-memory objects in and out, the tour example end to end."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import eventsnn
from eventsnn.datasets import make_polychrony
from eventsnn.events import save_events

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
    assert eventsnn.simulate(net, f, engine="torch", samples=5).n_samples == 5
    with pytest.raises(eventsnn.EventsnnError, match="expected an Events object"):
        eventsnn.simulate(net, [1, 2, 3])
    with pytest.raises(eventsnn.EventsnnError, match="--epochs"):
        eventsnn.train(tr, epochs=0)
    with pytest.raises(eventsnn.EventsnnError, match="no time step"):
        eventsnn.simulate(net, te, engine="event", dt=0.1)


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
