"""The authors' training recipe as options: delay placement (before / after / both hidden layers), the delay cap
schedule, SLAYER's probSpikes loss, and the named presets (``eventsnn train --preset``)."""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from eventsnn.bridge import load_network, save_network
from eventsnn.bridge.engines.brian2 import simulate_brian2
from eventsnn.bridge.engines.event import simulate_event
from eventsnn.bridge.engines.torch import network_from_model, simulate_torch
from eventsnn.bridge.network import Layer, Network
from eventsnn.data.events import Events
from eventsnn.model.layers import prob_loss, summed_loss
from eventsnn.training.config import TrainConfig, preset_names
from eventsnn.training.loop import build_model, layer_delays
from tests.conftest import assert_runs_identical, random_events, run_cli

# ----------------------------------------------------------------------------- delay placement

@pytest.mark.parametrize("neuron", ["lif", "srm"])
@pytest.mark.parametrize("placement, want", [("before", [True, True, False]), ("after", [False, True, True]),
                                             ("both", [True, True, True])])
def test_delay_placement_decides_which_layers_own_delays(neuron, placement, want):
    cfg = TrainConfig(neuron=neuron, hidden=[5, 4], readout="count", delay_placement=placement, max_delay_ms=6.0)
    assert layer_delays(cfg) == ["axonal" if w else "none" for w in want]
    model = build_model(cfg, 7, 3, "cpu")
    assert [L.ff_delay_ms is not None for L in model.layers] == want
    for L in model.layers:
        if L.ff_delay_ms is not None:
            assert L.ff_delay_ms.requires_grad and L.delays_learned
            assert L.ff_delay_ms.shape == (L.n_in,) and float(L.ff_delay_ms.max()) <= 6.0
    # synaptic delays follow the same placement; no delays anywhere with --delays none
    syn = build_model(cfg.model_copy(update={"delays": "synaptic"}), 7, 3, "cpu")
    assert [L.ff_delay_ms is not None and L.ff_delay_ms.dim() == 2 for L in syn.layers] == want
    assert all(L.ff_delay_ms is None for L in build_model(cfg.model_copy(update={"delays": "none"}), 7, 3,
                                                          "cpu").layers)


def test_before_is_the_default_and_draws_the_same_network():
    base = dict(hidden=[6], max_delay_ms=4.0, seed=5)
    a = build_model(TrainConfig(**base), 8, 3, "cpu").state_dict()
    b = build_model(TrainConfig(**base, delay_placement="before"), 8, 3, "cpu").state_dict()
    assert TrainConfig().delay_placement == "before"
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "layers.1.ff_delay_ms" not in a  # no delay on the readout's input


def test_readout_delays_learn():
    """A delay on the readout's input gets a gradient and moves in training (interp mode)."""
    cfg = TrainConfig(hidden=[6], delay_placement="after", max_delay_ms=4.0, seed=1, weight_scale=30.0)
    model = build_model(cfg, 8, 3, "cpu")
    ev = random_events(1, n_samples=4)
    from eventsnn.model.layers import dense_input
    x = dense_input(ev, 1.0)
    scores, trace, _ = model(x, delay_mode="interp", surrogate="fast-sigmoid", slope=10.0)
    summed_loss(scores, trace, torch.as_tensor(ev.labels), "max").backward()
    g = model.layers[1].ff_delay_ms.grad
    assert g is not None and float(g.abs().max()) > 0


def after_network(neuron: str, readout: str, seed: int = 0, dt_ms: float = 1.0) -> Network:
    """A random network as ``train --delay-placement after`` builds it, through the network file format."""
    cfg = TrainConfig(neuron=neuron, hidden=[6, 5], readout=readout, delay_placement="after", max_delay_ms=5.0,
                      seed=seed, dt_ms=dt_ms, weight_scale=40.0 if neuron == "srm" else 25.0,
                      threshold=10.0 if neuron == "srm" else 1.0)
    model = build_model(cfg, 8, 3, "cpu").double()
    return network_from_model(model)


