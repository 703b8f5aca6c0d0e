"""The event engine's default path (layer by layer, shared decay factors, bound before root, threads) against
the one-queue reference it replaced, on random delayed networks; and where its compiled code is cached."""
import numpy as np
import pytest

from eventsnn.bridge.engines.event import simulate_event
from eventsnn.bridge.network import Layer, Network
from eventsnn.util.errors import EventsnnError
from tests.conftest import random_events, random_network


def shared_taus(net, sparse=0.0, seed=0):
    """The same network with one tau_mem / tau_syn per layer (the vectorised path), some weights set to zero."""
    rng = np.random.default_rng(seed)
    for L in net.layers:
        L.tau_mem_ms = np.full(L.size, float(L.tau_mem_ms[1]))
        L.tau_syn_ms = np.full(L.size, float(L.tau_syn_ms[1]))
        if sparse:
            L.ff_weight = np.where(rng.random(L.ff_weight.shape) < sparse, 0.0, L.ff_weight / (1 - sparse))
            if L.rec_weight is not None:
                L.rec_weight = np.where(rng.random(L.rec_weight.shape) < sparse, 0.0, L.rec_weight / (1 - sparse))
    return net.validate()


def assert_same_run(a, b, tol_ms):
    """Same spikes (sample, unit, count) in every layer, times within tol_ms, traces within tol relative."""
    for La, Lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(La.sample, Lb.sample)
        np.testing.assert_array_equal(La.unit, Lb.unit)
        np.testing.assert_allclose(La.time_ms, Lb.time_ms, rtol=0, atol=tol_ms)
    assert np.abs(a.trace - b.trace).max() <= max(tol_ms, 1e-12) * max(1.0, np.abs(a.trace).max())
    np.testing.assert_array_equal(a.prediction, b.prediction)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("variant", ["per-neuron taus", "shared taus", "shared taus, sparse"])
def test_layers_equal_the_reference_on_random_delayed_networks(seed, variant):
    """Axonal, synaptic and recurrent delays, refractoriness, both resets: every spike the reference has, at the
    same time to 1e-9 ms, and the same readout trace."""
    net = random_network(seed, max_delay=5.0)
    if variant != "per-neuron taus":
        net = shared_taus(net, sparse=0.3 if "sparse" in variant else 0.0, seed=seed)
    ev = random_events(seed, n_samples=3)
    ref = simulate_event(net, ev, method="reference")
    fast = simulate_event(net, ev)
    assert all(len(L.time_ms) > 20 for L in ref.layers), "test network too quiet to be a test"
    assert_same_run(ref, fast, 1e-9)


def test_count_readout_and_zero_delay_recurrence_equal_the_reference():
    net = random_network(7, max_delay=3.0)
    L0 = net.layers[0]
    L0.rec_delay_ms = None  # recurrent spikes delivered at once
    net = shared_taus(net)
    last = net.layers[-1]
    net.layers[-1] = Layer("lif", last.size, last.tau_mem_ms, last.tau_syn_ms, last.ff_weight * 3,
                           threshold=np.ones(last.size), refractory_ms=np.full(last.size, 1.0))
    net.readout = "count"
    net.validate()
    ev = random_events(7, n_samples=3)
    ref = simulate_event(net, ev, method="reference")
    fast = simulate_event(net, ev, workers=2)
    assert ref.trace[:, -1].sum() > 0
    assert_same_run(ref, fast, 1e-9)


def test_first_layer_and_readout_are_bit_for_bit_the_reference():
    """A feed-forward network with shared time constants and axonal delays (the shape of a trained SHD model):
    the first layer's spikes and the readout trace are the same floats, one thread or two."""
    rng = np.random.default_rng(3)
    n_in, H = 40, 30
    net = Network(1.0, n_in, [
        Layer("lif", H, np.full(H, 20.0), np.full(H, 5.0), rng.normal(0.15, 0.3, (n_in, H)),
              threshold=np.ones(H), refractory_ms=np.full(H, 1.0), ff_delay_ms=rng.uniform(0, 10, n_in)),
        Layer("li", 4, np.full(4, 20.0), np.full(4, 5.0), rng.normal(0, 0.5, (H, 4)))], "max").validate()
    ev = random_events(3, n_samples=4, n_units=n_in, duration_s=0.1, spikes=400, n_classes=4)
    ref = simulate_event(net, ev, method="reference")
    assert len(ref.layers[0].time_ms) > 100
    for workers in (1, 2):
        fast = simulate_event(net, ev, workers=workers)
        np.testing.assert_array_equal(ref.layers[0].unit, fast.layers[0].unit)
        np.testing.assert_array_equal(ref.layers[0].time_ms, fast.layers[0].time_ms)
        np.testing.assert_array_equal(ref.trace, fast.trace)


