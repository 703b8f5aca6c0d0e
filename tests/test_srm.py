"""The SRM-alpha neuron (kind "srm"): its definition, the network file, and every engine against it."""
import math

import numpy as np
import pytest

from eventsnn.model import srm
from eventsnn.model.contract import propagators as lif_propagators


def test_kernels_are_the_impulse_responses_of_the_filter_pairs():
    tau_sr, tau_ref, scale, theta, w = 1.7, 2.9, 2.0, 10.0, 0.6
    for s in (0.0, 0.3, 1.7, 4.0, 25.0):
        v, I, vr, Ir = srm.evolve(0.0, srm.E * w, 0.0, float(srm.refractory_jump(scale, theta)), s, tau_sr, tau_ref)
        assert v == pytest.approx(w * float(srm.eps(s, tau_sr)), rel=1e-14, abs=1e-300)
        assert vr == pytest.approx(float(srm.nu(s, tau_ref, scale, theta)), rel=1e-14, abs=1e-300)
        assert I == pytest.approx(srm.E * w * math.exp(-s / tau_sr), rel=1e-14)
    # the PSP peaks at w, tau_sr after the arrival; the refractory kernel at -scale*theta
    assert float(srm.eps(tau_sr, tau_sr)) == pytest.approx(1.0, rel=1e-15)
    assert float(srm.nu(tau_ref, tau_ref, scale, theta)) == pytest.approx(-scale * theta, rel=1e-15)
    assert float(srm.eps(-0.1, tau_sr)) == 0.0


def test_one_step_of_the_closed_form_is_the_discrete_propagator():
    tau_sr, tau_ref, dt = np.array([1.0, 3.3]), np.array([2.0, 3.3]), 0.25
    a, k, ar, kr = srm.propagators(tau_sr, tau_ref, dt)
    la, lb, lk = lif_propagators(tau_sr, tau_sr, dt)  # the equal-tau LIF case, not restated
    np.testing.assert_array_equal(a, la)
    np.testing.assert_array_equal(a, lb)
    np.testing.assert_array_equal(k, lk)
    for i in range(2):
        v, I, vr, Ir = srm.evolve(0.4, -1.1, -0.7, -2.0, dt, tau_sr[i], tau_ref[i])
        assert v == pytest.approx(a[i] * 0.4 + k[i] * -1.1, rel=1e-14)
        assert I == pytest.approx(a[i] * -1.1, rel=1e-14)
        assert vr == pytest.approx(ar[i] * -0.7 + kr[i] * -2.0, rel=1e-14)
        assert Ir == pytest.approx(ar[i] * -2.0, rel=1e-14)


def test_potential_sums_the_kernels_and_its_slope_matches():
    tau_sr, tau_ref, scale, theta = 1.0, 2.0, 2.0, 10.0
    J = float(srm.refractory_jump(scale, theta))
    # one arrival at 0 (w=3), one own spike at 0.5: state at 0.5 just after the spike, evolved to 1.2
    v, I, vr, Ir = srm.evolve(0.0, srm.E * 3.0, 0.0, 0.0, 0.5, tau_sr, tau_ref)
    v, I, vr, Ir = srm.evolve(v, I, vr, Ir + J, 0.7, tau_sr, tau_ref)
    u = srm.potential(1.2, [0.0], [3.0], [0.5], tau_sr, tau_ref, scale, theta)
    assert v + vr == pytest.approx(float(u), rel=1e-13)
    h = 1e-6
    du = (srm.potential(1.2 + h, [0.0], [3.0], [0.5], tau_sr, tau_ref, scale, theta)
          - srm.potential(1.2 - h, [0.0], [3.0], [0.5], tau_sr, tau_ref, scale, theta)) / (2 * h)
    assert srm.u_slope(v, I, vr, Ir, tau_sr, tau_ref) == pytest.approx(float(du), rel=1e-7)


# ----------------------------------------------------------------------------- the network file

from eventsnn.bridge.network import Layer, Network  # noqa: E402


def srm_network(seed=0, n_in=6, sizes=(5, 4), n_out=3, dt_ms=1.0, readout="max", max_delay=4.0, w_mean=4.0,
                w_sd=4.0, theta=10.0, tau_sr=(1.0, 3.0), tau_ref=(2.0, 4.0), scale_ref=2.0):
    """A random SRM network: axonal then synaptic delays, per-neuron taus (some equal tau_sr = tau_ref), the
    paper's threshold and refractory depth, and a leaky readout (or a counted srm output layer)."""
    rng = np.random.default_rng(seed)
    layers, n_pre = [], n_in
    for li, n in enumerate(sizes):
        ts, tr = rng.uniform(*tau_sr, n), rng.uniform(*tau_ref, n)
        tr[0] = ts[0]  # equal time constants
        layers.append(Layer("srm", n, None, None, rng.normal(w_mean, w_sd, (n_pre, n)), threshold=np.full(n, theta),
                            tau_sr_ms=ts, tau_ref_ms=tr, scale_ref=np.full(n, scale_ref),
                            ff_delay_ms=rng.uniform(0, max_delay, n_pre) if li % 2 == 0
                            else rng.uniform(0, max_delay, (n_pre, n))))
        n_pre = n
    if readout == "count":
        layers.append(Layer("srm", n_out, None, None, rng.normal(w_mean, w_sd, (n_pre, n_out)),
                            threshold=np.full(n_out, theta), tau_sr_ms=rng.uniform(*tau_sr, n_out),
                            tau_ref_ms=rng.uniform(*tau_ref, n_out), scale_ref=np.full(n_out, scale_ref)))
    else:
        layers.append(Layer("li", n_out, rng.uniform(5, 20, n_out), rng.uniform(2, 10, n_out),
                            rng.normal(0, 1, (n_pre, n_out))))
    return Network(dt_ms, n_in, layers, readout).validate()