@pytest.mark.parametrize("neuron, readout", [("lif", "max"), ("srm", "count")])
def test_after_network_survives_the_file_and_brian2_equals_torch(neuron, readout, tmp_path):
    net = after_network(neuron, readout)
    assert [L.ff_delay_ms is not None for L in net.layers] == [False, True, True]
    save_network(net, tmp_path / "net.h5")
    back = load_network(tmp_path / "net.h5")
    np.testing.assert_array_equal(back.layers[-1].ff_delay_ms, net.layers[-1].ff_delay_ms)
    assert back.layers[-1].ff_delay_learned and back.layers[0].ff_delay_ms is None
    ev = random_events(2, n_samples=3, n_units=8, spikes=80)
    rt = simulate_torch(back, ev)
    rb = simulate_brian2(back, ev, target="numpy", build_dir=tmp_path / "b2")
    assert_runs_identical(rt, rb)
    # the readout's delays matter: without them the readout differs
    plain = load_network(tmp_path / "net.h5")
    plain.layers[-1].ff_delay_ms = None
    assert not np.array_equal(simulate_torch(plain, ev).trace, rt.trace)


def test_after_network_in_the_exported_brian2_script(tmp_path):
    from eventsnn.bridge.engines.brian2 import write_brian2_script

    net = after_network("lif", "max", seed=3)
    ev = random_events(3, n_samples=2, n_units=8, spikes=80)
    script, _ = write_brian2_script(net, ev, 1, tmp_path / "s.py")
    q = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert q.returncode == 0, q.stderr
    res = np.load(tmp_path / "s_result.npz")
    ref = simulate_torch(net, ev, [1])
    assert "ff2_delay_ms" in np.load(tmp_path / "s.npz").files  # the readout's synapses carry delays
    np.testing.assert_allclose(res["trace"], ref.trace[0], rtol=1e-9, atol=1e-12)


def test_event_engine_delays_the_readout_input_hand_computed():
    """One hidden neuron fires at s; the readout sees it d ms later: trace = w * the two-exponential kernel."""
    tm_o, ts_o, w, d = 8.0, 3.0, 0.7, 2.75
    net = Network(1.0, 1, [Layer("lif", 1, [10.0], [5.0], [[8.0]], threshold=[1.0]),
                           Layer("li", 1, [tm_o], [ts_o], [[w]], ff_delay_ms=[d])], "last").validate()
    ev = Events.from_lists([np.array([2.0e-3])], [np.zeros(1, int)], [0], 1, 0.02, 1)

    def kernel(t):  # v of a leaky integrator after I += 1 at t = 0 (tau_mem != tau_syn)
        return 0.0 if t <= 0 else ts_o / (ts_o - tm_o) * (math.exp(-t / ts_o) - math.exp(-t / tm_o))
    for method in ("layers", "reference"):  # the default path and the one-queue reference
        r = simulate_event(net, ev, method=method)
        s = r.layers[0].time_ms
        assert len(s) >= 1
        for n in range(20):
            t = n + 1.0
            assert r.trace[0, n, 0] == pytest.approx(sum(w * kernel(t - si - d) for si in s), abs=1e-12)
        assert r.trace[0, int(s[0] + d) - 1, 0] == 0.0  # nothing before the delayed arrival


def test_event_engine_after_network_layers_equal_the_reference():
    net = after_network("lif", "max", seed=5)
    ev = random_events(5, n_samples=2, n_units=8, spikes=80)
    a, b = simulate_event(net, ev), simulate_event(net, ev, method="reference")
    assert all(len(L.time_ms) > 5 for L in a.layers)
    for La, Lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(La.unit, Lb.unit)
        np.testing.assert_allclose(La.time_ms, Lb.time_ms, rtol=0, atol=1e-9)
    np.testing.assert_allclose(a.trace, b.trace, rtol=1e-9, atol=1e-12)


def test_event_engine_counted_srm_output_with_delays_converges(build_dir):
    """A counted srm output whose input is delayed: the exact run counts what Brian2 counts at a fine dt."""
    from tests.test_srm import srm_network

    net = srm_network(2, readout="count", w_mean=3.0, w_sd=2.0, scale_ref=6.0, tau_ref=(1.0, 2.0))
    net.layers[-1].ff_weight *= 3.0
    net.layers[-1].ff_delay_ms = np.random.default_rng(0).uniform(0, 4.0, net.layers[-2].size)
    net.validate()
    ev = random_events(0, n_samples=4, n_units=6, duration_s=0.05, spikes=40)
    exact = simulate_event(net, ev)
    assert exact.attrs["srm_steep_crossings"] == 0 and exact.trace[:, -1].sum() >= 20
    rb = simulate_brian2(net, ev, dt_ms=0.01, delays="exact", inputs="exact", target="numpy", build_dir=build_dir)
    np.testing.assert_array_equal(rb.trace[:, -1], exact.trace[:, -1])
    assert np.abs(rb.trace - exact.trace).sum() <= 0.02 * exact.trace.sum()


