"""Brian2 users get the model, not only the result: ``to_brian2`` and ``export --format brian2``."""
import subprocess
import sys

import numpy as np

from eventsnn.bridge import load_network
from eventsnn.bridge.engines.brian2 import simulate_brian2, to_brian2
from eventsnn.data.datasets import make_polychrony
from eventsnn.data.events import save_events
from tests.conftest import random_events, random_network, run_cli


def _sorted_spikes(t_ms, units, duration_ms):
    keep = t_ms < duration_ms - 1e-9  # the extra last step (for the final readout sample) is outside the sample
    t_ms, units = np.asarray(t_ms)[keep], np.asarray(units)[keep]
    o = np.lexsort((units, t_ms))
    return t_ms[o], units[o]


def test_to_brian2_is_a_plain_network_with_the_same_spikes():
    import brian2 as b2
    net, ev = random_network(0), random_events(0, n_samples=3)
    ref = simulate_brian2(net, ev, [2], target="numpy")
    n = to_brian2(net, ev, 2)
    assert isinstance(n, b2.Network)
    names = {o.name for o in n.objects}
    assert {"inputs", "layer0", "layer1", "layer2", "ff0", "rec0", "spikes0", "spikes1", "readout_trace"} <= names
    n.run(n.eventsnn_duration)
    for li, L in enumerate(ref.layers):
        mon = n[f"spikes{li}"]
        t, u = _sorted_spikes(mon.t / b2.ms, mon.i[:], ev.duration_ms)
        np.testing.assert_array_equal(np.round(t).astype(int), L.step)
        np.testing.assert_array_equal(u, L.unit)


def test_exported_brian2_script_reproduces_the_run_spike_for_spike(tmp_path):
    tr = tmp_path / "tr.h5"
    save_events(make_polychrony(samples=80, seed=1), tr)
    assert run_cli("train", "--data", tr, "--epochs", "1", "--hidden", "6", "--recurrent", "--out",
                   tmp_path / "run").returncode == 0
    assert run_cli("export", tmp_path / "run", "--out", tmp_path / "net.h5").returncode == 0
    script = tmp_path / "scripts" / "sample3.py"
    p = run_cli("export", tmp_path / "run", "--format", "brian2", "--data", tr, "--sample", "3", "--dt", "0.1",
                "--out", script)
    assert p.returncode == 0, p.stderr
    assert "b2.NeuronGroup" in script.read_text() and script.with_suffix(".npz").exists()
    q = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert q.returncode == 0, q.stderr
    res = np.load(script.parent / "sample3_result.npz")
    from eventsnn.data.datasets import load_any
    ev = load_any(tr)
    ref = simulate_brian2(load_network(tmp_path / "net.h5"), ev, [3], dt_ms=0.1, delays="exact", inputs="exact",
                          target="numpy")
    assert len(ref.layers[0].time_ms) > 0
    t, u = _sorted_spikes(res["layer0_time_ms"], res["layer0_unit"], ev.duration_ms)
    np.testing.assert_allclose(t, ref.layers[0].time_ms, atol=1e-9)
    np.testing.assert_array_equal(u, ref.layers[0].unit)
    np.testing.assert_allclose(res["trace"], ref.trace[0], rtol=1e-9, atol=1e-12)  # the readout, at dt 0.1 ms
    assert int(res["prediction"]) == int(ref.prediction[0]) and "prediction: class" in q.stdout
    # errors: --format brian2 needs --data; --data without it is refused; nothing written
    p = run_cli("export", tmp_path / "run", "--format", "brian2", "--out", tmp_path / "x.py")
    assert p.returncode == 2 and "--data" in p.stderr and not (tmp_path / "x.py").exists()
    p = run_cli("export", tmp_path / "run", "--data", tr, "--out", tmp_path / "x.h5")
    assert p.returncode == 2 and "--format brian2" in p.stderr


def test_exported_script_readout_trace_and_prediction_equal_simulate(tmp_path):
    """The script records the readout ``v`` (not a propagator) on the training grid: its trace is the trace
    ``simulate`` gives (torch at the training dt, rounded delays, binned inputs), its prediction the same, and it
    prints the prediction."""
    from eventsnn.bridge.engines.brian2 import write_brian2_script
    from eventsnn.bridge.engines.torch import simulate_torch

    net, ev = random_network(3), random_events(3, n_samples=4)
    ref = simulate_torch(net, ev, [1])
    assert np.ptp(ref.trace[0]) > 0.1, "test network's readout too flat to be a test"
    script, _ = write_brian2_script(net, ev, 1, tmp_path / "s" / "run.py")
    q = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert q.returncode == 0, q.stderr
    res = np.load(script.parent / "run_result.npz")
    assert res["trace"].shape == ref.trace[0].shape
    np.testing.assert_allclose(res["trace"], ref.trace[0], rtol=1e-9, atol=1e-12)
    assert int(res["prediction"]) == int(ref.prediction[0])
    assert f"prediction: class {int(ref.prediction[0])} (label {int(ev.labels[1])})" in q.stdout