def test_network_file_roundtrip_and_version(tmp_path):
    import h5py

    from eventsnn.bridge import load_network, save_network
    from tests.conftest import random_network

    net = srm_network(3, readout="count")
    save_network(net, tmp_path / "s.h5")
    back = load_network(tmp_path / "s.h5")
    for L0, L1 in zip(net.layers, back.layers):
        assert (L0.kind, L0.reset) == (L1.kind, L1.reset) == ("srm", "none")
        for name in ("tau_sr_ms", "tau_ref_ms", "scale_ref", "threshold", "ff_weight"):
            np.testing.assert_array_equal(getattr(L0, name), getattr(L1, name))
        assert L1.tau_mem_ms is None and L1.refractory_ms is None
    with h5py.File(tmp_path / "s.h5") as f:
        assert f.attrs["version"] == 2
    save_network(random_network(0), tmp_path / "l.h5")  # LIF-only networks stay version 1 (older readers read them)
    with h5py.File(tmp_path / "l.h5") as f:
        assert f.attrs["version"] == 1
    with h5py.File(tmp_path / "s.h5", "a") as f:
        f.attrs["version"] = 1
    with pytest.raises(Exception, match="srm layers need version 2"):
        load_network(tmp_path / "s.h5")


@pytest.mark.parametrize("change, msg", [
    (dict(scale_ref=None), "needs a scale_ref dataset"),
    (dict(tau_mem_ms=np.ones(5)), "has no tau_mem_ms"),
    (dict(rec_weight=np.zeros((5, 5))), "srm layers are feed-forward"),
    (dict(reset="zero"), "has no reset"),
    (dict(tau_ref_ms=np.zeros(5)), "tau_ref_ms must be > 0"),
    (dict(scale_ref=-np.ones(5)), "scale_ref must be >= 0"),
    (dict(kind="lif", reset="zero"), "a 'lif' layer needs a tau_mem_ms"),
])
def test_bad_srm_layers_are_refused_with_the_reason(change, msg):
    from dataclasses import replace

    from eventsnn.util.errors import EventsnnError

    net = srm_network(0)
    net.layers[0] = replace(net.layers[0], **change)
    with pytest.raises(EventsnnError, match=msg):
        net.validate("net.h5")


# ----------------------------------------------------------------------------- torch: the training scan

import torch  # noqa: E402


def test_torch_scan_is_the_sampled_kernel_sum():
    """u at every step is the kernels summed over earlier arrivals and own spikes (SLAYER's sampled kernels,
    untruncated), and the layer spikes exactly where u >= theta -- including bursts spaced by refractoriness."""
    from eventsnn.model.srm_layer import SRMLayer

    dt, theta = 0.5, 10.0
    layer = SRMLayer(3, 2, tau_sr_ms=[1.0, 2.5], tau_ref_ms=[2.0, 2.5], scale_ref=2.0, threshold=theta,
                     dtype=torch.float64)
    with torch.no_grad():
        layer.ff_weight.copy_(torch.tensor([[9.0, 6.0], [8.0, 6.0], [-2.0, 5.0]], dtype=torch.float64))
    rng = np.random.default_rng(1)
    x = torch.as_tensor((rng.random((1, 80, 3)) < 0.5).astype(np.float64))
    F = (x @ layer.ff_weight.detach()) * srm.E
    from eventsnn.model.srm_layer import srm_scan
    s, u = srm_scan(F, *layer.constants(dt), layer.threshold, surrogate=None, slope=1.0, return_u=True)
    assert int(s.sum()) >= 10 and any(np.diff(np.flatnonzero(s[0, :, i].numpy())).min() <= 3 for i in range(2)
                                      if s[0, :, i].sum() > 1)
    steps = np.arange(80) * dt
    for i in range(2):
        arr_n, arr_j = np.nonzero(x[0].numpy())
        own = np.flatnonzero(s[0, :, i].numpy())
        for n in range(80):
            m = arr_n < n  # delivered at step m (after the threshold), felt from step m + 1
            o = own < n
            w = layer.ff_weight[arr_j[m], i].detach().numpy()
            want = srm.potential(steps[n], steps[arr_n[m]], w, steps[own[o]], float(layer.tau_sr_ms[i]),
                                 float(layer.tau_ref_ms[i]), 2.0, theta)
            assert float(u[0, n, i]) == pytest.approx(float(want), abs=1e-12)
        np.testing.assert_array_equal(s[0, :, i].numpy(), (u[0, :, i].numpy() >= theta).astype(float))
    # the layer's forward (with e*w weighting inside) gives the same spikes
    np.testing.assert_array_equal(layer(x, dt).detach().numpy(), s.numpy())


