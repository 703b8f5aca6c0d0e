"""Issue: core contract -- binning, torch engine, network file, Brian2 builder equal spike for spike."""
import math

import h5py
import numpy as np
import pytest
import torch

from eventsnn.bridge import load_network, save_network
from eventsnn.bridge.engines.brian2 import simulate_brian2
from eventsnn.bridge.engines.torch import model_from_network, network_from_model, simulate_torch
from eventsnn.bridge.network import Layer, Network
from eventsnn.model.contract import propagators
from eventsnn.data.events import Events, bin_events, load_events, save_events, time_to_step
from eventsnn.bridge.runfile import load_run
from tests.conftest import assert_runs_identical, random_events, random_network, run_cli, write_mini_shd


def test_binning_rule_floor_shift_dedup_and_duration():
    # floor(t/dt + 1e-3): 0.9999 ms is already in step 1 at dt=1 ms; 0.998 is not
    assert time_to_step([0.0, 0.998, 0.9999, 1.0, 2.5], 1.0).tolist() == [0, 0, 1, 1, 2]
    ev = Events.from_lists([[0.0001, 0.0004, 0.0021, 0.00995]], [[1, 1, 0, 2]], [0], 3, 0.01, 1)
    b = bin_events(ev, 1.0)
    assert b.n_steps == 10 and b.n_samples == 1
    # the two spikes of unit 1 in step 0 are one entry with count 2; 9.95 ms is in step 9 (< duration) and kept
    assert list(zip(b.step.tolist(), b.unit.tolist(), b.count.tolist())) == [(0, 1, 2), (2, 0, 1), (9, 2, 1)]
    assert b.merged == 1 and b.n_spikes == 4 and b.dropped == 0
    bb = b.binary()  # training's binary raster loses one spike, and says so
    assert bb.count.tolist() == [1, 1, 1] and bb.merged == 1
    ev2 = Events.from_lists([[0.00999]], [[0]], [0], 1, 0.01, 1)  # 9.99 ms -> step floor(9.99+0.001)=9
    assert bin_events(ev2, 1.0).step.tolist() == [9]


def test_propagators_equal_tau_limit_is_continuous():
    a, b, k = propagators([10.0, 10.0], [10.0, 10.0 * (1 + 1e-6)], 1.0)
    assert np.isfinite(k).all()
    assert k[0] == pytest.approx(0.1 * math.exp(-0.1), rel=1e-12)
    assert k[1] == pytest.approx(k[0], rel=1e-5)


def test_propagators_are_the_closed_form_at_dt_for_every_pair_of_taus():
    """One expression (expm1 form, no "nearly equal" tolerance) for the clocked engines' propagators and the exact
    engine's evolution: equal at t = dt bit for bit; smooth through equal taus; the torch form differentiable
    there and equal to the numpy one."""
    from eventsnn.model.contract import evolve
    tm = np.array([10.0, 20.0, 10.0, 10.0, 5.0, 1.0])
    ts = np.array([5.0, 20.0, 10.0 * (1 + 1e-12), 10.0 * (1 + 1e-7), 40.0, 1e-3])
    a, b, k = propagators(tm, ts, 1.0)
    for i in range(len(tm)):
        v, cur = evolve(0.0, 1.0, 1.0, tm[i], ts[i])
        assert k[i] == v and b[i] == cur
    assert k[2] == pytest.approx(0.1 * math.exp(-0.1), rel=1e-11)
    assert k[3] == pytest.approx(0.1 * math.exp(-0.1), rel=1e-7)
    tmt = torch.tensor(tm, requires_grad=True)
    tst = torch.tensor(ts, requires_grad=True)
    at, bt, kt = propagators(tmt, tst, 1.0, xp=torch)
    np.testing.assert_allclose(kt.detach().numpy(), k, rtol=1e-14)
    kt.sum().backward()
    assert torch.isfinite(tmt.grad).all() and torch.isfinite(tst.grad).all()


def test_surrogate_ids_are_one_table_for_every_backend():
    from eventsnn.model import scan_numba, scan_triton
    from eventsnn.model.surrogates import SURROGATE_IDS, SURROGATES, surrogate_id
    from eventsnn.util.errors import EventsnnError
    assert list(SURROGATE_IDS) == list(SURROGATES) and sorted(SURROGATE_IDS.values()) == [0, 1, 2]
    assert scan_triton.surrogate_id is surrogate_id
    x = np.linspace(-2, 2, 9)
    from eventsnn.model.scan import surrogate_derivative
    for name in SURROGATES:
        ref = surrogate_derivative(torch.tensor(x), name, 5.0).numpy()
        got = np.array([scan_numba._surrogate(xi, surrogate_id(name), 5.0) for xi in x])
        np.testing.assert_allclose(got, ref, rtol=1e-12)
    with pytest.raises(EventsnnError, match="choose one of fast-sigmoid, atan, multi-gaussian"):
        surrogate_id("relu")


