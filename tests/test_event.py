"""The exact event-driven engine: hand-computed cases, convergence of the clock-driven engines to it, the
merged-input bug, and its place in the CLI."""
import math

import numpy as np
import pytest
from scipy.optimize import brentq

from eventsnn.bridge import save_network
from eventsnn.bridge.engines.brian2 import simulate_brian2
from eventsnn.bridge.engines import ENGINES
from eventsnn.bridge.engines.event import simulate_event
from eventsnn.bridge.engines.torch import simulate_torch
from eventsnn.bridge.network import Layer, Network
from eventsnn.util.errors import EventsnnError
from eventsnn.data.events import Events, save_events
from eventsnn.bridge.runfile import load_run
from eventsnn.validation.compare import compare_runs
from tests.conftest import random_events, random_network, run_cli


def one_neuron(w=3.0, tm=10.0, ts=5.0, theta=1.0, delay=None, tref=None, reset="zero"):
    return Network(1.0, 1, [
        Layer("lif", 1, [tm], [ts], [[w]], threshold=[theta], reset=reset,
              ff_delay_ms=None if delay is None else [delay], refractory_ms=None if tref is None else [tref]),
        Layer("li", 1, [20.0], [5.0], [[1.0]])], "max").validate()


def spikes_of(net, times_ms, duration_ms=60.0):
    ev = Events.from_lists([np.asarray(times_ms) * 1e-3], [np.zeros(len(times_ms), int)], [0], 1,
                           duration_ms * 1e-3, 1)
    r = simulate_event(net, ev)
    return r.layers[0].time_ms, r


def v_two_exp(t, v0, I0, tm, ts):
    """The membrane by the textbook two-exponential form (independent of the engine's expm1 form)."""
    if t <= 0:
        return v0
    if tm == ts:
        return (v0 + I0 * t / tm) * math.exp(-t / tm)
    B = I0 * ts / (ts - tm)
    return (v0 - B) * math.exp(-t / tm) + B * math.exp(-t / ts)


def first_crossing(v0, I0, tm, ts, theta, t_max=200.0):
    grid = np.linspace(0, t_max, 200001)
    vals = np.array([v_two_exp(t, v0, I0, tm, ts) for t in grid]) - theta
    k = np.flatnonzero(vals >= 0)
    if not len(k):
        return None
    return brentq(lambda t: v_two_exp(t, v0, I0, tm, ts) - theta, grid[k[0] - 1], grid[k[0]], xtol=1e-14)


@pytest.mark.parametrize("tm,ts", [(10.0, 5.0), (5.0, 10.0), (10.0, 10.0)])
def test_one_spike_hand_computed(tm, ts):
    t_hand = first_crossing(0.0, 6.0, tm, ts, 1.0)
    got, _ = spikes_of(one_neuron(w=6.0, tm=tm, ts=ts, delay=2.5), [4.0])
    assert len(got) >= 1
    assert got[0] == pytest.approx(6.5 + t_hand, abs=1e-9)


def test_subthreshold_input_never_fires():
    got, _ = spikes_of(one_neuron(w=0.9), [1.0, 30.0])  # v stays below the current, which is below theta
    assert len(got) == 0


def test_merged_input_pair_fires_exactly_and_in_every_engine_at_fine_dt():
    """The issue's case: one input unit fires at 10.0 and 10.0004 ms into one LIF (tau 10/5 ms, theta 1, w 3,
    axonal delay 1 ms). One spike alone stays below threshold (v peaks at 0.75); both fire it at 13.3742 ms.
    Binning the two into one spike (the old binary rasters) lost that spike at every dt."""
    net = one_neuron(w=3.0, delay=1.0)
    assert len(spikes_of(net, [10.0], 30.0)[0]) == 0
    got, _ = spikes_of(net, [10.0, 10.0004], 30.0)
    assert len(got) == 1 and got[0] == pytest.approx(13.3742, abs=1e-4)
    ev = Events.from_lists([[0.010, 0.0100004]], [[0, 0]], [0], 1, 0.03, 1)
    for dt in (0.01, 0.001):  # counts in torch, input lanes in Brian2: every spike delivered
        for run in (simulate_torch(net, ev, dt_ms=dt, delays="exact", inputs="exact"),
                    simulate_brian2(net, ev, dt_ms=dt, delays="exact", inputs="exact", target="numpy")):
            assert len(run.layers[0].time_ms) == 1, (run.engine, dt)
            assert abs(run.layers[0].time_ms[0] - got[0]) < 3 * dt, (run.engine, dt)


def test_refractory_period_hand_computed():
    tm, ts, w, tref = 10.0, 20.0, 5.0, 2.0
    got, _ = spikes_of(one_neuron(w=w, tm=tm, ts=ts, tref=tref), [0.0], 40.0)
    assert len(got) >= 2
    t1 = first_crossing(0.0, w, tm, ts, 1.0)
    assert got[0] == pytest.approx(t1, abs=1e-9)
    I_end = w * math.exp(-(t1 + tref) / ts)  # I kept decaying while v was held at 0
    t2 = t1 + tref + first_crossing(0.0, I_end, tm, ts, 1.0)
    assert got[1] == pytest.approx(t2, abs=1e-9)


