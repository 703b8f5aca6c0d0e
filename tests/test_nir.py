"""NIR out and in: export -> nir.write -> nir.read -> import gives the same network and the same spikes; graphs
written by snnTorch and Norse reproduce those libraries' spikes."""
import json
from pathlib import Path

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from eventsnn.bridge import load_network, save_network  # noqa: E402
from eventsnn.bridge.engines.event import simulate_event  # noqa: E402
from eventsnn.bridge.engines.torch import simulate_torch  # noqa: E402
from eventsnn.bridge.nir_io import from_nir, load_nir, save_nir, to_nir  # noqa: E402
from eventsnn.util.errors import EventsnnError  # noqa: E402
from eventsnn.data.events import Events, save_events  # noqa: E402
from tests.conftest import assert_runs_identical, random_events, random_network, run_cli  # noqa: E402


def axonal_network(seed=0):
    net = random_network(seed)
    for L in net.layers:
        if L.ff_delay_ms is not None and L.ff_delay_ms.ndim == 2:
            L.ff_delay_ms = L.ff_delay_ms[:, 0].copy()
        if L.rec_delay_ms is not None and L.rec_delay_ms.ndim == 2:
            L.rec_delay_ms = L.rec_delay_ms[:, 0].copy()
    return net.validate()


def test_nir_round_trip_identical_network_and_spikes(tmp_path):
    net = axonal_network(0)
    with pytest.warns(UserWarning, match="refractory"):
        save_nir(net, tmp_path / "g.nir")
    graph = nir.read(str(tmp_path / "g.nir"))
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert {"Input", "Delay", "Linear", "CubaLIF", "CubaLI", "Output"} <= kinds
    assert any(a.startswith("lif0") and b.startswith("recdelay0") for a, b in graph.edges)  # recurrence = a cycle
    back = load_nir(tmp_path / "g.nir")
    for a, b in zip(net.layers, back.layers):
        assert (a.kind, a.reset, a.size) == (b.kind, b.reset, b.size)
        for k in ("ff_weight", "tau_mem_ms", "tau_syn_ms", "ff_delay_ms", "rec_weight", "rec_delay_ms", "threshold",
                  "refractory_ms"):
            x, y = getattr(a, k), getattr(b, k)
            assert (x is None) == (y is None), k
            if x is not None:
                np.testing.assert_allclose(y, x, rtol=1e-12, err_msg=k)
    ev = random_events(0)
    assert_runs_identical(simulate_torch(net, ev), simulate_torch(back, ev))
    a, b = simulate_event(net, ev), simulate_event(back, ev)
    for La, Lb in zip(a.layers, b.layers):
        np.testing.assert_allclose(La.time_ms, Lb.time_ms, atol=1e-9)


def test_generic_nir_semantics_scale_the_weights():
    """A graph written by another tool: I jumps by W * w_in * r / tau_syn per spike."""
    graph = to_nir(axonal_network(1))
    lif = graph.nodes["lif0"]
    lif.w_in = lif.w_in * 2.0
    graph.nodes["w0"].weight = graph.nodes["w0"].weight / 2.0
    graph.metadata = {}
    back = from_nir(graph, dt_ms=1.0)
    np.testing.assert_allclose(back.layers[0].ff_weight, axonal_network(1).layers[0].ff_weight, rtol=1e-12)
    assert back.layers[0].reset == "zero" and back.layers[0].refractory_ms is None  # NIR has neither
    with pytest.raises(EventsnnError, match="--dt"):
        from_nir(graph)


def test_synaptic_delays_are_refused_with_the_reason():
    with pytest.raises(EventsnnError, match="per-synapse"):
        to_nir(random_network(0))


