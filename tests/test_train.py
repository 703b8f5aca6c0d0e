"""Issue: surrogate-gradient training, learnable delays, resume, export."""
import json

import numpy as np
import pytest
import torch

from eventsnn.bridge import load_network
from eventsnn.bridge.engines.brian2 import simulate_brian2
from eventsnn.bridge.engines.torch import simulate_torch
from eventsnn.data.datasets import make_polychrony
from eventsnn.data.events import Events, load_events, save_events
from eventsnn.model.layers import LIFLayer, delayed_current, spike_fn, surrogate_derivative
from eventsnn.training.loop import load_trained_model, train
from eventsnn.training.config import TrainConfig
from tests.conftest import run_cli


@pytest.mark.parametrize("kind,primitive", [
    ("fast-sigmoid", lambda x, s: x / (1 + s * np.abs(x))),
    ("atan", lambda x, s: np.arctan(np.pi / 2 * s * x) / np.pi),
])
def test_surrogate_is_derivative_of_its_smooth_primitive(kind, primitive):
    x = torch.linspace(-1, 1, 40, dtype=torch.float64)  # avoids the kink of |x| at 0
    slope, h = 5.0, 1e-6
    fd = (primitive(x.numpy() + h, slope) - primitive(x.numpy() - h, slope)) / (2 * h)
    np.testing.assert_allclose(surrogate_derivative(x, kind, slope).numpy(), fd, rtol=1e-6, atol=1e-9)


def test_multi_gaussian_integral_and_backward_uses_surrogate():
    x = torch.linspace(-20, 20, 200001, dtype=torch.float64)
    g = surrogate_derivative(x, "multi-gaussian", 2.0)
    # Yin et al. 2021: (1+h) - 2h = 1 - h of the step height, h = 0.15
    assert float(torch.trapezoid(g, x)) == pytest.approx(0.85, abs=1e-6)
    xs = torch.tensor([-0.3, 0.0, 0.2], dtype=torch.float64, requires_grad=True)
    out = spike_fn(xs, "atan", 3.0)
    assert out.tolist() == [0.0, 1.0, 1.0]
    out.sum().backward()
    np.testing.assert_allclose(xs.grad.numpy(), surrogate_derivative(xs.detach(), "atan", 3.0).numpy())


def test_delay_gradient_matches_finite_differences():
    """The readout layer is linear in the input, and interp delays are linear in the fractional
    delay: the autograd gradient wrt each delay must equal a central finite difference."""
    torch.manual_seed(0)
    x = (torch.rand(3, 30, 5, dtype=torch.float64) < 0.2).double()
    for shape in [(5,), (5, 4)]:
        layer = LIFLayer(5, 4, spiking=False, delays="axonal" if len(shape) == 1 else "synaptic",
                         max_delay_ms=6, dtype=torch.float64)
        with torch.no_grad():
            layer.ff_delay_ms.copy_(torch.rand(shape, dtype=torch.float64) * 5 + 0.1)
            layer.ff_delay_ms.copy_(torch.floor(layer.ff_delay_ms) + 0.3)  # away from integers
        target = torch.randn(3, 30, 4, dtype=torch.float64)

        def loss():
            return (layer(x, 1.0, delay_mode="interp") * target).sum()
        l0 = loss()
        l0.backward()
        g = layer.ff_delay_ms.grad.clone()
        fd = torch.zeros_like(g)
        h = 1e-4
        with torch.no_grad():
            flat = layer.ff_delay_ms.view(-1)
            for i in range(flat.numel()):
                flat[i] += h
                lp = loss()
                flat[i] -= 2 * h
                lm = loss()
                flat[i] += h
                fd.view(-1)[i] = (lp - lm) / (2 * h)
        torch.testing.assert_close(g, fd, rtol=1e-6, atol=1e-8)
        assert g.abs().sum() > 0


def test_surrogate_gradient_of_spiking_layer_matches_smoothed_finite_difference():
    """Replace the step by its smooth primitive (fast sigmoid) in a one-step problem: then the
    surrogate gradient is the exact gradient of that smoothed objective."""
    torch.manual_seed(1)
    w = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    x = torch.rand(6, dtype=torch.float64)
    slope = 4.0
    spike_fn(x @ w - 0.5, "fast-sigmoid", slope).sum().backward()

    def smooth(wv):
        z = x @ wv - 0.5
        return (z / (1 + slope * z.abs())).sum()
    fd = torch.autograd.functional.jacobian(smooth, w.detach())
    torch.testing.assert_close(w.grad, fd)