def _one_neuron_net(threshold, reset="zero", w=0.8, tm=10.0, ts=5.0):
    return Network(1.0, 1, [
        Layer("lif", 1, [tm], [ts], [[w]], reset=reset, threshold=[threshold]),
        Layer("li", 1, [tm], [ts], [[1.0]])], "max").validate()


def test_hand_computed_single_neuron():
    """One neuron, input spikes at 0.3 ms and 2.2 ms (steps 0 and 2), dt = 1 ms, w = 0.8."""
    a, b = math.exp(-1 / 10), math.exp(-1 / 5)
    k = 5 / (5 - 10) * (b - a)
    w = 0.8
    # by hand: step 0: integrate (0), deliver I=w.  step 1: v=k w, I=b w.
    # step 2: v=a k w + k b w, I=b^2 w, then deliver I=b^2 w + w.  step 3: v = a v2 + k I2 ...
    v1 = k * w
    v2 = a * v1 + k * b * w
    I2 = b * b * w + w
    v3 = a * v2 + k * I2
    I3 = b * I2
    v4 = a * v3 + k * I3
    ev = Events.from_lists([[0.0003, 0.0022]], [[0, 0]], [0], 1, 0.006, 1)
    # threshold between v3 and v4 (v is still rising at step 4): first spike at step 4
    assert v4 > v3
    theta = 0.5 * (v3 + v4)
    net = _one_neuron_net(theta)
    model = model_from_network(net)
    from eventsnn.model.layers import dense_input
    x = dense_input(ev, 1.0, dtype=torch.float64)
    h = model.layers[0](x, 1.0)
    assert h[0, :, 0].tolist() == [0, 0, 0, 0, 1, 0]
    # no threshold: the membrane follows the hand-computed values exactly
    net_hi = _one_neuron_net(1e9)
    lif = model_from_network(net_hi).layers[0]
    lif.spiking = False  # read the membrane itself
    vs = lif.scan(torch.tensor([[[w], [0], [w], [0], [0]]], dtype=torch.float64), 1.0)[0, :, 0].tolist()
    assert vs == pytest.approx([0.0, v1, v2, v3, v4], rel=1e-15, abs=0)