@pytest.mark.parametrize("dead_ms", [0.0, 3.0])
@pytest.mark.parametrize("numba_on", [True, False])
def test_fused_scan_equals_the_autograd_reference(numba_on, dead_ms, monkeypatch):
    """Also with a dead time of three steps: the same spikes, and gradients with none in the dead time."""
    from eventsnn.model import cpu_backend as cpu_kernels
    from eventsnn.model.srm_layer import SRMLayer

    monkeypatch.setattr(cpu_kernels, "ENABLED", numba_on)
    g = torch.Generator().manual_seed(0)
    layer = SRMLayer(7, 5, tau_sr_ms=1.5, tau_ref_ms=3.0, threshold=2.0, refractory_ms=dead_ms, delays="axonal",
                     max_delay_ms=4.0, weight_scale=6.0, dtype=torch.float64, generator=g)
    x = (torch.rand(4, 60, 7, generator=g, dtype=torch.float64) < (0.3 if dead_ms else 0.2)).to(torch.float64)
    target = torch.rand(4, 60, 5, generator=g, dtype=torch.float64)
    grads = {}
    for backend in ("autograd", "fused"):
        layer.zero_grad()
        s = layer(x, 1.0, "interp", "fast-sigmoid", 5.0, backend)
        ((s - target) ** 2).sum().backward()
        grads[backend] = (s.detach().clone(), layer.ff_weight.grad.clone(), layer.ff_delay_ms.grad.clone())
    assert grads["fused"][0].sum() > 20
    torch.testing.assert_close(grads["fused"][0], grads["autograd"][0], rtol=0, atol=0)
    torch.testing.assert_close(grads["fused"][1], grads["autograd"][1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads["fused"][2], grads["autograd"][2], rtol=1e-10, atol=1e-12)
    assert grads["fused"][1].abs().sum() > 0
    if dead_ms:
        spikes = grads["fused"][0]
        gaps = [np.diff(np.flatnonzero(spikes[b, :, j].numpy())) for b in range(4) for j in range(5)]
        assert min(gg.min() for gg in gaps if len(gg)) == 3  # the dead time binds
        layer.refractory_ms.fill_(0.0)  # and it changes the gradients: none where a spike was not allowed
        layer.zero_grad()
        s = layer(x, 1.0, "interp", "fast-sigmoid", 5.0, "fused")
        ((s - target) ** 2).sum().backward()
        assert not torch.allclose(layer.ff_weight.grad, grads["fused"][1])


def test_model_export_import_roundtrip():
    from eventsnn.bridge.engines.torch import model_from_network, network_from_model

    net = srm_network(2, readout="count")
    model = model_from_network(net)
    assert [l.kind for l in model.layers] == ["srm", "srm", "srm"]
    back = network_from_model(model)
    for L0, L1 in zip(net.layers, back.layers):
        for name in ("tau_sr_ms", "tau_ref_ms", "scale_ref", "threshold", "ff_weight", "ff_delay_ms"):
            a, b = getattr(L0, name), getattr(L1, name)
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- Brian2 = torch, spike for spike

@pytest.mark.parametrize("readout, dt_ms, learned", [("max", 1.0, False), ("count", 0.5, False),
                                                     ("max", 1.0, True), ("count", 0.5, True)])
def test_torch_equals_brian2_numpy_every_spike(readout, dt_ms, learned, build_dir):
    """(``learned``: the first layer has a learned PSP kernel, taps two steps apart.)"""
    from eventsnn.bridge.engines.brian2 import simulate_brian2
    from eventsnn.bridge.engines.torch import simulate_torch
    from tests.conftest import assert_runs_identical, random_events

    net = (learned_psp_network(1, dt_ms=dt_ms, tap_ms=2 * dt_ms, readout=readout) if learned
           else srm_network(1, readout=readout, dt_ms=dt_ms))
    ev = random_events(1, n_samples=3, n_units=6, spikes=50)
    rt = simulate_torch(net, ev)
    rb = simulate_brian2(net, ev, target="numpy", build_dir=build_dir)
    assert all(len(L.step) > 10 for L in rt.layers)
    assert_runs_identical(rt, rb)
    if readout == "count":
        assert rt.trace[:, -1].sum() > 0
    # samples one after another in time windows of one copy (all state, the refractory pair too, zeroed at each)
    rw = simulate_brian2(net, ev, target="numpy", build_dir=build_dir / "windows", max_copies=1)
    assert rw.attrs["windows"] == 3
    assert_runs_identical(rt, rw)
    # at a finer dt with exact delays and inputs too (the contract at any dt)
    rt2 = simulate_torch(net, ev, dt_ms=dt_ms / 4, delays="exact", inputs="exact")
    rb2 = simulate_brian2(net, ev, dt_ms=dt_ms / 4, delays="exact", inputs="exact", target="numpy",
                          build_dir=build_dir / "fine")
    assert_runs_identical(rt2, rb2)


def test_exported_brian2_script_reproduces_an_srm_run(tmp_path):
    net = srm_network(1, readout="count")
    text = _script_reproduces_the_run(net, 0.25, tmp_path)
    assert "SRM-alpha" in text and "v + vr >= theta" in text and "I_post += 2.718281828459045*w" in text


def _script_reproduces_the_run(net, dt_ms, tmp_path) -> str:
    """Write sample 1's Brian2 script, run it, and check its spikes and its count trace against simulate_brian2;
    returns the script's text."""
    import subprocess
    import sys

    from eventsnn.bridge.engines.brian2 import simulate_brian2, write_brian2_script
    from tests.conftest import random_events

    ev = random_events(1, n_samples=2, n_units=6, spikes=50)
    script, _ = write_brian2_script(net, ev, 1, tmp_path / "s.py", dt_ms=dt_ms, delays="exact", inputs="exact")
    q = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert q.returncode == 0, q.stderr
    res = np.load(tmp_path / "s_result.npz")
    ref = simulate_brian2(net, ev, [1], dt_ms=dt_ms, delays="exact", inputs="exact", target="numpy",
                          build_dir=tmp_path / "b2")
    for li, L in enumerate(ref.layers):
        t, u = res[f"layer{li}_time_ms"], res[f"layer{li}_unit"]
        keep = t < ev.duration_ms - 1e-9
        o = np.lexsort((u[keep], t[keep]))
        assert len(L.time_ms) > 5
        np.testing.assert_allclose(t[keep][o], L.time_ms, atol=1e-9)
        np.testing.assert_array_equal(u[keep][o], L.unit)
    # the counts at the end of each training step, as simulate's trace
    np.testing.assert_array_equal(res["trace"], ref.trace[0])
    return script.read_text()


# ----------------------------------------------------------------------------- training, export, verification

@pytest.fixture(scope="module")
def poly_train(tmp_path_factory):
    from eventsnn.data.datasets import make_polychrony
    from eventsnn.data.events import save_events

    f = tmp_path_factory.mktemp("poly") / "train.h5"
    save_events(make_polychrony(samples=1000, seed=1), f)
    return f


def test_trained_srm_network_learns_exports_and_brian2_reproduces_it(poly_train, tmp_path):
    from eventsnn.bridge import load_network
    from eventsnn.bridge.engines.brian2 import simulate_brian2
    from eventsnn.bridge.engines.torch import simulate_torch
    from eventsnn.data.events import load_events
    from eventsnn.training.config import TrainConfig
    from eventsnn.training.loop import load_trained_model, train
    from tests.conftest import run_cli

    cfg = TrainConfig(data=str(poly_train), neuron="srm", tau_sr_ms=5.0, tau_ref_ms=10.0, scale_ref=2.0,
                      delays="axonal", epochs=4, hidden=[16], seed=3)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["val_acc"] >= 0.4, summary  # 4 classes, chance 0.25 (measured 0.53 after 4 epochs)
    p = run_cli("export", tmp_path / "run", "--out", tmp_path / "net.h5")
    assert p.returncode == 0, p.stderr
    net = load_network(tmp_path / "net.h5")
    assert [L.kind for L in net.layers] == ["srm", "li"] and net.layers[0].ff_delay_learned
    np.testing.assert_array_equal(net.layers[0].tau_ref_ms, 10.0)
    ev = load_events(poly_train).subset(np.arange(20))
    model = load_trained_model(tmp_path / "run", dtype=torch.float64)
    from eventsnn.model.layers import dense_input
    with torch.no_grad():
        scores, _, _ = model(dense_input(ev, 1.0, dtype=torch.float64), delay_mode="round")
    rt = simulate_torch(net, ev)
    np.testing.assert_array_equal(rt.prediction, scores.argmax(1).numpy())
    rb = simulate_brian2(net, ev, target="numpy", build_dir=tmp_path / "b2")
    from tests.conftest import assert_runs_identical
    assert_runs_identical(rt, rb)
    # NIR has no such neuron: export refuses it in one line and writes nothing
    p = run_cli("export", tmp_path / "run", "--format", "nir", "--out", tmp_path / "net.nir")
    assert p.returncode == 2 and "SRM-alpha" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "net.nir").exists()