def test_nir_carries_a_readout_delay(tmp_path):
    pytest.importorskip("nir")
    from eventsnn.bridge.nir_io import load_nir, save_nir

    net = after_network("lif", "max", seed=4)
    save_nir(net, tmp_path / "g.nir")
    back = load_nir(tmp_path / "g.nir")
    assert back.layers[0].ff_delay_ms is None
    np.testing.assert_allclose(back.layers[-1].ff_delay_ms, net.layers[-1].ff_delay_ms, rtol=1e-12)
    ev = random_events(4, n_samples=2, n_units=8, spikes=80)
    assert_runs_identical(simulate_torch(net, ev), simulate_torch(back, ev))


# ----------------------------------------------------------------------------- delay cap schedule

def test_clamp_keeps_delays_nonnegative_and_caps_only_when_asked():
    model = build_model(TrainConfig(hidden=[3], max_delay_ms=2.0, neuron="srm"), 4, 2, "cpu")
    with torch.no_grad():
        model.layers[0].ff_delay_ms.copy_(torch.tensor([-1.0, 0.5, 3.0, 9.0]))
    model.clamp_(cap_delays=False)
    assert model.layers[0].ff_delay_ms.tolist() == [0.0, 0.5, 3.0, 9.0]
    model.clamp_()
    assert model.layers[0].ff_delay_ms.tolist() == [0.0, 0.5, 2.0, 2.0]


@pytest.fixture(scope="module")
def small_poly(tmp_path_factory):
    from eventsnn.data.datasets import make_polychrony
    from eventsnn.data.events import save_events

    f = tmp_path_factory.mktemp("poly") / "train.h5"
    save_events(make_polychrony(samples=120, seed=1), f)
    return f


def test_delay_clamp_until_lets_delays_past_the_cap_afterwards(small_poly, tmp_path):
    from eventsnn.training.loop import load_checkpoint, load_trained_model, train

    kw = dict(data=str(small_poly), hidden=[8], epochs=3, batch_size=20, max_delay_ms=2.0, lr_delay=3.0, seed=2,
              delay_placement="both", patience=10)
    train(TrainConfig(**kw), tmp_path / "capped", progress=False)
    train(TrainConfig(**kw, delay_clamp_until=0), tmp_path / "free", progress=False)

    def delays(run):
        m = load_checkpoint(tmp_path / run / "checkpoint.pt")["model"]
        return torch.cat([v.flatten() for k, v in m.items() if "delay" in k])
    capped, free = delays("capped"), delays("free")
    assert float(capped.max()) <= 2.0 and float(capped.min()) >= 0.0
    assert float(free.max()) > 2.0 and float(free.min()) >= 0.0  # past the cap after epoch 0, never negative
    # a network with delays past --max-delay-ms is a valid network file, and the engines run it
    model = load_trained_model(tmp_path / "free", dtype=torch.float64)
    with torch.no_grad():
        model.layers[-1].ff_delay_ms[0] = 7.5  # certainly past the cap (whatever the best epoch was)
    net = network_from_model(model)
    save_network(net, tmp_path / "net.h5")
    net = load_network(tmp_path / "net.h5")
    assert net.max_delay_ms() > 2.0
    from eventsnn.data.events import load_events
    ev = load_events(small_poly).subset(np.arange(3))
    assert_runs_identical(simulate_torch(net, ev), simulate_brian2(net, ev, target="numpy",
                                                                   build_dir=tmp_path / "b2"))
    with pytest.raises(Exception, match="--delay-clamp-until"):
        TrainConfig.read({"delay_clamp_until": -1})


# ----------------------------------------------------------------------------- probSpikes loss

def test_prob_loss_hand_computed_value_and_gradient():
    n = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 2.0], [4.0, 4.0, 0.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2, 1])
    loss = prob_loss(n, y)
    # floored counts [3,1,1] / 5, [1,1,2] / 4, [4,4,1] / 9
    want = -math.log(3 / 5) - math.log(2 / 4) - math.log(4 / 9)
    assert float(loss) == pytest.approx(want, abs=1e-12)
    loss.backward()
    # d/dn_c = 1/total - [c == y]/n_c (floored counts; the floor passes the gradient, as in SLAYER)
    g = [[1 / 5 - 1 / 3, 1 / 5, 1 / 5], [1 / 4, 1 / 4, 1 / 4 - 1 / 2], [1 / 9, 1 / 9 - 1 / 4, 1 / 9]]
    np.testing.assert_allclose(n.grad.numpy(), g, atol=1e-12)
    trace = torch.zeros(3, 5, 3, dtype=torch.float64)
    assert float(summed_loss(n.detach(), trace, y, "count", "prob")) == pytest.approx(want, abs=1e-12)