def test_hand_case_brian2_matches(build_dir):
    ev = Events.from_lists([[0.0003, 0.0022]], [[0, 0]], [0], 1, 0.006, 1)
    a, b = math.exp(-1 / 10), math.exp(-1 / 5)
    k = 5 / (5 - 10) * (b - a)
    w = 0.8
    v2 = a * k * w + k * b * w
    v3 = a * v2 + k * (b * b * w + w)
    net = _one_neuron_net(0.99 * v3)  # crosses at step 3
    rb = simulate_brian2(net, ev, target="numpy", build_dir=build_dir)
    assert rb.layers[0].step.tolist() == [3]
    assert rb.layers[0].time_ms.tolist() == [3.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_equals_brian2_numpy_every_spike(seed, build_dir):
    net = random_network(seed, readout=["max", "mean", "softmax-sum"][seed])
    ev = random_events(seed)
    rt = simulate_torch(net, ev)
    rb = simulate_brian2(net, ev, target="numpy", build_dir=build_dir)
    assert_runs_identical(rt, rb)
    # several samples per copy in time (windows): same spikes again
    rb2 = simulate_brian2(net, ev, target="numpy", build_dir=build_dir, max_copies=2)
    assert rb2.attrs["windows"] == 3
    assert_runs_identical(rt, rb2)


def _save_inputs(tmp_path, net, ev):
    """The network and events as files for the CLI: ``(net.h5, ev.h5)``."""
    netf, evf = tmp_path / "net.h5", tmp_path / "ev.h5"
    save_network(net, netf)
    save_events(ev, evf)
    return netf, evf


def test_brian2_samples_split_over_worker_processes_equal_torch(tmp_path):
    """``simulate --workers 2``: the samples are cut into chunks run in two processes and joined in order."""
    net = random_network(5)
    ev = random_events(5, n_samples=5)
    netf, evf = _save_inputs(tmp_path, net, ev)
    out = tmp_path / "b.h5"
    p = run_cli("simulate", netf, "--data", evf, "--engine", "brian2", "--workers", "2", "--out", out)
    assert p.returncode == 0, p.stderr
    rb = load_run(out)
    assert rb.attrs["workers"] == 2
    assert rb.sample_index.tolist() == list(range(5))
    np.testing.assert_array_equal(rb.labels, ev.labels)
    assert_runs_identical(simulate_torch(net, ev), rb)
    assert set(rb.layers[0].sample.tolist()) > {0, 4}, "spikes of both chunks present"


def count_network(seed=1):
    """A random network whose output layer spikes and is counted (``readout="count"``, the paper's readout)."""
    net = random_network(seed)
    L = net.layers[-1]
    net.layers[-1] = Layer("lif", L.size, L.tau_mem_ms, L.tau_syn_ms, np.abs(L.ff_weight) * 2, reset="zero",
                           threshold=np.ones(L.size), refractory_ms=np.array([0.0, 2.0, 0.0]))
    net.readout = "count"
    return net.validate()


def test_count_readout_identical_in_torch_and_brian2_and_converges_to_the_exact_run(tmp_path):
    from eventsnn.bridge.engines.event import simulate_event
    net, ev = count_network(), random_events(1, n_samples=6)
    rt = simulate_torch(net, ev)
    # the trace is the cumulative output spike count on the training grid; the score its last value
    assert np.all(np.diff(rt.trace, axis=1) >= 0) and rt.trace[:, -1].sum() > 20
    np.testing.assert_array_equal(rt.prediction, rt.trace[:, -1].argmax(1))
    for copies in (None, 2):  # one window, and samples one after another in time (counts restart per window)
        assert_runs_identical(rt, simulate_brian2(net, ev, target="numpy", build_dir=tmp_path / f"b{copies}",
                                                  max_copies=copies), trace_rtol=0)
    save_network(net, tmp_path / "net.h5")
    back = load_network(tmp_path / "net.h5")
    assert back.readout == "count" and back.layers[-1].kind == "lif"
    # at fine dt with exact delays and inputs the counts approach the exact run's
    ex = simulate_event(net, ev)
    err = [np.abs(simulate_torch(net, ev, dt_ms=dt, delays="exact", inputs="exact").trace - ex.trace).max()
           for dt in (0.1, 0.01)]
    assert err[1] <= 1 and err[1] < err[0], err


def test_float32_engine_close_to_float64():
    net = random_network(4)
    ev = random_events(4)
    r64 = simulate_torch(net, ev)
    r32 = simulate_torch(net, ev, dtype=torch.float32)
    assert np.abs(r64.trace - r32.trace).max() < 1e-3 * np.abs(r64.trace).max()


@pytest.mark.compiled
def test_torch_equals_brian2_cpp_standalone(tmp_path):
    net = random_network(7)
    ev = random_events(7, n_samples=4)
    netf, evf = _save_inputs(tmp_path, net, ev)
    for engine, extra in (("torch", []), ("brian2", ["--target", "cpp_standalone"])):
        p = run_cli("simulate", netf, "--data", evf, "--engine", engine, *extra, "--out", tmp_path / f"{engine}.h5")
        assert p.returncode == 0, p.stderr
    assert_runs_identical(load_run(tmp_path / "torch.h5"), load_run(tmp_path / "brian2.h5"))
    assert not list(tmp_path.glob(".eventsnn_build_*")), "build directory not cleaned up"


@pytest.mark.compiled
def test_torch_equals_brian2_cython(build_dir):
    net = random_network(8, sizes=(5,), refractory=True)
    ev = random_events(8, n_samples=3)
    assert_runs_identical(simulate_torch(net, ev), simulate_brian2(net, ev, target="cython", build_dir=build_dir))


def test_fine_dt_exact_delays_and_inputs_via_cli(tmp_path):
    net = random_network(3)
    ev = random_events(3, n_samples=3)
    netf, evf = _save_inputs(tmp_path, net, ev)
    out = tmp_path / "fine.h5"
    p = run_cli("simulate", netf, "--data", evf, "--engine", "brian2", "--dt", "0.01", "--delay-mode", "exact",
                "--inputs", "exact", "--out", out, "--json")
    assert p.returncode == 0, p.stderr
    r = load_run(out)
    assert r.dt_ms == 0.01 and r.delays == "exact" and r.inputs == "exact"
    t = r.layers[0].time_ms
    assert len(t) > 0
    off_grid = np.abs(t - np.round(t)) > 1e-6
    assert off_grid.mean() > 0.5  # spike times are not locked to the 1 ms training grid
    assert r.trace.shape == (3, 50, 3)  # sampled on the training grid
    # the fine torch engine agrees with fine Brian2 (same contract at dt=0.01)
    rt = simulate_torch(net, ev, dt_ms=0.01, delays="exact", inputs="exact")
    assert_runs_identical(rt, r)


def test_network_file_roundtrip(tmp_path):
    net = random_network(5)
    save_network(net, tmp_path / "n.h5")
    back = load_network(tmp_path / "n.h5")
    for L0, L1 in zip(net.layers, back.layers):
        np.testing.assert_array_equal(L0.ff_weight, L1.ff_weight)
        np.testing.assert_array_equal(L0.ff_delay_ms, L1.ff_delay_ms)
        assert L0.reset == L1.reset
    net2 = network_from_model(model_from_network(back))
    np.testing.assert_array_equal(net2.layers[0].rec_delay_ms, net.layers[0].rec_delay_ms)


def test_official_shd_layout_float16_times(tmp_path):
    f = write_mini_shd(tmp_path / "shd_mini.h5", [[0.01, 0.5, 1.25], [0.02]], [[0, 699, 3], [5]], [3, 19])
    ev = load_events(f)
    assert ev.n_units == 700 and ev.n_classes == 20 and len(ev) == 2
    assert ev.duration_s == pytest.approx(1.3)
    assert ev.times[2] == pytest.approx(1.25, abs=1e-3)


def _write_bad(tmp_path, name, mutate):
    net = random_network(0)
    f = tmp_path / f"{name}.h5"
    save_network(net, f)
    with h5py.File(f, "a") as h:
        mutate(h)
    return f


BAD_NETWORKS = {
    "format": (lambda h: h.attrs.__setitem__("format", "something.else"), "format attribute"),
    "missing": (lambda h: h.__delitem__("layers/0/ff_weight"), "missing dataset 'ff_weight'"),
    "nanweight": (lambda h: h["layers/1/ff_weight"].__setitem__((0, 0), np.nan), "NaN"),
    "negdelay": (lambda h: h["layers/0/ff_delay_ms"].__setitem__(0, -1.0), "ff_delay_ms must be >= 0"),
    "negtau": (lambda h: h["layers/2/tau_mem_ms"].__setitem__(0, -5.0), "tau_mem_ms must be > 0"),
    "shape": (lambda h: (h.__delitem__("layers/2/ff_weight"),
                         h.create_dataset("layers/2/ff_weight", data=np.ones((4, 3)))), "shape [4, 3]"),
    "countreadout": (lambda h: h.attrs.__setitem__("readout", "count"), "counts the spikes of a spiking 'lif'"),
}


@pytest.mark.parametrize("name", sorted(BAD_NETWORKS))
def test_bad_network_file_one_line_exit_2_nothing_written(tmp_path, name):
    mutate, msg = BAD_NETWORKS[name]
    f = _write_bad(tmp_path, name, mutate)
    evf = tmp_path / "ev.h5"
    save_events(random_events(0), evf)
    out = tmp_path / "run.h5"
    p = run_cli("simulate", f, "--data", evf, "--engine", "torch", "--out", out)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and str(f) in lines[0] and msg in lines[0], p.stderr
    assert not out.exists()
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".run.h5")]