def test_subtract_and_zero_reset_agree_in_continuous_time():
    """v reaches theta exactly at a crossing, so v - theta = 0: both resets give the same spikes."""
    a, _ = spikes_of(one_neuron(w=5.0, ts=20.0), [0.0, 3.0], 50.0)
    b, _ = spikes_of(one_neuron(w=5.0, ts=20.0, reset="subtract"), [0.0, 3.0], 50.0)
    assert len(a) >= 3
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_readout_trace_is_the_closed_form_at_the_end_of_each_training_step():
    net = Network(1.0, 1, [Layer("lif", 1, [10.0], [5.0], [[0.0]], threshold=[1.0]),
                           Layer("li", 1, [8.0], [3.0], [[1.0]])], "last").validate()
    net.layers[1].ff_weight[0, 0] = 0.0
    # drive the readout directly: a hidden neuron that fires once, from a strong input
    net.layers[0].ff_weight[0, 0] = 8.0
    net.layers[1].ff_weight[0, 0] = 0.7
    got, r = spikes_of(net, [2.0], 20.0)
    assert len(got) >= 1
    for n in range(20):
        t = n + 1.0
        want = sum(0.7 * v_two_exp(t - s, 0.0, 1.0, 8.0, 3.0) for s in got if s < t)
        assert r.trace[0, n, 0] == pytest.approx(want, abs=1e-12)


def test_brian2_converges_to_the_exact_engine_at_first_order(tmp_path):
    """A two-layer delayed recurrent network with refractoriness: Brian2's median spike-time error falls
    about tenfold for each tenfold smaller dt once dt is small (0.01 -> 0.001 ms); from 0.1 to 0.01 ms, where the
    error is not yet in its first-order regime, 3.6-6.6x (measured; optimal matching)."""
    net = random_network(0, max_delay=5.0)
    ev = random_events(0, n_samples=2, duration_s=0.03)
    exact = simulate_event(net, ev)
    assert all(len(L.time_ms) > 30 for L in exact.layers)
    med = []
    for dt in (0.1, 0.01, 0.001):
        rb = simulate_brian2(net, ev, dt_ms=dt, delays="exact", inputs="exact", target="numpy",
                             build_dir=tmp_path / f"b{dt}")
        c = compare_runs(exact, rb, tol_ms=max(1.0, 10 * dt))
        med.append([L["median_abs_shift_ms"] for L in c["layers"]])
        assert min(L["matched_fraction"] for L in c["layers"]) > (0.8 if dt == 0.1 else 0.95)
    med = np.array(med)
    ratios = med[:-1] / med[1:]
    assert np.all(ratios[0] > 3) and np.all(ratios[1] > 7), med
    assert np.all(med[-1] < 0.02), med


def test_workers_split_equals_one_process():
    net = random_network(2)
    ev = random_events(2, n_samples=5)
    a = simulate_event(net, ev)
    b = simulate_event(net, ev, workers=2)
    for La, Lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(La.sample, Lb.sample)
        np.testing.assert_array_equal(La.time_ms, Lb.time_ms)
    np.testing.assert_array_equal(a.trace, b.trace)


def test_cli_simulate_event_and_its_errors(tmp_path):
    net, ev = random_network(3), random_events(3, n_samples=3)
    netf, evf = tmp_path / "net.h5", tmp_path / "ev.h5"
    save_network(net, netf)
    save_events(ev, evf)
    out = tmp_path / "run.h5"
    p = run_cli("simulate", netf, "--data", evf, "--engine", "event", "--out", out, "--json")
    assert p.returncode == 0, p.stderr
    r = load_run(out)
    assert r.engine == "event" and r.dt_ms == 0.0 and r.trace.shape == (3, 50, 3)
    assert r.attrs["provenance"]["eventsnn"]
    np.testing.assert_array_equal(r.layers[0].time_ms, simulate_event(net, ev).layers[0].time_ms)
    p = run_cli("simulate", netf, "--data", evf, "--engine", "event", "--dt", "0.1", "--out", tmp_path / "x.h5")
    assert p.returncode == 2 and "--dt" in p.stderr and not (tmp_path / "x.h5").exists()


def test_runaway_firing_stops_the_exact_run_with_a_clear_error(tmp_path, monkeypatch, capsys):
    # no refractory period and a huge input weight: the first layer fires without bound after one input spike
    import eventsnn.bridge.engines.event as ee
    monkeypatch.setattr(ee, "SPIKE_CAP_FLOOR", 100)  # this small network is cheap even so: let the rate decide
    net = random_network(5, refractory=False)
    net.layers[0].ff_weight = np.abs(net.layers[0].ff_weight) * 1e4
    ev = random_events(5, n_samples=2)
    with pytest.raises(EventsnnError, match="fires without bound.*--no-event") as e:
        simulate_event(net, ev)
    assert "sample 0" in str(e.value) and "1000 Hz" in str(e.value)
    # the cap is the mean rate over the sample and all hidden neurons: one far above it lets the run finish
    run = simulate_event(net, ev.subset([0]), max_rate_hz=1e7)
    rate = sum(len(L.time_ms) for L in run.layers) / (ev.duration_ms * 1e-3 * 11)
    assert rate > 1000
    # through the CLI: one line, exit 2, nothing written
    netf, evf = tmp_path / "net.h5", tmp_path / "ev.h5"
    save_network(net, netf)
    save_events(ev, evf)
    from eventsnn.cli import main
    code = main(["simulate", str(netf), "--data", str(evf), "--engine", "event", "--out", str(tmp_path / "r.h5")])
    err = capsys.readouterr().err
    assert code == 2 and "fires without bound" in err and not (tmp_path / "r.h5").exists()
    assert len(err.strip().splitlines()) == 1


def test_cli_engine_choices_are_the_registry():
    from eventsnn.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    engine = next(a for a in sub.choices["simulate"]._actions if a.dest == "engine")
    assert tuple(ENGINES) == tuple(engine.choices)