def test_srm_training_flags_are_checked(tmp_path, poly_train):
    from tests.conftest import run_cli

    for extra, msg in ((["--recurrent"], "srm layers are feed-forward"), (["--learn-taus"], "fixed"),
                       (["--scale-ref", "-1"], "--scale-ref")):
        p = run_cli("train", "--data", poly_train, "--neuron", "srm", *extra, "--out", tmp_path / "r")
        assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- the exact event engine

def _one_neuron(w, tau_sr, tau_ref, scale_ref=2.0, theta=10.0, delay=None):
    return Network(1.0, len(w), [
        Layer("srm", 1, None, None, np.asarray(w, float)[:, None], threshold=[theta], tau_sr_ms=[tau_sr],
              tau_ref_ms=[tau_ref], scale_ref=[scale_ref], ff_delay_ms=delay),
        Layer("li", 1, [10.0], [5.0], [[1.0]])], "max").validate()


def _event_spikes(net, times_ms, units, duration_ms):
    from eventsnn.bridge.engines.event import simulate_event
    from eventsnn.data.events import Events

    ev = Events.from_lists([np.asarray(times_ms) * 1e-3], [units], [0], net.n_inputs, duration_ms * 1e-3, 2)
    return simulate_event(net, ev).layers[0].time_ms


def _by_hand(arr_t, arr_w, tau_sr, tau_ref, scale_ref, theta, T, grid=1e-3):
    """Spike times from the kernel sums directly: scan u on a fine grid for the first point at or above theta
    after the last spike, refine by Brent's method; after a spike, fire again at once while u still rises."""
    from scipy.optimize import brentq

    own = []

    def u(t):
        return float(srm.potential(t, arr_t, arr_w, own, tau_sr, tau_ref, scale_ref, theta)) - theta
    t = 0.0
    while t < T:
        if own and own[-1] == t and u(t + 1e-7) > 0:  # still rising through theta: another spike now
            own.append(t)
            continue
        ts = np.arange(t + grid, T, grid)
        above = np.flatnonzero(np.array([u(x) for x in ts]) >= 0)
        if not len(above):
            break
        hi = ts[above[0]]
        t = brentq(u, hi - grid, hi, xtol=1e-14, rtol=1e-15)
        own.append(t)
    return np.array(own)


def test_event_engine_one_spike_hand_computed():
    """w eps(s) = theta first at s = -tau_sr W0(-theta/(w e)) (Lambert W); the refractory kernel keeps it single."""
    from scipy.special import lambertw

    for tau_sr, tau_ref in ((1.0, 2.0), (1.5, 1.5)):
        got = _event_spikes(_one_neuron([12.0], tau_sr, tau_ref), [2.1], [0], 20.0)
        want = 2.1 - tau_sr * lambertw(-10.0 / (12.0 * math.e), 0).real
        assert len(got) == 1 and abs(got[0] - want) <= 1e-9, (got, want)
    # an arrival that never reaches theta, and a delayed one (axonal delay 3.25 ms)
    assert len(_event_spikes(_one_neuron([9.99], 1.0, 2.0), [2.1], [0], 20.0)) == 0
    got = _event_spikes(_one_neuron([12.0], 1.0, 2.0, delay=[3.25]), [2.1], [0], 20.0)
    assert abs(got[0] - (5.35 - lambertw(-10.0 / (12.0 * math.e), 0).real)) <= 1e-9


@pytest.mark.parametrize("tau_sr, tau_ref", [(5.0, 1.0), (3.0, 3.0), (2.0, 4.0)])
def test_event_engine_burst_with_refractoriness_hand_computed(tau_sr, tau_ref):
    """A long strong drive: a train of spikes, each after the refractory kernel has let u come back to theta;
    unequal and equal time constants."""
    arr_t, arr_w = [1.0, 4.0, 4.5, 9.0], [40.0, 15.0, -6.0, 30.0]
    got = _event_spikes(_one_neuron(arr_w, tau_sr, tau_ref, scale_ref=1.0), arr_t, [0, 1, 2, 3], 40.0)
    want = _by_hand(arr_t, arr_w, tau_sr, tau_ref, 1.0, 10.0, 40.0)
    assert len(want) >= 4 and len(got) == len(want), (got, want)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_event_engine_fires_simultaneous_spikes_while_u_still_rises():
    """A steep crossing (slope s0 above the refractory kernel's initial slope c = e scale_ref theta / tau_ref):
    ceil(s0/c) spikes at the crossing -- the fewest that turn u downward."""
    from scipy.special import lambertw

    w, tau_sr, tau_ref, scale, theta = 80.0, 1.0, 2.0, 1.0, 10.0
    x = -lambertw(-theta / (w * math.e), 0).real  # crossing at s = x tau_sr
    s0 = w / tau_sr * math.exp(1 - x) * (1 - x)
    c = math.e * scale * theta / tau_ref
    k = math.ceil(s0 / c)
    assert k >= 3 and s0 / c % 1 > 0.05
    got = _event_spikes(_one_neuron([w], tau_sr, tau_ref, scale), [1.0], [0], 30.0)
    assert np.sum(np.abs(got - (1.0 + x * tau_sr)) <= 1e-9) == k, got
    want = _by_hand([1.0], [w], tau_sr, tau_ref, scale, theta, 30.0)
    assert len(got) == len(want)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_brian2_converges_to_the_event_engine_at_first_order(tmp_path):
    """Two SRM layers with delays, driven where each crossing is slower than half the refractory kernel's initial
    slope (so the clocked count has a limit): the same spikes at every dt, shifted on average by about one step
    (within two), and the shift shrinks with dt."""
    from eventsnn.bridge.engines.brian2 import simulate_brian2
    from eventsnn.bridge.engines.event import simulate_event
    from tests.conftest import random_events
    from validation.compare import match_spikes

    net = srm_network(1, w_mean=3.0, w_sd=2.0, scale_ref=6.0, tau_ref=(1.0, 2.0))
    ev = random_events(0, n_samples=6, n_units=6, duration_s=0.05, spikes=40)
    exact = simulate_event(net, ev)
    assert [len(L.time_ms) for L in exact.layers] == [132, 53]
    mean_shift, trace_err = [], []
    for dt in (0.1, 0.05, 0.025):
        rb = simulate_brian2(net, ev, dt_ms=dt, delays="exact", inputs="exact", target="numpy",
                             build_dir=tmp_path / f"b{dt}")
        row = []
        for a, b in zip(exact.layers, rb.layers):
            d, n = [], 0
            for s in range(len(ev)):
                for u in range(int(a.unit.max()) + 1):
                    ta, tb = a.time_ms[(a.sample == s) & (a.unit == u)], b.time_ms[(b.sample == s) & (b.unit == u)]
                    ia, ib = match_spikes(ta, tb, 1.0)
                    d.append(np.abs(tb[ib] - ta[ia]))
                    n += len(ta)
            d = np.concatenate(d)
            assert len(d) >= 0.94 * n and abs(len(b.time_ms) - len(a.time_ms)) <= 1
            row.append(d.mean())
        mean_shift.append(row)
        assert max(row) <= 2 * dt, (dt, row)
        trace_err.append(np.abs(rb.trace - exact.trace).max() / np.abs(exact.trace).max())
    mean_shift = np.array(mean_shift)
    assert np.all(mean_shift[0] / mean_shift[2] > 2.0), mean_shift  # 4x smaller dt
    assert trace_err[2] < 0.05 and trace_err[0] / trace_err[2] > 2.0, trace_err  # the leaky readout too


