"""Issue 6: the fused LIF scan (hand-written backward, Triton kernels) against the pure-torch reference."""
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eventsnn.model.layers import SNN, LIFLayer

ROOT = Path(__file__).resolve().parents[1]


def make_layer(spiking=True, reset="zero", rec="none", refractory=0.0, learn_taus=False, dtype=torch.float64,
               n_in=5, size=7, seed=1):
    return LIFLayer(n_in, size, spiking=spiking, reset=reset, tau_mem_ms=np.linspace(5, 20, size),
                    tau_syn_ms=np.r_[5.0, np.linspace(2, 20, size - 1)],  # neuron 0: equal-tau limit
                    refractory_ms=refractory, recurrent=rec != "none",
                    rec_delays="none" if rec in ("none", "instant") else rec, max_delay_ms=4.0,
                    learn_taus=learn_taus, weight_scale=3.0, dtype=dtype,
                    generator=torch.Generator().manual_seed(seed))


def scan_with_grads(layer, F, backend, surrogate="fast-sigmoid"):
    """Output of the scan and the gradients of a random projection of it w.r.t. F and every parameter."""
    F = F.clone().requires_grad_(True)
    out = layer.scan(F, 1.0, surrogate, 5.0, backend)
    proj = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(3))
    (out * proj).sum().backward()
    grads = {"F": F.grad}
    for name, p in layer.named_parameters():
        if p.grad is not None:
            grads[name] = p.grad.clone()
            p.grad = None
    return out.detach(), grads


CASES = [c for c in itertools.product([True, False], ["zero", "subtract"], ["none", "instant", "synaptic"],
                                      [0.0, 3.0], [False, True])
         if c[0] or (c[1] == "zero" and c[2] == "none" and c[3] == 0.0)]