@pytest.mark.parametrize("delays", [False, True])
def test_inputs_arriving_together_are_bit_for_bit_the_reference(delays):
    """Inputs binned to a grid (prepared speech data: every spike at a bin centre; SHD's float16 times) arrive in
    bunches at the same instant; the first layer looks for crossings once per bunch, not once per arrival, with
    the same spikes and trace as the reference."""
    rng = np.random.default_rng(5)
    n_in, H = 60, 40
    net = Network(14.0, n_in, [
        Layer("lif", H, np.full(H, 40.0), np.full(H, 10.0), rng.normal(0.08, 0.25, (n_in, H)),
              threshold=np.ones(H), refractory_ms=np.full(H, 14.0),
              ff_delay_ms=rng.uniform(0, 50, n_in) if delays else None),
        Layer("lif", H, np.full(H, 40.0), np.full(H, 10.0), rng.normal(0.3, 0.4, (H, H)), threshold=np.ones(H)),
        Layer("li", 5, np.full(5, 40.0), np.full(5, 10.0), rng.normal(0, 0.5, (H, 5)))], "max").validate()
    ev = random_events(5, n_samples=4, n_units=n_in, duration_s=0.7, spikes=900, n_classes=5)
    ev = ev.replace(times=(np.floor(ev.times / 0.014) + 0.5) * 0.014)  # bin centres, 50 bins
    assert len(np.unique(ev.times)) <= 50
    ref = simulate_event(net, ev, method="reference")
    fast = simulate_event(net, ev)
    assert len(ref.layers[0].time_ms) > 100 and len(ref.layers[1].time_ms) > 100
    np.testing.assert_array_equal(ref.layers[0].unit, fast.layers[0].unit)
    np.testing.assert_array_equal(ref.layers[0].time_ms, fast.layers[0].time_ms)
    assert_same_run(ref, fast, 1e-9)


@pytest.mark.parametrize("dkind", [0, 1, 2])
def test_arrivals_in_queue_order_with_ties(dkind):
    """A layer's feed-forward arrivals come out in the queue's order, (time, source, target), whether they need
    sorting (shuffled, delayed) or are already in order (a layer's own spikes without delays), with many ties."""
    from eventsnn.bridge.engines.event_layers import _arrivals
    rng = np.random.default_rng(dkind)
    N, n = 7, 400
    t = rng.integers(0, 30, n) * 0.5                       # a grid: many spikes at the same time
    u = rng.integers(0, 11, n)
    d = (rng.integers(0, 4, 11 * N) if dkind == 2 else rng.integers(0, 4, 11)) * 0.5 if dkind else np.zeros(0)
    for tt, uu in ((t, u), (t[np.lexsort((u, t))], u[np.lexsort((u, t))])):
        at, kind, aj, ai = _arrivals(tt, uu, dkind, d, N, 16.0)
        per = N if dkind == 2 else 1
        jj, ii = np.repeat(uu, per), np.tile(np.arange(per), len(uu))
        dd = d[jj * N + ii] if dkind == 2 else (d[jj] if dkind == 1 else 0.0)
        ref_t = np.repeat(tt, per) + dd
        keep = ref_t < 16.0
        ref_t, jj, ii = ref_t[keep], jj[keep], ii[keep]
        order = np.lexsort((ii, jj, ref_t))
        np.testing.assert_array_equal(at, ref_t[order])
        np.testing.assert_array_equal(aj, jj[order])
        np.testing.assert_array_equal(ai, ii[order])
        assert np.all(kind == (1 if dkind == 2 else 0))


def test_unknown_method_is_a_clear_error():
    net, ev = random_network(1), random_events(1, n_samples=1)
    with pytest.raises(EventsnnError, match="method 'fast'"):
        simulate_event(net, ev, method="fast")


def test_compiled_kernels_are_cached_in_the_user_cache_directory(tmp_path, monkeypatch):
    from pathlib import Path

    import eventsnn
    from eventsnn.bridge.engines import event_layers
    from eventsnn.util.jit import cache_dir, njit
    monkeypatch.setenv("EVENTSNN_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "numba"

    def plus_one(x):
        return x + 1

    f = njit(plus_one)
    assert f(1) == 2
    assert list((tmp_path / "numba").rglob("*.nbi")), "nothing cached in the cache directory"
    package = Path(eventsnn.__file__).parent
    # the engine's own kernels cache outside the installed package
    assert not Path(event_layers._lif_layer._cache._cache_path).is_relative_to(package)