def test_event_engine_refuses_what_it_cannot_run_exactly():
    from dataclasses import replace

    from eventsnn.bridge.engines.event import simulate_event
    from eventsnn.util.errors import EventsnnError
    from tests.conftest import random_events

    ev = random_events(0, n_samples=1, n_units=6)
    net = srm_network(0)
    net.layers[0] = replace(net.layers[0], scale_ref=np.zeros(5))
    with pytest.raises(EventsnnError, match="scale_ref > 0"):
        simulate_event(net.validate(), ev)
    mixed = Network(1.0, 6, [
        Layer("lif", 5, np.full(5, 10.0), np.full(5, 5.0), np.ones((6, 5)), threshold=np.ones(5)),
        Layer("srm", 4, None, None, np.ones((5, 4)), threshold=np.ones(4), tau_sr_ms=np.ones(4),
              tau_ref_ms=np.ones(4), scale_ref=np.ones(4)),
        Layer("li", 2, np.ones(2), np.ones(2), np.ones((4, 2)))], "max").validate()
    with pytest.raises(EventsnnError, match="all 'lif' or all 'srm'"):
        simulate_event(mixed, ev)


def test_event_engine_counts_the_crossings_where_clocked_runs_burst():
    from eventsnn.bridge.engines.event import simulate_event
    from tests.conftest import random_events

    ev = random_events(0, n_samples=3, n_units=6, duration_s=0.05, spikes=40)
    calm = simulate_event(srm_network(1, w_mean=3.0, w_sd=2.0, scale_ref=6.0, tau_ref=(1.0, 2.0)), ev)
    assert calm.attrs["srm_steep_crossings"] == 0
    steep = simulate_event(srm_network(1), ev)  # strong drive: many crossings steeper than half the kernel's slope
    assert steep.attrs["srm_steep_crossings"] > 10


def test_event_engine_counted_srm_output_converges(build_dir):
    """A counted srm output layer (readout count): the exact run's counts are what fine clocked runs count."""
    from eventsnn.bridge.engines.brian2 import simulate_brian2
    from eventsnn.bridge.engines.event import simulate_event
    from tests.conftest import random_events

    net = srm_network(2, readout="count", w_mean=3.0, w_sd=2.0, scale_ref=6.0, tau_ref=(1.0, 2.0))
    net.layers[-1].ff_weight *= 3.0
    ev = random_events(0, n_samples=4, n_units=6, duration_s=0.05, spikes=40)
    exact = simulate_event(net, ev)
    assert exact.attrs["srm_steep_crossings"] == 0 and exact.trace[:, -1].sum() >= 20
    rb = simulate_brian2(net, ev, dt_ms=0.01, delays="exact", inputs="exact", target="numpy", build_dir=build_dir)
    np.testing.assert_array_equal(rb.trace[:, -1], exact.trace[:, -1])  # total output spikes per unit
    assert np.abs(rb.trace - exact.trace).sum() <= 0.02 * exact.trace.sum()  # counts per step: a few shifted


# ----------------------------------------------------------------------------- the dead time (refractory_ms)

def _by_hand_dead(arr_t, arr_w, tau_sr, tau_ref, scale_ref, theta, T, dead, grid=1e-3):
    """Spike times with a dead time, from the kernel sums directly: after a spike at t_s the next is at t_s + dead
    if u >= theta there, else at the first crossing after it (grid scan, then Brent's method)."""
    from scipy.optimize import brentq

    own = []

    def u(t):
        return float(srm.potential(t, arr_t, arr_w, own, tau_sr, tau_ref, scale_ref, theta)) - theta
    start = 0.0
    while start < T:
        if own and u(start) >= 0:
            own.append(start)
        else:
            ts = np.arange(start + grid, T, grid)
            above = np.flatnonzero(np.array([u(x) for x in ts]) >= 0)
            if not len(above):
                break
            hi = ts[above[0]]
            own.append(brentq(u, max(hi - grid, start), hi, xtol=1e-14, rtol=1e-15))
        start = own[-1] + dead
    return np.array(own)