@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
def test_interp_with_integer_delays_equals_round(kind):
    torch.manual_seed(2)
    x = (torch.rand(2, 25, 6, dtype=torch.float64) < 0.3).double()
    shape = (6,) if kind == "axonal" else (6, 5)
    d = torch.randint(0, 7, shape).double()
    w = torch.randn(6, 5, dtype=torch.float64)
    torch.testing.assert_close(delayed_current(x, w, d, "interp"), delayed_current(x, w, d, "round"), rtol=0, atol=0)


@pytest.mark.parametrize("kernels", ["numba", "torch"])
@pytest.mark.parametrize("mode", ["interp", "round"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_synaptic_delay_taps_equal_the_loop_values_and_gradients(mode, dtype, kernels, monkeypatch):
    """The taps formulation (cost independent of the maximum delay) equals the per-delay loop, gradients too,
    with the CPU's numba kernels and with the torch path CUDA takes."""
    from eventsnn.model import cpu_backend
    monkeypatch.setattr(cpu_backend, "ENABLED", kernels == "numba")
    torch.manual_seed(3)
    B, T, n_in, n_out = 3, 60, 12, 7
    x = ((torch.rand(B, T, n_in) < 0.1) * torch.randint(1, 3, (B, T, n_in))).to(dtype).requires_grad_()
    w = torch.randn(n_in, n_out, dtype=dtype, requires_grad=True)
    d = (torch.rand(n_in, n_out, dtype=dtype) * 80).requires_grad_()  # some delays past the end of the sample
    d.data[0, :3] = torch.tensor([0.0, 5.0, 59.5])  # integer and half-step delays
    ref = delayed_current(x, w, d, mode, "loop")
    new = delayed_current(x, w, d, mode, "taps")
    tol = dict(rtol=0, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new, ref, **tol)
    g = torch.randn_like(ref)
    wrt = (x, w, d) if mode == "interp" else (x, w)
    for a, b in zip(torch.autograd.grad(new, wrt, g), torch.autograd.grad(ref, wrt, g)):
        torch.testing.assert_close(a, b, **tol)


def _axonal_kernel_equals_the_gather(path, x, w, d, monkeypatch):
    """Interpolated axonal delays with the CPU kernels on (``path``, a class of :mod:`eventsnn.model.delays`, must
    run) and off (the dense gather + matmul, the formulation CUDA uses): the values and the gradients for the
    input, the weights and the delays are equal. Returns the list that records ``path``'s calls."""
    from eventsnn.model import cpu_backend
    dtype = x.dtype
    g = torch.randn(*x.shape[:2], w.shape[1], dtype=dtype)
    res, calls = {}, []
    monkeypatch.setattr(path, "apply", lambda *a, f=path.apply: calls.append(1) or f(*a))
    for kernels in (True, False):
        monkeypatch.setattr(cpu_backend, "ENABLED", kernels)
        calls.clear()
        out = delayed_current(x, w, d, "interp")
        res[kernels] = (out, *torch.autograd.grad(out, (x, w, d), g))
        assert bool(calls) == kernels  # the kernel ran exactly when the CPU kernels are on
    tol = dict(rtol=0, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    assert res[True][0].abs().sum() > 0 and res[True][3].abs().sum() > 0
    for a, b in zip(res[True], res[False]):
        torch.testing.assert_close(a, b, **tol)
    return calls


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_axonal_delays_from_the_spikes_equal_the_dense_gather(dtype, monkeypatch):
    """Interpolated axonal delays on the CPU are computed from the input's nonzeros (two shifted copies of each
    spike, no dense delayed input); values and the gradients for the input, the weights and the delays equal
    the dense gather + matmul formulation (the one CUDA uses), including delays past the end of the sample."""
    from eventsnn.model import delays
    torch.manual_seed(5)
    B, T, n_in, n_out = 3, 50, 20, 7
    x = ((torch.rand(B, T, n_in) < 0.04) * torch.randint(1, 3, (B, T, n_in))).to(dtype).requires_grad_()
    w = torch.randn(n_in, n_out, dtype=dtype, requires_grad=True)
    d = (torch.rand(n_in, dtype=dtype) * 70).requires_grad_()
    d.data[:4] = torch.tensor([0.0, 3.0, 49.5, 49.0])  # integer, half-step and last-step delays
    _axonal_kernel_equals_the_gather(delays._AxonalTaps, x, w, d, monkeypatch)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("density", [0.3, 1.0])
def test_axonal_delays_into_a_narrow_layer_equal_the_dense_gather(dtype, density, monkeypatch):
    """A dense input (a hidden layer firing in many steps, or a real-valued filtered input) into a narrow layer
    (a readout) goes through one fused kernel on the CPU: values and the gradients for the input, the weights and
    the delays equal the dense gather + matmul formulation, including delays of zero, half a step, the last step
    and past the end of the sample; the gradients are the same bits at 1 and 2 threads."""
    from eventsnn.model import cpu_backend, delays
    torch.manual_seed(6)
    B, T, n_in, n_out = 3, 50, 20, 3
    x = ((torch.rand(B, T, n_in) < density) * torch.rand(B, T, n_in)).to(dtype).requires_grad_()
    w = torch.randn(n_in, n_out, dtype=dtype, requires_grad=True)
    d = (torch.rand(n_in, dtype=dtype) * 70).requires_grad_()
    d.data[:5] = torch.tensor([0.0, 3.5, 49.5, 49.0, 48.25])
    calls = _axonal_kernel_equals_the_gather(delays._AxonalDense, x, w, d, monkeypatch)
    g = torch.randn(B, T, n_out, dtype=dtype)
    monkeypatch.setattr(cpu_backend, "ENABLED", True)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.autograd.grad(delayed_current(x, w, d, "interp"), (x, w, d), g)
        torch.set_num_threads(2)
        two = torch.autograd.grad(delayed_current(x, w, d, "interp"), (x, w, d), g)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    # a wide layer, or a dense input into more than a few neurons, keeps the gather + matmul (BLAS is faster)
    for n_post, dense, fused in ((delays.FUSED_AXONAL_MAX_POST + 1, False, False), (10, True, False),
                                 (10, False, True)):
        calls.clear()
        xx = torch.ones_like(x) if dense else (torch.rand(B, T, n_in) < 0.1).to(dtype)
        delayed_current(xx, torch.randn(n_in, n_post, dtype=dtype), d, "interp")
        assert bool(calls) == fused, (n_post, dense)


def test_rounded_axonal_delays_from_the_spikes_equal_the_gather_to_the_bit():
    """Evaluation at the training step (rounded axonal delays, no gradient) moves each input spike by its
    neuron's delay instead of building the delayed raster: the currents are equal to the bit (every sum in the
    same order), with delays of zero, half a step (rounds up) and past the end of the sample."""
    from eventsnn.model import delays
    torch.manual_seed(8)
    B, T, n_in, n_out = 4, 80, 30, 9
    x = ((torch.rand(B, T, n_in) < 0.04) * torch.randint(1, 3, (B, T, n_in))).double()
    w = torch.randn(n_in, n_out, dtype=torch.float64)
    d = torch.rand(n_in, dtype=torch.float64) * 90
    d[:3] = torch.tensor([0.0, 2.5, 79.0])
    calls = []
    orig = delays._delayed_rows_matmul
    delays._delayed_rows_matmul = lambda *a: calls.append(1) or orig(*a)
    try:
        fast = delayed_current(x, w, d, "round")
    finally:
        delays._delayed_rows_matmul = orig
    assert calls, "the spike path did not run"
    lo = torch.floor(d.clamp(max=T) + 0.5).long()
    ref = delays._gather_delayed(x, lo) @ w
    assert fast.abs().sum() > 0
    assert torch.equal(fast, delays.input_matmul(delays._gather_delayed(x, lo), w))
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shift", [0, 1, 7, 60])
def test_recurrent_weight_gradient_from_spikes_equals_the_matmul(shift, monkeypatch):
    """The recurrent weights' gradient sum_t s[t - d]^T g[t] computed from the spikes' nonzeros (one partial sum
    per thread) equals the dense matmul, for delays 0, 1, 7 and one past the sample."""
    from eventsnn.model import cpu_backend
    from eventsnn.model.delays import shifted_weight_grad
    torch.manual_seed(6)
    s = (torch.rand(5, 60, 30) < 0.03).double()
    g = torch.randn(5, 60, 30, dtype=torch.float64)
    sparse = shifted_weight_grad(s, g, shift)
    monkeypatch.setattr(cpu_backend, "ENABLED", False)
    dense = shifted_weight_grad(s, g, shift)
    ref = sum(s[:, t - shift].t() @ g[:, t] for t in range(shift, 60)) if shift < 60 else torch.zeros(30, 30)
    torch.testing.assert_close(sparse, ref.double(), rtol=0, atol=1e-12)
    torch.testing.assert_close(dense, ref.double(), rtol=0, atol=1e-12)


def test_synaptic_delays_choose_the_taps_when_many_delays_are_distinct():
    """A layer with delays up to 200 steps trains through the taps (no per-delay matmuls); identical results."""
    torch.manual_seed(4)
    x = (torch.rand(2, 300, 40) < 0.01).float()
    w = torch.randn(40, 30)
    d = torch.rand(40, 30) * 200
    assert delayed_current.__module__ == "eventsnn.model.delays"
    from eventsnn.model.delays import _cheaper_method
    with torch.enable_grad():
        assert _cheaper_method(x, torch.floor(d).long(), 2) == "taps"
        # one delay for all synapses and an input that needs its gradient: one matmul beats the taps
        assert _cheaper_method(x.requires_grad_(), torch.zeros(40, 30, dtype=torch.long), 1) == "loop"
    x = x.detach()
    torch.testing.assert_close(delayed_current(x, w, d, "interp"), delayed_current(x, w, d, "interp", "loop"))
    with pytest.raises(ValueError, match="synaptic-delay method"):
        delayed_current(x, w, d, "interp", "fft")


@pytest.fixture(scope="module")
def poly_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("poly")
    tr, te = d / "train.h5", d / "test.h5"
    save_events(make_polychrony(samples=1000, seed=1), tr)
    save_events(make_polychrony(samples=300, seed=2), te)
    return tr, te


@pytest.mark.slow
def test_polychrony_with_axonal_delays_reaches_90_percent(poly_files, tmp_path):
    torch.set_num_threads(2)
    tr, te = poly_files
    p = run_cli("train", "--data", tr, "--test-data", te, "--delays", "axonal", "--out", tmp_path / "run", "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["test_acc"] >= 0.90, s
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == s["epochs_run"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["delays"] == "axonal"


def _small_cfg(tr, **kw):
    base = dict(data=str(tr), delays="axonal", epochs=4, batch_size=64, hidden=[16], seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_equals_uninterrupted(poly_files, tmp_path):
    tr, _ = poly_files
    full = train(_small_cfg(tr), tmp_path / "full", progress=False)
    train(_small_cfg(tr), tmp_path / "part", progress=False, max_epochs_this_call=2)
    part_lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert len(part_lines) == 2
    resumed = train(TrainConfig(), tmp_path / "part", resume=True, progress=False)
    assert resumed["best_epoch"] == full["best_epoch"] and resumed["val_acc"] == full["val_acc"]
    ma = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(l) for l in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(ma, mb, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    # the curves of every epoch are drawn in each run directory (a PNG, redrawn after the resumed epochs)
    for run in ("full", "part"):
        png = (tmp_path / run / "curves.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    sa = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    sb = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)["model"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("extra", [{}, {"delays": "synaptic", "recurrent": True, "learn_taus": True,
                                         "readout": "softmax-sum", "reset": "subtract"},
                                   {"readout": "count", "loss": "rate", "epochs": 40, "hidden": [64]}])
def test_export_roundtrip_torch_and_brian2(poly_files, tmp_path, extra):
    tr, te = poly_files
    summary = train(_small_cfg(tr, **{"epochs": 3, **extra}), tmp_path / "run", progress=False)
    if extra.get("loss") == "rate":  # the paper's readout and loss learn (4 classes: chance 0.25; measured 0.90)
        assert summary["val_acc"] >= 0.7, summary
    p = run_cli("export", tmp_path / "run", "--out", tmp_path / "net.h5", "--json")
    assert p.returncode == 0, p.stderr
    net = load_network(tmp_path / "net.h5")
    assert net.layers[0].ff_delay_learned and net.layers[0].delay_kind == extra.get("delays", "axonal")
    assert (net.layers[0].rec_weight is not None) == bool(extra.get("recurrent"))
    if extra.get("learn_taus"):
        assert np.ptp(net.layers[0].tau_mem_ms) > 0  # learned per neuron
    delays = net.layers[0].ff_delay_ms
    assert np.any(np.abs(delays - np.round(delays)) > 1e-3)  # real-valued delays in ms
    model = load_trained_model(tmp_path / "run", dtype=torch.float64)
    ev = load_events(te).subset(np.arange(60))
    from eventsnn.model.layers import dense_input
    with torch.no_grad():
        scores, _, _ = model(dense_input(ev, 1.0, dtype=torch.float64), delay_mode="round")
    trained_pred = scores.argmax(1).numpy()
    rt = simulate_torch(net, ev)
    np.testing.assert_array_equal(rt.prediction, trained_pred)
    rb = simulate_brian2(net, ev, target="numpy", build_dir=tmp_path / "b2")
    np.testing.assert_array_equal(rb.prediction, trained_pred)
    for La, Lb in zip(rt.layers, rb.layers):
        np.testing.assert_array_equal(La.step, Lb.step)


def test_yaml_config_is_read_and_flags_override_it(tmp_path, poly_files):
    tr, _ = poly_files
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data: {tr}\nepochs: 1\nhidden: [8]\ndelays: synaptic\nsurrogate: atan\nseed: 5\n")
    p = run_cli("train", "--config", cfg, "--seed", "6", "--out", tmp_path / "run", "--json")
    assert p.returncode == 0, p.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["epochs"], saved["hidden"], saved["delays"], saved["surrogate"], saved["seed"]) == \
        (1, [8], "synaptic", "atan", 6)
    for name, text, msg in [("bad.yaml", "epochs: [1\n", "cannot parse config"),
                            ("list.yml", "- 1\n- 2\n", "must hold a mapping"),
                            ("cfg.ini", "epochs=1\n", "unknown config format '.ini'")]:
        (tmp_path / name).write_text(text)
        p = run_cli("train", "--config", tmp_path / name, "--out", tmp_path / "r_bad")
        assert p.returncode == 2 and msg in p.stderr and name in p.stderr and len(p.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "r_bad").exists()


def test_train_bad_inputs(tmp_path, poly_files):
    tr, _ = poly_files
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('data = "x"\nlearning_rate = 3\n')
    p = run_cli("train", "--config", cfg, "--out", tmp_path / "r1")
    assert p.returncode == 2 and "unknown config key" in p.stderr and "learning_rate" in p.stderr
    assert not (tmp_path / "r1").exists()
    empty = tmp_path / "empty.h5"
    import h5py
    with h5py.File(empty, "w") as h:
        h.create_dataset("spikes/times", (0,), dtype=h5py.vlen_dtype(np.float64))
        h.create_dataset("spikes/units", (0,), dtype=h5py.vlen_dtype(np.int32))
        h.create_dataset("labels", data=np.zeros(0, np.int64))
    p = run_cli("train", "--data", empty, "--out", tmp_path / "r2")
    assert p.returncode == 2 and "contains no samples" in p.stderr
    bad = tmp_path / "badlabels.h5"
    save_events(Events.from_lists([[0.001]], [[0]], [0], 1, 0.01, 2), bad)
    with h5py.File(bad, "a") as h:
        h["labels"][0] = 7
    p = run_cli("train", "--data", bad, "--out", tmp_path / "r3")
    assert p.returncode == 2 and "label out of range" in p.stderr
    # corrupt checkpoint: clear error, nothing overwritten
    run = tmp_path / "r4"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"garbage")
    (run / "metrics.jsonl").write_text("keep me\n")
    p = run_cli("train", "--resume", run)
    assert p.returncode == 2 and "corrupt checkpoint" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert (run / "metrics.jsonl").read_text() == "keep me\n"
    p = run_cli("export", run, "--out", tmp_path / "n.h5")
    assert p.returncode == 2 and not (tmp_path / "n.h5").exists()
    # an existing run is not silently overwritten
    train(_small_cfg(tr, epochs=1), tmp_path / "r5", progress=False)
    p = run_cli("train", "--data", tr, "--out", tmp_path / "r5")
    assert p.returncode == 2 and "--resume" in p.stderr