def test_prob_loss_needs_counts_and_trains(small_poly, tmp_path):
    with pytest.raises(Exception, match="--readout count"):
        TrainConfig.read({"loss": "prob"})
    from eventsnn.training.loop import train
    s = train(TrainConfig(data=str(small_poly), hidden=[16], readout="count", loss="prob", epochs=4, batch_size=10,
                          seed=0, lr=0.02), tmp_path / "run", progress=False)
    import json
    hist = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"], hist  # it learns
    assert np.isfinite(s["val_acc"])


# ----------------------------------------------------------------------------- presets

def test_presets_load_and_hold_the_authors_settings():
    assert preset_names() == ["paper-coincidence", "paper-isi", "paper-shd"]
    cfg = {n: TrainConfig.read(TrainConfig.from_preset(n), f"--preset {n}") for n in preset_names()}
    shd = cfg["paper-shd"]
    assert (shd.neuron, shd.threshold, shd.delay_placement, shd.delay_clamp_until, shd.loss) == \
        ("srm", 10.0, "after", 250, "rate")
    assert shd.tau_sr_ms == pytest.approx(shd.dt_ms) and shd.tau_ref_ms == pytest.approx(2 * shd.dt_ms)
    assert shd.max_delay_ms == pytest.approx(64 * shd.dt_ms) and shd.lr_delay == pytest.approx(0.1 * shd.dt_ms)
    assert shd.dt_ms == pytest.approx(1400 / 99, rel=1e-8)
    assert (cfg["paper-isi"].delay_placement, cfg["paper-isi"].loss) == ("both", "prob")
    co = cfg["paper-coincidence"]
    assert (co.delay_placement, co.hidden, co.max_delay_ms, co.delay_clamp_until) == ("after", [3], 15.0, None)
    # the authors' learned 50-tap input PSP (SLAYER's pspFilter), at 10x the weights' learning rate; none for SHD
    isi = cfg["paper-isi"]
    assert (isi.psp_taps, isi.psp_init, isi.psp_init_tau_ms, isi.psp_init_peak) == (50, "alpha", 50.0, 1.0)
    assert (co.psp_taps, co.psp_init, co.psp_init_tau_ms, co.psp_init_peak) == (50, "exponential", 50.0, 0.1)
    assert isi.lr_psp == pytest.approx(10 * isi.lr) and co.lr_psp == pytest.approx(10 * co.lr)
    assert shd.psp_taps == 0
    from eventsnn.training.loop import build_model
    t = np.arange(50.0)
    for c, n_in, want in ((isi, 10, t / 50 * np.exp(1 - t / 50)), (co, 60, 0.1 * np.exp(-t / 50))):
        model = build_model(c, n_in, 2, "cpu")
        got = model.layers[0].psp_taps.detach().double().numpy()
        np.testing.assert_allclose(got, want / want.max() * (1.0 if c is isi else 0.1), rtol=1e-6)
        assert model.layers[0].psp_tap_ms == 1.0 and model.layers[1].psp_taps is None


def test_cli_preset_config_and_flags_in_that_order(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 7\nbatch_size: 9\n")
    p = run_cli("train", "--preset", "paper-shd", "--config", tmp_path / "c.yaml", "--batch-size", "5",
                "--show-config", "--json")
    assert p.returncode == 0, p.stderr
    import json
    got = json.loads(p.stdout)
    assert (got["epochs"], got["batch_size"], got["neuron"], got["delay_placement"]) == (7, 5, "srm", "after")
    assert got["patience"] == 300  # from the preset
    p = run_cli("train", "--preset", "paper-isi", "--show-config")
    assert p.returncode == 0 and "delay_placement: both" in p.stdout and "loss: prob" in p.stdout
    assert not list(tmp_path.glob("*/checkpoint.pt"))
    # an unknown name, and a bad value that came from the preset, are one-line errors that say where
    p = run_cli("train", "--preset", "paper-nope", "--show-config")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "--preset" in p.stderr and "paper-shd" in p.stderr and "paper-isi" in p.stderr, p.stderr
    p = run_cli("train", "--preset", "paper-coincidence", "--max-delay-ms", "1", "--show-config")
    assert p.returncode == 2 and "--preset paper-coincidence: delay_init_ms" in p.stderr, p.stderr
    # --resume takes no preset
    p = run_cli("train", "--resume", tmp_path, "--preset", "paper-shd")
    assert p.returncode == 2 and "--preset" in p.stderr