@pytest.mark.parametrize("dead", [1.0, 1.7])
def test_event_engine_dead_time_hand_computed(dead):
    """A drive that fires 15 spikes at one instant without a dead time: with one, a spike at the end of each dead
    time while u is above theta there, and a free crossing later."""
    arr_t, arr_w = [1.0, 4.0, 4.5, 9.0], [80.0, 15.0, -6.0, 45.0]
    net = _one_neuron(arr_w, 2.0, 4.0, scale_ref=1.0)
    assert len(np.unique(_event_spikes(net, arr_t, [0, 1, 2, 3], 40.0))) == 1  # a burst at one instant
    net.layers[0].refractory_ms = np.array([dead])
    got = _event_spikes(net.validate(), arr_t, [0, 1, 2, 3], 40.0)
    want = _by_hand_dead(arr_t, arr_w, 2.0, 4.0, 1.0, 10.0, 40.0, dead)
    assert len(got) == len(want) >= 5, (got, want)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    isi = np.diff(got)
    assert np.sum(np.abs(isi - dead) < 1e-9) >= 3 and np.any(isi > dead + 1.0)


def _dead_network(seed, dead_ms, **kw):
    net = srm_network(seed, **kw)
    for L in net.layers:
        if L.kind == "srm":
            L.refractory_ms = np.full(L.size, dead_ms)
    return net.validate()


def _isis(layer):
    order = np.lexsort((layer.time_ms, layer.unit, layer.sample))
    s, u, t = layer.sample[order], layer.unit[order], layer.time_ms[order]
    return np.diff(t)[(s[1:] == s[:-1]) & (u[1:] == u[:-1])]


@pytest.mark.parametrize("readout", ["max", "count"])
def test_dead_time_torch_equals_brian2_and_is_obeyed(readout, build_dir):
    """A dead time of three steps: torch and Brian2 (numpy) spike for spike at the step and at a quarter of it,
    no interval shorter than the dead time there or in the exact engine."""
    from eventsnn.bridge.engines.brian2 import simulate_brian2
    from eventsnn.bridge.engines.event import simulate_event
    from eventsnn.bridge.engines.torch import simulate_torch
    from tests.conftest import assert_runs_identical, random_events

    net = _dead_network(1, 1.5, readout=readout, dt_ms=0.5)
    ev = random_events(1, n_samples=3, n_units=6, spikes=50)
    plain = simulate_torch(srm_network(1, readout=readout, dt_ms=0.5), ev)
    rt = simulate_torch(net, ev)
    assert min(_isis(L).min() for L in plain.layers) < 1.5  # without it the neurons fire faster
    assert all(_isis(L).min() >= 1.5 - 1e-9 for L in rt.layers)
    assert_runs_identical(rt, simulate_brian2(net, ev, target="numpy", build_dir=build_dir))
    rt2 = simulate_torch(net, ev, dt_ms=0.125, delays="exact", inputs="exact")
    rb2 = simulate_brian2(net, ev, dt_ms=0.125, delays="exact", inputs="exact", target="numpy",
                          build_dir=build_dir / "fine")
    assert_runs_identical(rt2, rb2)
    assert all(_isis(L).min() >= 1.5 - 1e-9 for L in rt2.layers)
    exact = simulate_event(net, ev)
    assert all(len(L.time_ms) > 10 and _isis(L).min() >= 1.5 - 1e-9 for L in exact.layers)
    # the exported script has it too
    from eventsnn.bridge.engines.brian2 import neuron_equations
    model, threshold, reset, update, R = neuron_equations(net.layers[0], 0.5, False)
    assert "refcount <= 0" in threshold and "refcount = R" in reset and list(R) == [3] * net.layers[0].size


def test_dead_time_network_file_version(tmp_path):
    import h5py

    from eventsnn.bridge import load_network, save_network
    from eventsnn.util.errors import EventsnnError

    net = _dead_network(3, 2.0, readout="count")
    save_network(net, tmp_path / "d.h5")
    back = load_network(tmp_path / "d.h5")
    assert all(np.array_equal(L.refractory_ms, np.full(L.size, 2.0)) for L in back.layers)
    with h5py.File(tmp_path / "d.h5", "a") as f:
        assert f.attrs["version"] == 4
        f.attrs["version"] = 3
    with pytest.raises(EventsnnError, match="refractory_ms on an 'srm' layer in a version 3 file"):
        load_network(tmp_path / "d.h5")
    from eventsnn.bridge.engines.torch import model_from_network, network_from_model
    again = network_from_model(model_from_network(net))
    assert all(np.array_equal(L.refractory_ms, np.full(L.size, 2.0)) for L in again.layers)
    assert all(L.refractory_ms is None for L in network_from_model(model_from_network(srm_network(3))).layers
               if L.kind == "srm")  # no dead time: no dataset, the file stays version 2


@pytest.mark.compiled
@pytest.mark.parametrize("target", ["cython", "cpp_standalone"])
def test_torch_equals_brian2_compiled_targets(target, build_dir):
    from eventsnn.bridge.engines.brian2 import simulate_brian2
    from eventsnn.bridge.engines.torch import simulate_torch
    from tests.conftest import assert_runs_identical, random_events

    net = srm_network(4, readout="count")
    ev = random_events(4, n_samples=3, n_units=6, spikes=50)
    assert_runs_identical(simulate_torch(net, ev), simulate_brian2(net, ev, target=target, build_dir=build_dir))


def test_cuda_standalone_srm_project_compiles(tmp_path):
    from eventsnn.bridge.engines.brian2 import cuda_toolchain_problem, simulate_brian2
    from tests.conftest import random_events

    if why := cuda_toolchain_problem():
        pytest.skip(f"cuda_standalone cannot be compiled here: {why}")
    proj = simulate_brian2(srm_network(5), random_events(5, n_samples=2, n_units=6), target="cuda_standalone",
                           build_dir=tmp_path, compile_only=True)
    assert [p for p in proj.iterdir() if p.name == "main" and p.is_file()], f"no compiled binary in {proj}"


# ----------------------------------------------------------------------------- the authors' recipe as options

