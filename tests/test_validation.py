"""Issue: compare, verify (report schema, caching, interruption), demo."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from eventsnn.bridge import save_network
from eventsnn.data.events import n_steps, save_events
from eventsnn.bridge.runfile import SPIKE_BYTES, LayerSpikes, RunResult, load_run, save_run
from eventsnn.model.contract import readout_scores
from eventsnn.validation.compare import compare_runs, match_spikes, spike_timing
from tests.conftest import assert_runs_identical, random_events, random_network, run_cli


def test_match_spikes_hand_made():
    a = np.array([1.0, 5.0, 9.0, 20.0])
    b = np.array([1.4, 4.0, 9.2, 30.0, 31.0])
    ia, ib = match_spikes(a, b, tol_ms=0.5)
    # 1.0~1.4 and 9.0~9.2 match; 5.0 vs 4.0 is 1 ms apart; 20 and 30/31 unmatched
    assert ia.tolist() == [0, 2] and ib.tolist() == [0, 2]
    ia, ib = match_spikes(a, b, tol_ms=1.0)
    assert ia.tolist() == [0, 1, 2] and ib.tolist() == [0, 1, 2]
    # one-to-one: two spikes of b near one spike of a match once
    ia, ib = match_spikes(np.array([10.0]), np.array([9.9, 10.1]), 0.5)
    assert len(ia) == 1


def test_match_spikes_is_optimal_where_a_greedy_walk_is_not():
    # greedy in time order pairs 1.0 with 0.2 (0.8 ms); the optimum pairs it with 1.1 (0.1 ms)
    ia, ib = match_spikes(np.array([1.0]), np.array([0.2, 1.1]), 1.0)
    assert ia.tolist() == [0] and ib.tolist() == [1]
    # most pairs first, then the smallest total shift, on random trains against brute force
    import itertools
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = np.sort(rng.uniform(0, 5, rng.integers(1, 5))), np.sort(rng.uniform(0, 5, rng.integers(1, 5)))
        ia, ib = match_spikes(a, b, 1.0)
        best = (0, 0.0)
        for k in range(min(len(a), len(b)), 0, -1):
            costs = [sum(abs(a[i] - b[j]) for i, j in zip(sa, sb))
                     for sa in itertools.combinations(range(len(a)), k) for sb in itertools.permutations(range(len(b)), k)
                     if all(abs(a[i] - b[j]) <= 1.0 for i, j in zip(sa, sb))]
            if costs:
                best = (k, min(costs))
                break
        assert len(ia) == best[0]
        assert np.abs(a[ia] - b[ib]).sum() == pytest.approx(best[1], abs=1e-9)


def _layer(sample, unit, time_ms, dt):
    time_ms = np.asarray(time_ms, float)
    return LayerSpikes(np.asarray(sample), np.asarray(unit), np.round(time_ms / dt).astype(int), time_ms)


def test_spike_timing_statistics_hand_made():
    A = _layer([0, 0, 0, 1], [0, 0, 1, 0], [1.0, 5.0, 2.0, 3.0], 1.0)
    B = _layer([0, 0, 0, 1, 1], [0, 0, 1, 0, 2], [1.25, 5.5, 7.0, 3.0, 4.0], 0.25)
    st = spike_timing(A, B, tol_ms=1.0)
    assert st["matched"] == 3 and st["missing"] == 1 and st["extra"] == 2
    assert st["matched_fraction"] == pytest.approx(0.75)
    assert st["median_abs_shift_ms"] == pytest.approx(0.25)


def _run(pred, labels, layers, trace, dt=1.0):
    return RunResult("torch", dt, 1.0, "round", "binned", "cpu", "max", layers, trace, np.asarray(pred),
                     np.asarray(labels), np.arange(len(labels)))


def test_compare_runs_prediction_agreement_and_exact_mismatch():
    tr = np.random.default_rng(0).normal(size=(4, 5, 2))
    A = _run([0, 1, 1, 0], [0, 1, 0, 0], [_layer([0, 1], [0, 0], [1.0, 2.0], 1.0)], tr)
    B = _run([0, 1, 0, 0], [0, 1, 0, 0], [_layer([0, 1], [0, 0], [1.0, 3.0], 1.0)], tr)
    c = compare_runs(A, B)
    assert c["accuracy_a"] == 0.75 and c["accuracy_b"] == 1.0
    assert c["prediction_agreement"] == 0.75
    assert c["trace_correlation"] == pytest.approx(1.0)
    assert c["layers"][0]["exact_mismatch"] == 2  # (1, 0, 2) and (1, 0, 3)
    assert c["layers"][0]["matched"] == 2  # within the 1 ms tolerance


def test_exact_mismatch_counts_the_spikes_in_one_run_only():
    """The spike-for-spike count is the number of distinct (sample, unit, step) in exactly one of the two runs, on
    random runs with shared spikes, duplicates and empty layers; comparing a run with itself gives 0."""
    from eventsnn.validation.compare import exact_mismatch
    rng = np.random.default_rng(4)
    for _ in range(200):
        def rand(n):
            s, u, k = rng.integers(0, 3, n), rng.integers(0, 4, n), rng.integers(0, 6, n)
            return LayerSpikes.from_steps(s, u, k, 0.5)
        A, B = rand(rng.integers(0, 25)), rand(rng.integers(0, 25))
        if rng.random() < 0.5:  # many shared spikes
            B = LayerSpikes.from_steps(np.r_[A.sample, B.sample], np.r_[A.unit, B.unit], np.r_[A.step, B.step], 0.5)
        sa, sb = set(zip(A.sample, A.unit, A.step)), set(zip(B.sample, B.unit, B.step))
        assert exact_mismatch(A, B) == len(sa ^ sb)
        assert exact_mismatch(A, A) == 0


def test_run_file_written_and_read_in_chunks_equals_whole(tmp_path):
    from eventsnn.bridge.runfile import RunReader, RunWriter, concat_runs
    import h5py
    rng = np.random.default_rng(3)

    def part(S):
        n = int(rng.integers(0, 12))
        sample = np.sort(rng.integers(0, S, n))
        layers = [_layer(sample, rng.integers(0, 4, n), np.round(rng.uniform(0, 9, n), 2), 0.01) for _ in range(2)]
        r = _run(rng.integers(0, 3, S), rng.integers(0, 3, S), layers, rng.normal(size=(S, 10, 3)), dt=0.01)
        r.attrs["wall_s"] = 1.5
        return r

    def numbered(ps):  # consecutive samples 0..7 of one events file
        for p, lo in zip(ps, (0, 3, 4)):
            p.sample_index = np.arange(lo, lo + p.n_samples)
        return ps

    parts = numbered([part(3), part(1), part(4)])
    whole = concat_runs(parts)
    with RunWriter(tmp_path / "chunked.h5", {"note": "x"}) as w:
        for p in parts:
            w.append(p)
    got = load_run(tmp_path / "chunked.h5")
    for La, Lb in zip(got.layers, whole.layers):
        for k in ("sample", "unit", "step", "time_ms"):
            np.testing.assert_array_equal(getattr(La, k), getattr(Lb, k))
    np.testing.assert_array_equal(got.trace, whole.trace)
    assert got.accuracy == pytest.approx(whole.accuracy)
    # wall time summed over the parts for the caller, never written (same run, same bytes)
    assert w.wall_s == pytest.approx(4.5) and "wall_s" not in got.attrs
    assert got.attrs["parts"] == 3 and got.attrs["note"] == "x"
    # any sample range reads as the same slice of the whole run, positions renumbered from 0
    reader = RunReader(tmp_path / "chunked.h5")
    for lo, hi in ((0, 8), (2, 5), (7, 8), (4, 4)):
        sl = reader.read(lo, hi)
        assert sl.n_samples == hi - lo
        np.testing.assert_array_equal(sl.trace, whole.trace[lo:hi])
        for La, Lb in zip(sl.layers, whole.layers):
            keep = (Lb.sample >= lo) & (Lb.sample < hi)
            np.testing.assert_array_equal(La.sample, Lb.sample[keep] - lo)
            np.testing.assert_array_equal(La.time_ms, Lb.time_ms[keep])
    # chunked comparison of two files equals the comparison in memory
    from eventsnn.validation.compare import compare_files
    other = concat_runs(numbered([part(3), part(1), part(4)]))
    save_run(other, tmp_path / "other.h5")
    _assert_close(compare_files(tmp_path / "chunked.h5", tmp_path / "other.h5", 0.5, chunk_spikes=2),
                  compare_runs(whole, other, 0.5))
    # a version-1 file (no sample_start) still reads
    with h5py.File(tmp_path / "chunked.h5", "a") as f:
        for i in range(2):
            del f[f"layers/{i}/sample_start"]
        f.attrs["version"] = 1
    np.testing.assert_array_equal(RunReader(tmp_path / "chunked.h5").read(2, 5).layers[1].unit,
                                  reader.read(2, 5).layers[1].unit)
    # parts that disagree are refused, and nothing is written
    bad = part(2)
    bad.dt_ms = 1.0
    with pytest.raises(ValueError, match="differ in dt_ms"):
        with RunWriter(tmp_path / "bad.h5") as w:
            w.append(parts[0])
            w.append(bad)
    assert not (tmp_path / "bad.h5").exists()


def test_simulate_to_file_in_chunks_equals_one_call(tmp_path, build_dir):
    from eventsnn.bridge.engines import simulate, simulate_to_file
    net, ev = random_network(4), random_events(4, n_samples=5)
    for engine, kw in (("torch", dict(dt_ms=0.25, delays="exact", inputs="exact")),
                       ("brian2", dict(target="numpy", build_dir=build_dir)), ("event", {})):
        whole = simulate(engine, net, ev, **kw)
        s = simulate_to_file(engine, net, ev, tmp_path / f"{engine}.h5", budget_bytes=1, **kw)
        assert s["chunks"] == 5 and s["samples"] == 5, engine
        got = load_run(tmp_path / f"{engine}.h5")
        assert_runs_identical(whole, got)
        for La, Lb in zip(whole.layers, got.layers):
            np.testing.assert_array_equal(La.time_ms, Lb.time_ms)
        assert s["spikes_per_layer"] == [len(L.step) for L in whole.layers]
        np.testing.assert_array_equal(got.sample_index, np.arange(5))


def test_equal_chunks():
    from eventsnn.bridge.engines import _equal_chunks
    assert [_equal_chunks(n, m) for n, m in ((16, 50), (16, 5), (10, 3), (7, 7), (1, 1), (2264, 900))] == \
        [16, 4, 3, 7, 1, 755]


@pytest.mark.compiled
def test_compiled_brian2_to_file_is_chunked_by_the_spikes_it_will_write(tmp_path):
    """A compiled Brian2 run pays a build per chunk: its chunks are sized from torch's spikes on the first sample
    (here one chunk), not from every neuron firing at every step (which would give two)."""
    from eventsnn.bridge.engines import first_chunk, simulate, simulate_to_file
    net, ev = random_network(5), random_events(5, n_samples=4)
    fine = dict(dt_ms=0.1, delays="exact", inputs="exact")
    cap = (n_steps(ev.duration_ms, 0.1) * sum(L.size for L in net.layers[:-1]) * SPIKE_BYTES
           + n_steps(ev.duration_ms, net.dt_ms) * net.n_outputs * 8)
    assert first_chunk(net, ev, 0.1, 2 * cap) == 2
    s = simulate_to_file("brian2", net, ev, tmp_path / "b.h5", budget_bytes=2 * cap, target="cpp_standalone",
                         build_dir=tmp_path / "build", **fine)
    assert s["chunks"] == 1 and s["samples"] == 4
    assert_runs_identical(simulate("torch", net, ev, **fine), load_run(tmp_path / "b.h5"))


def test_compiled_brian2_chunks_are_not_sized_by_a_quiet_first_sample(tmp_path, monkeypatch):
    """The chunk planning of a compiled Brian2 run, with torch standing in for the build (no compiler): a silent
    first sample does not make one huge chunk (the training clock's ceiling bounds it), chunks only shrink, the
    file equals one call, and the merged-input warning is given once."""
    import dataclasses
    import warnings
    from eventsnn.bridge import engines as E
    from eventsnn.bridge.engines.torch import simulate_torch
    from eventsnn.data.events import Events
    from eventsnn.util.errors import EventsnnWarning

    sizes = []

    def stand_in(net, events, indices=None, **kw):
        sizes.append(len(indices))
        return simulate_torch(net, events, indices, **{k: v for k, v in kw.items() if k not in ("target", "build_dir")})
    monkeypatch.setitem(E.ENGINES, "brian2", dataclasses.replace(E.ENGINES["brian2"], run=stand_in))
    net, rng = random_network(5), np.random.default_rng(0)
    times = [np.array([])] + [np.sort(rng.uniform(0, 0.05, 300)) for _ in range(11)]
    units = [np.array([], int)] + [rng.integers(0, 8, 300) for _ in range(11)]
    ev = Events.from_lists(times, units, np.zeros(12, int), 8, 0.05, 3).validate()
    T = n_steps(ev.duration_ms, net.dt_ms)
    ceiling = T * sum(L.size for L in net.layers[:-1]) * SPIKE_BYTES + T * net.n_outputs * 8
    budget = 2 * 3 * ceiling  # three samples a chunk at the training clock's ceiling
    fine = dict(dt_ms=0.25, delays="exact", inputs="binned")  # binned at the training dt: merged spikes
    assert E.first_chunk(net, ev, 0.25, budget) == 1  # every neuron at every 0.25 ms step: one sample a chunk
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = E.simulate_to_file("brian2", net, ev, tmp_path / "b.h5", budget_bytes=budget, target="cpp_standalone",
                               **fine)
    assert sizes[0] == 3 and sizes == sorted(sizes, reverse=True) and sum(sizes) == 12, sizes
    assert s["chunks"] == len(sizes)
    assert_runs_identical(simulate_torch(net, ev, **fine), load_run(tmp_path / "b.h5"))
    merged = [w for w in caught if issubclass(w.category, EventsnnWarning) and "merged" in str(w.message)]
    assert len(merged) == 1, [str(w.message) for w in caught]


def test_cli_compare_json(tmp_path):
    tr = np.zeros((2, 3, 2))
    tr[:, :, 1] = 1
    save_run(_run([1, 1], [1, 0], [_layer([0], [0], [1.0], 1.0)], tr), tmp_path / "a.h5")
    save_run(_run([1, 1], [1, 0], [_layer([0], [0], [1.0], 1.0)], tr), tmp_path / "b.h5")
    p = run_cli("compare", tmp_path / "a.h5", tmp_path / "b.h5", "--json")
    assert p.returncode == 0, p.stderr
    c = json.loads(p.stdout)
    assert c["prediction_agreement"] == 1.0 and c["layers"][0]["matched_fraction"] == 1.0
    p = run_cli("compare", tmp_path / "a.h5", tmp_path / "missing.h5")
    assert p.returncode == 2 and "missing.h5" in p.stderr


@pytest.fixture
def verify_inputs(tmp_path):
    net, ev = random_network(11), random_events(11, n_samples=6)
    save_network(net, tmp_path / "net.h5")
    save_events(ev, tmp_path / "ev.h5")
    return tmp_path / "net.h5", tmp_path / "ev.h5"


RUN_KEYS = {"name", "engine", "dt_ms", "delays", "inputs", "transform", "accuracy", "agreement_with_torch",
            "spike_mismatch", "spike_timing", "file"}


def test_verify_report_schema_and_accuracy_recomputed(verify_inputs, tmp_path):
    netf, evf = verify_inputs
    out = tmp_path / "rep"
    p = run_cli("verify", netf, "--data", evf, "--dt", "1,0.25", "--probes", "reverse", "--out", out, "--json",
                "--keep-runs")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["n_samples"] == 6 and rep["train_dt_ms"] == 1.0
    names = {r["name"] for r in rep["runs"]}
    assert len(rep["runs"]) == 15 and "brian2-dt0.25-reverse-window" in names and "event-reverse-full" in names
    for r in rep["runs"]:
        assert RUN_KEYS <= set(r)
        run = load_run(out / r["file"])
        # the reported accuracy is the one recomputed from the run file's traces and labels
        pred = readout_scores(run.trace, run.readout).argmax(1)
        assert r["accuracy"] == pytest.approx(float(np.mean(pred == run.labels)))
        if r["engine"] == "brian2" and r["dt_ms"] == 1.0:
            assert r["spike_mismatch"] == 0 and r["agreement_with_torch"] == 1.0
        if r["dt_ms"] == 1.0:
            assert r["delays"] == "round" and r["inputs"] == "binned"
        else:
            assert r["delays"] == "exact" and r["inputs"] == "exact" and r["spike_mismatch"] is None
    assert r["transform"] in (None, "reverse-window", "reverse-full")
    for fig in ("accuracy_vs_dt.png", "raster.png", "spike_shifts.png", "report.md"):
        assert (out / fig).stat().st_size > 0
    # the report compares the run files chunk by chunk of samples: one sample per chunk gives the same report
    from eventsnn.bridge import load_network
    from eventsnn.data.transforms import parse_probes
    from eventsnn.validation.verify import build_report, plan_runs
    net = load_network(netf)
    chunked = build_report(out, plan_runs(net.dt_ms, [1.0, 0.25], parse_probes("reverse"), "numpy"), net, 6,
                           chunk_spikes=1)
    assert rep["report_chunks"] == 1 and chunked["report_chunks"] > 1
    _assert_close(chunked["runs"], rep["runs"])
    _assert_close(chunked["convergence"], rep["convergence"])


def _assert_close(a, b, path="report"):
    """Nested dicts/lists equal, floats to 1e-9 relative."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True), path
    else:
        assert a == b, path


def test_verify_interrupted_then_rerun_reuses_complete_runs(verify_inputs, tmp_path):
    netf, evf = verify_inputs
    out = tmp_path / "rep"
    env = dict(os.environ, EVENTSNN_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "eventsnn", "verify", netf, "--data", evf, "--dt", "1,0.1",
                             "--probes", "reverse", "--out", out], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "runs").glob("*.h5"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted((out / "runs").glob("*.h5"))
    assert 3 <= len(done) < 15, "verify was not interrupted mid-way"
    assert not (out / "report.json").exists()
    for f in done:  # every run file present is complete
        load_run(f)
    # a stale/foreign file with the right name is not trusted: it is recomputed
    bogus = out / "runs" / "brian2-dt0.1-reverse-full.h5"
    bogus.write_bytes(b"partial garbage")
    mtimes = {f.name: f.stat().st_mtime_ns for f in done}
    p = run_cli("verify", netf, "--data", evf, "--dt", "1,0.1", "--probes", "reverse", "--out", out, "--json",
                "--keep-runs")
    assert p.returncode == 0, p.stderr
    for f in done:
        assert f.stat().st_mtime_ns == mtimes[f.name], f"{f.name} was recomputed instead of reused"
    assert load_run(bogus).engine == "brian2"
    assert len(json.loads(p.stdout)["runs"]) == 15
    assert not list((out / "runs").glob(".*.tmp"))


def test_verify_rejects_dt_that_does_not_divide(verify_inputs, tmp_path):
    netf, evf = verify_inputs
    p = run_cli("verify", netf, "--data", evf, "--dt", "0.3", "--out", tmp_path / "x")
    assert p.returncode == 2 and "must divide" in p.stderr


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    p = run_cli("demo", "--quick", "--out", tmp_path / "demo", "--json", timeout=1200)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    for m in res["models"].values():
        for name, r in m["runs"].items():
            if name.startswith("brian2-dt1-"):
                assert r["agreement_with_torch"] == 1.0 and r["spike_mismatch"] == 0
    assert "Brian2 = torch" in (tmp_path / "demo" / "demo.md").read_text()


def test_verify_no_event_skips_the_event_runs(verify_inputs, tmp_path):
    """``--no-event``: the clock-driven runs only (torch and Brian2 for each probe), the report and figures still
    written; the exact engine is never called."""
    netf, evf = verify_inputs
    out = tmp_path / "rep"
    p = run_cli("verify", netf, "--data", evf, "--dt", "1", "--probes", "reverse", "--no-event", "--out", out,
                "--json", "--keep-runs")
    assert p.returncode == 0, p.stderr
    runs = {r["name"]: r for r in json.loads(p.stdout)["runs"]}
    assert set(runs) == {f"{e}-dt1-{t}" for e in ("torch", "brian2") for t in ("none", "reverse-window",
                                                                               "reverse-full")}
    assert runs["brian2-dt1-none"]["spike_mismatch"] == 0
    assert not list((out / "runs").glob("event-*")) and (out / "accuracy_vs_dt.png").stat().st_size > 0


def test_verify_keeps_run_files_only_when_asked(verify_inputs, tmp_path):
    """The report and figures stay; the run files (every spike of every run) go once the report is written,
    unless ``--keep-runs``: then they stay and the report names them."""
    netf, evf = verify_inputs
    reports = {}
    for keep in (False, True):
        out = tmp_path / f"keep{keep}"
        p = run_cli("verify", netf, "--data", evf, "--dt", "1", "--probes", "", "--out", out, "--json",
                    *(["--keep-runs"] if keep else []))
        assert p.returncode == 0, p.stderr
        rep = json.loads(p.stdout)
        assert json.loads((out / "report.json").read_text())["runs"] == rep["runs"]
        assert (out / "report.md").exists() and (out / "raster.png").stat().st_size > 0
        files = sorted(f.name for f in (out / "runs").glob("*.h5")) if (out / "runs").exists() else []
        if keep:
            assert files == sorted(f"{r['name']}.h5" for r in rep["runs"]) and len(files) == 3
            assert all((out / r["file"]).exists() for r in rep["runs"])
        else:
            assert files == [] and not (out / "runs").exists() and all(r["file"] is None for r in rep["runs"])
        reports[keep] = [{k: v for k, v in r.items() if k not in ("file", "wall_s")} for r in rep["runs"]]
    assert reports[False] == reports[True]


def test_torch_engine_bounds_its_batch_by_memory(monkeypatch):
    """At fine dt a batch of dense [samples, steps, units] arrays outgrows memory (128 SHD samples at 0.01 ms
    would be 72 GB): the torch engine cuts its batch to fit ``BATCH_MEMORY_BYTES`` — one sample at a time at
    the limit — with every spike and trace value unchanged."""
    import torch

    from eventsnn.bridge.engines import torch as torch_engine
    net, ev = random_network(11), random_events(11, n_samples=5)
    full = torch_engine.simulate_torch(net, ev, dt_ms=0.25, delays="exact", inputs="exact")
    assert torch_engine._bounded_batch(net, ev, 0.25, torch.float64, 128) == 128  # small: the batch as asked
    monkeypatch.setattr(torch_engine, "BATCH_MEMORY_BYTES", 1)
    assert torch_engine._bounded_batch(net, ev, 0.25, torch.float64, 128) == 1
    one = torch_engine.simulate_torch(net, ev, dt_ms=0.25, delays="exact", inputs="exact")
    assert np.array_equal(one.trace, full.trace) and np.array_equal(one.prediction, full.prediction)
    for a, b in zip(one.layers, full.layers):
        assert len(a.sample) > 0
        for k in ("sample", "unit", "step"):
            assert np.array_equal(getattr(a, k), getattr(b, k))
    # the SHD case: 700 inputs, 2 x 256 + 20, 1 s at 0.01 ms, float64: ~2.3 GB per sample -> one at a time
    shd = type("N", (), {"n_inputs": 700, "layers": [type("L", (), {"size": n})() for n in (256, 256, 20)]})()
    monkeypatch.setattr(torch_engine, "BATCH_MEMORY_BYTES", 2 << 30)
    assert torch_engine._bounded_batch(shd, type("E", (), {"duration_s": 1.0})(), 0.01, torch.float64, 128) == 1
    assert torch_engine._bounded_batch(shd, type("E", (), {"duration_s": 1.0})(), 1.0, torch.float64, 128) == 94


def test_verify_workers_split_samples_when_runs_are_few(verify_inputs, tmp_path):
    """Three runs (exact, torch, Brian2), four workers: each run's samples are split over four processes."""
    netf, evf = verify_inputs
    out = tmp_path / "rep"
    p = run_cli("verify", netf, "--data", evf, "--dt", "1", "--probes", "", "--workers", "4", "--out", out, "--json",
                "--keep-runs")
    assert p.returncode == 0, p.stderr
    runs = {r["name"]: r for r in json.loads(p.stdout)["runs"]}
    b = runs["brian2-dt1-none"]
    assert b["spike_mismatch"] == 0 and b["agreement_with_torch"] == 1.0
    run = load_run(out / b["file"])
    assert run.attrs["workers"] == 4 and run.sample_index.tolist() == list(range(6))
    ev = load_run(out / runs["event-none"]["file"])
    assert ev.attrs["workers"] == 4 and ev.engine == "event"