def test_unit_index_out_of_range_and_missing_file(tmp_path):
    evf = tmp_path / "ev.h5"
    save_events(random_events(0), evf)
    with h5py.File(evf, "a") as h:
        h.attrs["n_units"] = 4  # units go up to 7
    netf = tmp_path / "net.h5"
    save_network(random_network(0), netf)
    p = run_cli("simulate", netf, "--data", evf, "--engine", "torch", "--out", tmp_path / "r.h5")
    assert p.returncode == 2 and "out of range" in p.stderr and str(evf) in p.stderr
    p = run_cli("simulate", tmp_path / "nope.h5", "--data", evf, "--engine", "torch", "--out", tmp_path / "r.h5")
    assert p.returncode == 2 and "no such file" in p.stderr
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5 at all")
    p = run_cli("simulate", tmp_path / "garbage.h5", "--data", evf, "--engine", "torch", "--out", tmp_path / "r.h5")
    assert p.returncode == 2 and "not a readable HDF5 file" in p.stderr
    assert not (tmp_path / "r.h5").exists()


def test_spikes_outside_duration_rejected(tmp_path):
    ev = random_events(0)
    ev.times[0] = ev.duration_s + 0.01
    with pytest.raises(Exception, match="at or after the duration"):
        ev.validate("x.h5")


def test_cuda_standalone_project_compiles(tmp_path):
    from eventsnn.bridge.engines.brian2 import cuda_toolchain_problem
    if why := cuda_toolchain_problem():
        pytest.skip(f"cuda_standalone cannot be compiled here: {why}")
    net = random_network(9, sizes=(4,))
    ev = random_events(9, n_samples=2)
    proj = simulate_brian2(net, ev, target="cuda_standalone", build_dir=tmp_path, compile_only=True)
    binaries = [p for p in proj.iterdir() if p.name == "main" and p.is_file()]
    assert binaries, f"no compiled binary in {proj}"