def test_recipe_options_weight_norm_nadam_milestones_delay_init(poly_train, tmp_path):
    from eventsnn.bridge.engines.torch import network_from_model
    from eventsnn.training.config import TrainConfig
    from eventsnn.training.loop import build_model, load_checkpoint, load_trained_model, train

    kw = dict(data=str(poly_train), neuron="srm", tau_sr_ms=5.0, tau_ref_ms=10.0, delays="axonal", hidden=[8],
              batch_size=200, seed=1, weight_norm=True, optimizer="nadam", lr_milestones=[1, 2], lr_gamma=0.5,
              max_delay_ms=10.0, delay_init_ms=1.0, readout="count", loss="rate")
    model = build_model(TrainConfig(**kw, epochs=3), 12, 4, "cpu")
    d = model.layers[0].ff_delay_ms.detach()
    assert 0 <= float(d.min()) and float(d.max()) <= 1.0 and float(d.max()) > 0.5  # U(0, 1 ms), not U(0, 10)
    w = model.layers[0].parametrizations.ff_weight
    assert w.original0.shape == (1, 8)  # one gain per neuron
    full = train(TrainConfig(**kw, epochs=3), tmp_path / "full", progress=False)
    ck = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    assert [g["lr"] for g in ck["optimizer"]["param_groups"]] == pytest.approx([1e-2 * 0.25, 0.5 * 0.25])
    assert "mu_product" in next(iter(ck["optimizer"]["state"].values()))  # NAdam's state
    # resuming (the scheduler included) equals the uninterrupted run
    train(TrainConfig(**kw, epochs=3), tmp_path / "part", progress=False, max_epochs_this_call=1)
    resumed = train(TrainConfig(), tmp_path / "part", resume=True, progress=False)
    assert resumed["val_acc"] == full["val_acc"] and resumed["best_epoch"] == full["best_epoch"]
    # the exported weights are the normalised ones the trained model used
    m = load_trained_model(tmp_path / "full", dtype=torch.float64)
    net = network_from_model(m)
    np.testing.assert_allclose(net.layers[0].ff_weight, m.layers[0].ff_weight.detach().numpy(), rtol=0, atol=0)
    for bad, msg in (({"delay_init_ms": 20.0}, "--delay-init-ms"), ({"lr_milestones": [3, 2]}, "increase")):
        with pytest.raises(Exception, match=msg):
            TrainConfig.read({**kw, **bad})


# ----------------------------------------------------------------------------- the learned PSP kernel

def test_learned_kernel_knots_kinks_and_samples_are_one_kernel():
    taps = srm.start_taps(7, 3.0, 2.0) + np.linspace(-0.3, 0.2, 7)
    assert srm.start_taps(50, 50.0, 1.0).max() == pytest.approx(1.0) and srm.start_taps(50, 50.0, 1.0)[0] == 0.0
    lags, c = srm.fir_kinks(taps, 2.0)
    s = np.linspace(-3, 20, 461)
    ramps = sum(ci * np.maximum(s - li, 0.0) for li, ci in zip(lags, c))
    assert np.allclose(ramps, srm.fir_kernel(s, taps, 2.0), atol=1e-12) and abs(c.sum()) < 1e-12
    assert np.allclose(srm.fir_kernel(2.0 * np.arange(1, 8), taps, 2.0), taps)  # tap k at lag (k + 1) Delta
    assert srm.fir_kernel(16.0, taps, 2.0) == 0.0 and srm.fir_kernel(0.0, taps, 2.0) == 0.0
    for dt in (2.0, 1.0, 0.5):
        P = srm.fir_sample_matrix(7, 2.0, dt)
        assert np.allclose(P @ taps, srm.fir_kernel(dt * np.arange(1, len(P) + 1), taps, 2.0), atol=1e-12)
    with pytest.raises(ValueError, match="not a whole number of steps"):
        srm.fir_sample_matrix(7, 2.0, 0.3)


def learned_psp_network(seed=0, dt_ms=1.0, tap_ms=2.0, readout="max"):
    """:func:`srm_network` with a learned PSP kernel on the first layer (an uneven one: alpha plus a tilt)."""
    net = srm_network(seed, dt_ms=dt_ms, readout=readout, w_mean=9.0, w_sd=5.0)
    net.layers[0].psp_taps = srm.start_taps(6, 4.0, tap_ms) * np.linspace(1.2, 0.6, 6)
    net.layers[0].psp_tap_ms = tap_ms
    return net.validate()


def test_learned_kernel_torch_scan_is_the_kernel_sum():
    import torch

    from eventsnn.bridge.engines.torch import model_from_network

    net = learned_psp_network(2, dt_ms=0.5, tap_ms=1.0)
    L = net.layers[0]
    rng = np.random.default_rng(3)
    x = torch.zeros(1, 60, net.n_inputs, dtype=torch.float64)
    steps, units = rng.integers(0, 50, 25), rng.integers(0, net.n_inputs, 25)
    x[0, steps, units] = 1.0
    layer = model_from_network(net).layers[0]
    F = __import__("eventsnn.model.delays", fromlist=["x"]).delayed_current(
        layer.filter_input(x, 0.5), layer.ff_weight, layer.ff_delay_ms / 0.5, "round")
    from eventsnn.model.srm_layer import srm_scan
    a, k, ar, kr, jump = layer.constants(0.5)
    big = torch.full_like(layer.threshold, 1e9)  # no spikes: u is the kernel sum alone
    _, u = srm_scan(F, a, k, ar, kr, jump, big, surrogate=None, slope=1.0, return_u=True)
    d = np.floor(L.ff_delay_ms / 0.5 + 0.5) * 0.5
    stp, un = np.nonzero(x[0].numpy())
    for j in range(L.size):
        want = [srm.fir_potential(n * 0.5, stp * 0.5 + d[un], L.ff_weight[un, j], [], L.psp_taps, 1.0,
                                  L.tau_ref_ms[j], L.scale_ref[j], L.threshold[j]) for n in range(60)]
        assert np.allclose(u[0, :, j].numpy(), want, atol=1e-12)