@pytest.mark.parametrize("per_neuron", [True, False])
def test_evaluation_scan_with_many_recurrent_delays_equals_the_reference(per_neuron):
    """Evaluation (no gradient) with recurrent delays, one per presynaptic neuron or per synapse, most of them
    distinct (a term per delay, each with few rows): the CPU kernel, which stores no backward state and looks
    only at each term's rows, gives the reference's spikes to the bit."""
    torch.manual_seed(2)
    layer = make_layer(True, "zero", "synaptic", 2.0, size=12)
    shape = (12,) if per_neuron else (12, 12)
    layer.rec_delay_ms = torch.rand(shape, dtype=torch.float64) * 40
    F = torch.rand(2, 120, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 0.5
    with torch.no_grad():
        assert len(layer._rec_terms(1.0, 120)) > 8
        ref = layer.scan(F, 1.0, None, 5.0, "autograd")
        out = layer.scan(F, 1.0, None, 5.0, "fused")
    assert 20 < out.sum() < out.numel() / 2
    assert torch.equal(out, ref)


@pytest.mark.parametrize("kernels", ["numba", "torch"])
@pytest.mark.parametrize("spiking,reset,rec,refractory,learn_taus", CASES)
def test_fused_scan_equals_autograd_reference(spiking, reset, rec, refractory, learn_taus, kernels, monkeypatch):
    """Both fused paths: the CPU's numba kernels and the torch loop (what CUDA runs where Triton does not)."""
    from eventsnn.model import cpu_backend
    monkeypatch.setattr(cpu_backend, "ENABLED", kernels == "numba")
    layer = make_layer(spiking, reset, rec, refractory, learn_taus)
    F = torch.rand(3, 60, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.6
    out_ref, g_ref = scan_with_grads(layer, F, "autograd")
    out, g = scan_with_grads(layer, F, "fused")
    assert torch.equal(out, out_ref)  # same arithmetic in the same order: bit-identical
    if spiking:
        assert 20 < out.sum() < out.numel() / 2  # the case exercises spikes and silence
    assert g.keys() == g_ref.keys()
    expected = {"F"} | ({"tau_mem_ms", "tau_syn_ms"} if learn_taus else set())
    assert expected | ({"rec_weight"} if rec != "none" else set()) == set(g)
    for name in g:
        np.testing.assert_allclose(g[name].numpy(), g_ref[name].numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("surrogate", ["fast-sigmoid", "atan", "multi-gaussian"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rec", ["none", "instant"])
def test_numba_scan_surrogates_and_dtypes_match_reference(surrogate, dtype, rec):
    """The CPU kernels evaluate each surrogate themselves: gradients equal the torch reference's."""
    layer = make_layer(True, "zero", rec, 0.0, False, dtype=dtype)
    F = (torch.rand(4, 50, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 0.6).to(dtype)
    out_ref, g_ref = scan_with_grads(layer, F, "autograd", surrogate)
    out, g = scan_with_grads(layer, F, "fused", surrogate)
    assert torch.equal(out, out_ref) and out.sum() > 10
    bound = 1e-12 if dtype == torch.float64 else 1e-5  # worst error relative to the largest gradient entry
    for name in g_ref:
        assert ((g[name] - g_ref[name]).abs().max() / g_ref[name].abs().max()).item() < bound, name


def test_sparse_input_matmul_equals_dense_values_and_gradients():
    """Sparse inputs (spikes, delayed spikes) add weight rows instead of multiplying zeros: same result."""
    from eventsnn.model import delays
    torch.manual_seed(6)
    x = (torch.rand(3, 80, 30, dtype=torch.float64) < 0.03).double() * 1.5
    x.requires_grad_()
    w = torch.randn(30, 9, dtype=torch.float64, requires_grad=True)
    dense = x @ w
    sparse = delays.input_matmul(x, w)
    assert sparse.grad_fn is not None and type(sparse.grad_fn).__name__ == "_SparseInputMatmulBackward"
    torch.testing.assert_close(sparse, dense, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(dense)
    for a, b in zip(torch.autograd.grad(sparse, (x, w), g), torch.autograd.grad(dense, (x, w), g)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    full = torch.ones(2, 5, 30, dtype=torch.float64)  # dense input: the plain matmul
    assert delays.input_matmul(full, w.detach()).grad_fn is None



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spike_entries_and_narrow_input_gradient(dtype):
    """The spike list the sparse paths use is torch.nonzero's, in its order (None when too dense); a readout's
    input gradient of 2-4 classes rounds every product and sum in a fixed order (the same bits on any CPU) and
    a wider one is BLAS's."""
    from eventsnn.model import delays
    g = torch.Generator().manual_seed(8)
    x = ((torch.rand(4, 300, 17, generator=g) < 0.02) * torch.rand(4, 300, 17, generator=g)).to(dtype)
    b, t, i, vals = delays._sparse_cpu_entries(x, x)
    ref = x.nonzero(as_tuple=True)
    assert len(b) == int(torch.count_nonzero(x)) > 100
    assert all(torch.equal(p, q) for p, q in zip((b, t, i), ref)) and torch.equal(vals, x[ref])
    assert delays._sparse_cpu_entries(torch.ones(2, 10, 3, dtype=dtype), x) is None
    for k in (2, 3, 4, 9):
        grad = torch.randn(4, 300, k, generator=g, dtype=dtype)
        w = torch.randn(17, k, generator=g, dtype=dtype)
        out = delays.grad_times_weight_t(grad, w)
        if k > delays.NARROW:
            assert torch.equal(out, grad @ w.t())
            continue
        expect = grad[..., 0:1] * w[:, 0]  # c = 0, 1, ...: one rounding per product and per sum
        for c in range(1, k):
            expect = expect + grad[..., c:c + 1] * w[:, c]
        assert torch.equal(out, expect), k
        torch.testing.assert_close(out, (grad.double() @ w.double().t()).to(dtype))

def test_fused_is_default_and_network_gradients_match():
    g = torch.Generator().manual_seed(4)
    layers = [LIFLayer(6, 8, delays="axonal", max_delay_ms=5.0, recurrent=True, weight_scale=4.0,
                       dtype=torch.float64, generator=g),
              LIFLayer(8, 3, spiking=False, dtype=torch.float64, generator=g)]
    model = SNN(layers, 1.0, "softmax-sum")
    layers[0].set_delays_trainable(True)
    x = (torch.rand(4, 50, 6, generator=g) < 0.2).double()
    assert model.scan_backend == "fused"
    grads = {}
    for backend in ("fused", "autograd"):
        scores, _, _ = model(x, delay_mode="interp", surrogate="atan", slope=4.0, backend=backend)
        model.zero_grad()
        scores.logsumexp(1).sum().backward()
        grads[backend] = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert "layers.0.ff_delay_ms" in grads["fused"]
    for n, gr in grads["fused"].items():
        np.testing.assert_allclose(gr.numpy(), grads["autograd"][n].numpy(), rtol=1e-9, atol=1e-12, err_msg=n)


def test_unknown_backend_and_missing_surrogate_are_errors():
    layer = make_layer()
    F = torch.rand(1, 5, 7, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown scan backend 'cuda'"):
        layer.scan(F, 1.0, "atan", 5.0, "cuda")
    Fg = F.clone().requires_grad_(True)
    with torch.enable_grad():
        out = layer.scan(Fg, 1.0, None, 5.0, "fused")
        with pytest.raises(RuntimeError, match="needs a surrogate gradient"):
            out.sum().backward()


TRITON_CHECK = r"""
import itertools, sys, torch
from eventsnn.model import scan
from tests.test_scan import make_layer, scan_with_grads
assert scan._triton_applies(torch.zeros(1, 1, 1), True, torch.zeros(1, dtype=torch.long), ())
worst = {}
for dtype, spiking, reset, taus, surr in itertools.product(
        [torch.float64, torch.float32], [True, False], ["zero", "subtract"], [False, True],
        ["fast-sigmoid", "atan", "multi-gaussian"]):
    if not spiking and (reset == "subtract" or surr != "fast-sigmoid"):
        continue
    layer = make_layer(spiking, reset, learn_taus=taus, dtype=dtype)
    F = (torch.rand(3, 40, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.6).to(dtype)
    ref_out, ref = scan_with_grads(layer, F, "autograd", surr)
    out, got = scan_with_grads(layer, F, "fused", surr)
    assert torch.equal(out, ref_out), (dtype, spiking, reset)
    for n in ref:
        err = ((got[n] - ref[n]).abs().max() / ref[n].abs().max()).item()
        worst[dtype] = max(worst.get(dtype, 0.0), err)
print(worst)
assert worst[torch.float64] < 1e-12 and worst[torch.float32] < 1e-5, worst
"""


def test_triton_kernels_match_reference_in_interpreter():
    """The Triton kernels, run by Triton's CPU interpreter, against the autograd reference."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", TRITON_CHECK], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


TRITON_COMPILE = r"""
import sys, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from eventsnn.model import scan_triton as st
target = GPUTarget("cuda", 90, 32)   # an H100, compiled ahead of time: no GPU needed
for dt in ("fp32", "fp64"):
    p = "*" + dt
    fwd = dict(zip("F OUT VPRE IH A Bp K TH".split(), [p] * 8), T="i32", N="i32", SPIKING="constexpr",
               RESET_ZERO="constexpr", KEEP_I="constexpr", BLOCK="constexpr")
    bwd = dict(zip("G OUT VPRE DF LVP A Bp K TH P".split(), [p] * 10), T="i32", N="i32", SPIKING="constexpr",
               RESET_ZERO="constexpr", SURR="constexpr", BLOCK="constexpr")
    jobs = [(st._fwd_kernel, fwd, dict(SPIKING=sp, RESET_ZERO=rz, KEEP_I=True, BLOCK=128))
            for sp in (True, False) for rz in (True, False)]
    jobs += [(st._bwd_kernel, bwd, dict(SPIKING=True, RESET_ZERO=False, SURR=s, BLOCK=128)) for s in (0, 1, 2)]
    for fn, sig, cx in jobs:
        k = triton.compile(ASTSource(fn, sig, constexprs=cx), target=target)
        assert len(k.asm["cubin"]) > 1000 and ".target sm_90" in k.asm["ptx"], (dt, cx)
print("ok")
"""


def test_triton_kernels_compile_for_h100(tmp_path):
    """The kernels go through Triton's real GPU compiler (PTX and cubin for sm_90), without a GPU."""
    pytest.importorskip("triton.backends.nvidia")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TRITON_CACHE_DIR=str(tmp_path / "triton_cache"))
    env.pop("TRITON_INTERPRET", None)
    r = subprocess.run([sys.executable, "-c", TRITON_COMPILE], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("spiking,reset", [(True, "zero"), (True, "subtract"), (False, "zero")])
def test_triton_on_gpu_matches_cpu_reference(spiking, reset):
    from eventsnn.model import scan_triton
    assert scan_triton.available()
    layer = make_layer(spiking, reset, learn_taus=True, n_in=5, size=300, dtype=torch.float64)
    F = torch.rand(8, 200, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.6
    ref_out, ref = scan_with_grads(layer, F, "autograd")
    out, got = scan_with_grads(layer.cuda(), F.cuda(), "fused")
    # float64 on the GPU: FMA contraction may flip a spike sitting exactly at threshold, nothing more
    assert (out.cpu() != ref_out).float().mean() < 1e-4
    for n in ref:
        rel = ((got[n].cpu() - ref[n]).abs().max() / ref[n].abs().max()).item()
        assert rel < 1e-6, (n, rel)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_float32_training_step_on_gpu_close_to_cpu():
    g = torch.Generator().manual_seed(2)
    model = SNN([LIFLayer(20, 64, delays="axonal", max_delay_ms=10.0, weight_scale=6.0, generator=g),
                 LIFLayer(64, 64, recurrent=True, weight_scale=4.0, generator=g),
                 LIFLayer(64, 5, spiking=False, generator=g)], 1.0, "max")
    x = (torch.rand(16, 100, 20, generator=g) < 0.1).float()
    grads = []
    for dev in ("cpu", "cuda"):
        m = model.to(dev)
        m.zero_grad()
        scores, _, _ = m(x.to(dev), delay_mode="interp", surrogate="fast-sigmoid", slope=10.0)
        scores.logsumexp(1).sum().backward()
        grads.append(torch.cat([p.grad.flatten().cpu() for p in m.parameters()]))
    assert ((grads[0] - grads[1]).norm() / grads[0].norm()).item() < 1e-3
