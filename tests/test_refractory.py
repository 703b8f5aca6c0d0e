"""A refractory period as a training option: nothing changes at the training step when it is at most one step,
the exported network carries it, and in continuous time no neuron fires faster than it allows."""
import numpy as np
import pytest
import torch

from eventsnn.bridge.engines.event import simulate_event
from eventsnn.bridge.engines.torch import network_from_model, simulate_torch
from eventsnn.model.layers import dense_input
from eventsnn.training.config import TrainConfig
from eventsnn.training.loop import build_model
from tests.conftest import random_events, run_cli

DT = 2.0
BASE = dict(hidden=[12, 10], dt_ms=DT, weight_scale=60.0, max_delay_ms=4.0, seed=3, tau_mem_ms=10.0,
            tau_syn_ms=4.0)


def _isis(layer):
    """Every inter-spike interval (ms) of every (sample, unit)."""
    order = np.lexsort((layer.time_ms, layer.unit, layer.sample))
    s, u, t = layer.sample[order], layer.unit[order], layer.time_ms[order]
    same = (s[1:] == s[:-1]) & (u[1:] == u[:-1])
    return np.diff(t)[same]


@pytest.mark.parametrize("readout", ["max", "count"])
def test_a_period_of_one_step_changes_nothing_at_the_training_dt(readout):
    """The clock already allows one spike per step: outputs and gradients equal with and without it."""
    ev = random_events(2, n_samples=4, n_units=8, duration_s=0.2, spikes=150)
    x = dense_input(ev, DT)
    outs = []
    for ref in (0.0, DT):
        cfg = TrainConfig(**BASE, readout=readout, refractory_ms=ref)
        model = build_model(cfg, 8, 3, "cpu")
        assert [float(L.refractory_ms.max()) for L in model.layers if L.spiking] == [ref] * len(
            [L for L in model.layers if L.spiking])
        scores, trace, spikes = model(x, delay_mode="round", surrogate="fast-sigmoid", slope=10.0)
        scores.sum().backward()
        outs.append((trace.detach(), [s.detach() for s in spikes],
                     [L.ff_weight.grad.clone() for L in model.layers]))
    (t0, s0, g0), (t1, s1, g1) = outs
    assert sum(float(s.sum()) for s in s0) > 50  # the network fires
    torch.testing.assert_close(t0, t1, rtol=0, atol=0)
    assert all(torch.equal(a, b) for a, b in zip(s0, s1))
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))


def test_a_longer_period_is_obeyed_at_the_training_dt():
    cfg = TrainConfig(**BASE, refractory_ms=3 * DT)
    model = build_model(cfg, 8, 3, "cpu")
    ev = random_events(2, n_samples=4, n_units=8, duration_s=0.2, spikes=150)
    r = simulate_torch(network_from_model(model), ev)
    for L in r.layers:
        assert len(L.time_ms) > 10
        assert _isis(L).min() >= 3 * DT - 1e-9


def test_the_exported_network_keeps_the_clock_ceiling_in_continuous_time():
    """Trained without a period, the network fires far faster than one spike per step in continuous time; with
    ``refractory_ms = dt`` no interval is shorter than a step, as at the clock."""
    ev = random_events(4, n_samples=3, n_units=8, duration_s=0.06, spikes=300)
    shortest = {}
    for ref in (0.0, DT):
        net = network_from_model(build_model(TrainConfig(**BASE, refractory_ms=ref), 8, 3, "cpu"))
        assert all(np.all(L.refractory_ms == ref) for L in net.layers if L.kind == "lif")
        r = simulate_event(net, ev)
        shortest[ref] = min(_isis(L).min() for L in r.layers)
    assert shortest[0.0] < DT / 4
    assert shortest[DT] >= DT - 1e-9


SRM = dict(BASE, neuron="srm", threshold=10.0, tau_sr_ms=1.0, tau_ref_ms=2.0, scale_ref=2.0, weight_scale=30.0)


@pytest.mark.parametrize("readout", ["max", "count"])
def test_an_srm_dead_time_of_one_step_changes_nothing_at_the_training_dt(readout):
    """For SRM neurons the period is a dead time (nothing held): of one step, the same spikes and gradients; the
    exported network carries it into continuous time, where the burst at one instant becomes one spike per
    step."""
    ev = random_events(2, n_samples=4, n_units=8, duration_s=0.2, spikes=150)
    x = dense_input(ev, DT)
    outs, shortest = [], {}
    for ref in (0.0, DT):
        model = build_model(TrainConfig(**SRM, readout=readout, refractory_ms=ref), 8, 3, "cpu")
        assert {L.kind for L in model.layers if L.spiking} == {"srm"}
        scores, trace, spikes = model(x, delay_mode="round", surrogate="fast-sigmoid", slope=10.0)
        scores.sum().backward()
        outs.append((trace.detach(), [s.detach() for s in spikes], [L.ff_weight.grad.clone() for L in model.layers]))
        r = simulate_event(network_from_model(model), ev)
        shortest[ref] = min(_isis(L).min() for L in r.layers if len(L.time_ms) > 1)
    (t0, s0, g0), (t1, s1, g1) = outs
    assert sum(float(s.sum()) for s in s0) > 50
    torch.testing.assert_close(t0, t1, rtol=0, atol=0)
    assert all(torch.equal(a, b) for a, b in zip(s0, s1))
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    assert shortest[0.0] < DT / 4
    assert shortest[DT] >= DT - 1e-9


def test_negative_periods_are_refused(tmp_path):
    r = run_cli("train", "--data", tmp_path / "none.h5", "--refractory-ms", "-1", "--out", tmp_path / "run")
    assert r.returncode == 2 and "--refractory-ms" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