def test_learned_kernel_event_engine_hand_computed():
    """One arrival: w h_c(s) is linear between knots, so the crossing is where the line through the two knots
    around theta meets it; and a few arrivals with delays against the kernel sums directly."""
    from scipy.optimize import brentq

    taps = srm.start_taps(5, 3.0, 1.0)

    def one(w, delay=None, tap_ms=1.0, tau_ref=2.0):
        return Network(1.0, len(w), [
            Layer("srm", 1, None, None, np.asarray(w, float)[:, None], threshold=[10.0], tau_sr_ms=[1.0],
                  tau_ref_ms=[tau_ref], scale_ref=[2.0], ff_delay_ms=delay, psp_taps=taps, psp_tap_ms=tap_ms),
            Layer("li", 1, [10.0], [5.0], [[1.0]])], "max").validate()

    got = _event_spikes(one([12.0]), [2.1], [0], 30.0)
    p = 12.0 * srm.fir_knots(taps)
    assert len(got) == 1 and abs(got[0] - (2.1 + 2 + (10 - p[2]) / (p[3] - p[2]))) <= 1e-9
    rng = np.random.default_rng(0)
    in_t, in_u, w = np.sort(rng.uniform(0, 20, 12)), rng.integers(0, 3, 12), np.array([9.0, 7.0, -4.0])
    net = one(w, delay=np.array([0.3, 1.7, 0.0]), tap_ms=2.0, tau_ref=3.0)
    got = _event_spikes(net, in_t, in_u, 40.0)
    arr, own = in_t + net.layers[0].ff_delay_ms[in_u], []

    def u(t):
        return float(srm.fir_potential(t, arr, w[in_u], own, taps, 2.0, 3.0, 2.0, 10.0)) - 10.0
    t, grid = 0.0, 1e-3
    while t < 40.0:
        ts = np.arange(t + grid, 40.0, grid)
        above = np.flatnonzero(np.array([u(x) for x in ts]) >= 0)
        if not len(above):
            break
        t = brentq(u, ts[above[0]] - grid, ts[above[0]], xtol=1e-14, rtol=1e-15)
        own.append(t)
    assert len(own) >= 2 and len(got) == len(own) and np.abs(got - own).max() < 1e-9


def test_learned_kernel_clocked_runs_converge_to_the_event_engine(tmp_path):
    from eventsnn.bridge.engines.event import simulate_event
    from eventsnn.bridge.engines.torch import simulate_torch
    from tests.conftest import random_events
    from validation.compare import match_spikes

    net = learned_psp_network(4, tap_ms=1.0)
    net.layers[0].scale_ref[:] = 6.0  # slow crossings: a clocked count has a limit
    ev = random_events(0, n_samples=4, n_units=6, duration_s=0.05, spikes=40)
    exact = simulate_event(net, ev)
    assert len(exact.layers[0].time_ms) > 20
    shifts = []
    for dt in (0.1, 0.025):
        rt = simulate_torch(net, ev, dt_ms=dt, delays="exact", inputs="exact")
        a, b = exact.layers[0], rt.layers[0]
        d, n = [], 0
        for s in range(len(ev)):
            for k in range(a.unit.max() + 1):
                ta, tb = a.time_ms[(a.sample == s) & (a.unit == k)], b.time_ms[(b.sample == s) & (b.unit == k)]
                ia, ib = match_spikes(ta, tb, 1.0)
                d.append(np.abs(tb[ib] - ta[ia]))
                n += len(ta)
        d = np.concatenate(d)
        assert len(d) >= 0.9 * n
        shifts.append(d.mean())
        assert shifts[-1] <= 2 * dt
    assert shifts[0] > 2 * shifts[1]


def test_learned_kernel_network_file_version(tmp_path):
    import h5py

    from eventsnn.bridge.network import load_network, save_network
    from eventsnn.util.errors import EventsnnError

    net = learned_psp_network(0)
    path = tmp_path / "net.h5"
    save_network(net, path)
    back = load_network(path)
    assert np.array_equal(back.layers[0].psp_taps, net.layers[0].psp_taps) and back.layers[0].psp_tap_ms == 2.0
    assert back.layers[1].psp_taps is None
    with h5py.File(path, "r") as f:
        assert f.attrs["version"] == 3
    with h5py.File(path, "a") as f:
        f.attrs["version"] = 2
    with pytest.raises(EventsnnError, match="psp_taps in a version 2 file"):
        load_network(path)
    bad = learned_psp_network(0)
    bad.layers[0].psp_tap_ms = 1.5
    with pytest.raises(EventsnnError, match="psp_tap_ms 1.5 is not a whole number of steps"):
        bad.validate()
    bad.layers[0].psp_tap_ms = None
    with pytest.raises(EventsnnError, match="psp_taps needs an attribute psp_tap_ms"):
        bad.validate()


def test_learned_kernel_exported_brian2_script_reproduces_the_run(tmp_path):
    text = _script_reproduces_the_run(learned_psp_network(1, tap_ms=1.0, readout="count"), 0.5, tmp_path)
    assert "I_post += c*w" in text and "ff0.c = p['ff0_c']" in text


def test_learned_kernel_trains_exports_and_brian2_reproduces_it(poly_train, tmp_path):
    from eventsnn.bridge import load_network
    from eventsnn.bridge.engines.brian2 import simulate_brian2
    from eventsnn.bridge.engines.torch import simulate_torch
    from eventsnn.data.events import load_events
    from eventsnn.training.config import TrainConfig
    from eventsnn.training.loop import load_checkpoint, train
    from tests.conftest import assert_runs_identical, run_cli

    cfg = TrainConfig(data=str(poly_train), neuron="srm", tau_ref_ms=10.0, scale_ref=2.0, delays="axonal",
                      epochs=4, hidden=[16], seed=3, psp_taps=8, psp_init_tau_ms=4.0, lr_psp=0.05)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["val_acc"] >= 0.4, summary  # 4 classes, chance 0.25
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert 0.05 in [g["lr"] for g in ck["optimizer"]["param_groups"]]
    p = run_cli("export", tmp_path / "run", "--out", tmp_path / "net.h5")
    assert p.returncode == 0, p.stderr
    net = load_network(tmp_path / "net.h5")
    taps = net.layers[0].psp_taps
    assert taps.shape == (8,) and net.layers[0].psp_tap_ms == 1.0 and net.layers[1].psp_taps is None
    assert np.abs(taps - srm.start_taps(8, 4.0, 1.0)).max() > 1e-3  # the kernel learned
    ev = load_events(poly_train).subset(np.arange(12))
    rt = simulate_torch(net, ev)
    assert_runs_identical(rt, simulate_brian2(net, ev, target="numpy", build_dir=tmp_path / "b2"))


@pytest.mark.parametrize("extra, msg", [
    (["--psp-taps", "5"], "--psp-taps: Value error, a learned PSP kernel is an srm setting"),
    (["--neuron", "srm", "--psp-taps", "5", "--psp-tap-ms", "1.5"], "--psp-tap-ms: Value error, the taps must be"),
    (["--neuron", "srm", "--psp-taps", "-1"], "--psp-taps"),
])
def test_learned_kernel_flags_are_checked(extra, msg, tmp_path, poly_train):
    from tests.conftest import run_cli

    p = run_cli("train", "--data", poly_train, *extra, "--out", tmp_path / "r")
    assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "r").exists()