def test_cli_export_nir_and_import_nir(tmp_path):
    net = axonal_network(2)
    g = tmp_path / "g.nir"
    save_nir(net, g)
    out = tmp_path / "net.h5"
    p = run_cli("import-nir", g, "--out", out, "--json")
    assert p.returncode == 0, p.stderr
    back = load_network(out)
    np.testing.assert_allclose(back.layers[0].ff_weight, net.layers[0].ff_weight, rtol=1e-12)
    for args, culprit in ((["import-nir", tmp_path / "nope.nir", "--out", tmp_path / "x.h5"], "nope.nir"),
                          (["import-nir", g, "--out", g], "--out"),
                          (["import-nir", g, "--dt", "0", "--out", tmp_path / "x.h5"], "--dt")):
        p = run_cli(*args)
        assert p.returncode == 2 and culprit in p.stderr and len(p.stderr.strip().splitlines()) == 1
    net_f = tmp_path / "n.h5"
    save_network(net, net_f)
    (tmp_path / "text.nir").write_text("not hdf5")
    p = run_cli("import-nir", tmp_path / "text.nir", "--dt", "1", "--out", tmp_path / "x.h5")
    assert p.returncode == 2 and "text.nir" in p.stderr
    assert not (tmp_path / "x.h5").exists()


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nir"


def _raster_events(x, dt_ms, extra_steps):
    """A [B, T, N] input raster as events (one spike mid-step wherever it is 1)."""
    B, T, N = x.shape
    times = [(np.nonzero(x[b])[0] + 0.5) * dt_ms * 1e-3 for b in range(B)]
    units = [np.nonzero(x[b])[1] for b in range(B)]
    return Events.from_lists(times, units, np.zeros(B, int), N, (T + extra_steps) * dt_ms * 1e-3, 2)


@pytest.mark.parametrize("lib", ["snntorch", "norse"])
def test_library_written_nir_reproduces_the_library_spikes_in_torch_brian2_and_verify(lib, tmp_path):
    """Graphs written by snnTorch 1.0 / Norse 1.1 (tests/fixtures/nir/make_fixtures.py) and imported with their
    conventions fire exactly the library's spikes, one step later per layer, in our torch engine and in Brian2;
    verify on the imported network runs and agrees with itself across engines at the library's dt."""
    from eventsnn.bridge.engines import simulate

    run = np.load(FIXTURES / f"{lib}_run.npz")
    x, dt = run["x"], 1.0
    ev = _raster_events(x, dt, extra_steps=2)
    evf = tmp_path / "in.h5"
    save_events(ev, evf)
    netf = tmp_path / "net.h5"
    p = run_cli("import-nir", FIXTURES / f"{lib}.nir", "--dt", dt, "--source", lib, "--out", netf)
    assert p.returncode == 0, p.stderr
    assert "spike-counting readout was added" in p.stderr
    net = load_network(netf)
    assert net.meta["source"] == f"nir:{lib}" and len(net.layers) == 3
    B, T, _ = x.shape
    for engine, kw in (("torch", {}), ("brian2", {"target": "numpy"})):
        r = simulate(engine, net, ev, dt_ms=dt, **kw)
        for i in range(2):
            theirs = run[f"spikes{i}"]
            ours = np.zeros((B, T + 2, theirs.shape[2]), np.uint8)
            ours[r.layers[i].sample, r.layers[i].step, r.layers[i].unit] = 1
            assert theirs.sum() > 500
            np.testing.assert_array_equal(ours[:, i + 1: i + 1 + T], theirs, err_msg=f"{engine} layer {i}")
    p = run_cli("verify", netf, "--data", evf, "--dt", "1,0.5", "--probes", "", "--out", tmp_path / "rep", "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    at_dt = [r for r in rep["runs"] if r["engine"] == "brian2" and r["dt_ms"] == dt]
    assert at_dt and at_dt[0]["agreement_with_torch"] == 1.0
    assert (tmp_path / "rep" / "accuracy_vs_dt.png").exists()


def test_library_conventions_refuse_a_wrong_step():
    with pytest.raises(EventsnnError, match=r"decay per step must lie in \(0, 1\).*--dt the library's step"):
        load_nir(FIXTURES / "norse.nir", 10.0, "norse")
    with pytest.raises(EventsnnError, match="--source brian: choose one of generic, snntorch, norse"):
        load_nir(FIXTURES / "norse.nir", 1.0, "brian")
