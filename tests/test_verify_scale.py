"""verify at test-set scale: the exact runs first on every sample, the reference (torch at the training dt) on
every sample, the other clock-driven runs (Brian2 at every dt, torch finer) on the first N samples only (named in
the report), compared on those samples."""
import json

import numpy as np
import pytest

from eventsnn.bridge import save_network
from eventsnn.data.events import save_events
from eventsnn.bridge.runfile import load_run
from eventsnn.data.transforms import parse_probes
from eventsnn.validation.verify import plan_runs
from tests.conftest import assert_runs_identical, random_events, random_network, run_cli


def test_plan_puts_the_exact_runs_first_and_all_but_the_reference_on_a_subset():
    specs = plan_runs(1.0, [1.0, 0.1], parse_probes("reverse"), "numpy", fine_samples=8)
    assert [s.engine for s in specs[:3]] == ["event"] * 3 and all(s.engine != "event" for s in specs[3:])
    for s in specs:
        reference = s.engine == "torch" and s.dt_ms == 1.0
        assert s.samples == (None if s.engine == "event" or reference else 8), s.name
    assert specs[-1].n(100) == 8 and specs[-1].n(5) == 5 and specs[0].n(100) == 100


def test_verify_fine_dt_runs_on_the_first_samples_only(tmp_path):
    net, ev = random_network(11), random_events(11, n_samples=6)
    save_network(net, tmp_path / "net.h5")
    save_events(ev, tmp_path / "ev.h5")
    out = tmp_path / "rep"
    p = run_cli("verify", tmp_path / "net.h5", "--data", tmp_path / "ev.h5", "--dt", "1,0.25", "--probes", "",
                "--fine-samples", "2", "--workers", "2", "--out", out, "--json", "--keep-runs")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    runs = {r["name"]: r for r in rep["runs"]}
    assert {n: r["samples"] for n, r in runs.items()} == {
        "event-none": 6, "torch-dt1-none": 6, "brian2-dt1-none": 2, "torch-dt0.25-none": 2, "brian2-dt0.25-none": 2}
    assert load_run(out / runs["torch-dt0.25-none"]["file"]).sample_index.tolist() == [0, 1]
    # compared with the exact run on those two samples only
    exact = load_run(out / runs["event-none"]["file"])
    for li, L in enumerate(runs["brian2-dt0.25-none"]["vs_exact"]["layers"]):
        assert L["n_exact"] == int(np.sum(exact.layers[li].sample < 2)) > 0
    assert runs["brian2-dt1-none"]["spike_mismatch"] == 0
    assert "first 2 samples only" in (out / "report.md").read_text()
    # 0: every sample
    p = run_cli("verify", tmp_path / "net.h5", "--data", tmp_path / "ev.h5", "--dt", "1,0.25", "--probes", "",
                "--fine-samples", "0", "--out", tmp_path / "all", "--json")
    assert p.returncode == 0, p.stderr
    assert {r["samples"] for r in json.loads(p.stdout)["runs"]} == {6}


def test_verify_default_steps_are_a_tenth_and_a_hundredth_of_the_training_step(tmp_path):
    """A model trained at 2 ms (not 1) is verified with no --dt at 2, 0.2 and 0.02 ms (1 ms would not divide it)."""
    net, ev = random_network(12, dt_ms=2.0), random_events(12, n_samples=2)
    save_network(net, tmp_path / "net.h5")
    save_events(ev, tmp_path / "ev.h5")
    p = run_cli("verify", tmp_path / "net.h5", "--data", tmp_path / "ev.h5", "--probes", "", "--no-event",
                "--out", tmp_path / "rep", "--json")
    assert p.returncode == 0, p.stderr
    names = {r["name"] for r in json.loads(p.stdout)["runs"]}
    assert names == {f"{e}-dt{d}-none" for e in ("torch", "brian2") for d in ("2", "0.2", "0.02")}, names


def test_verify_groups_the_brian2_probes_at_one_dt_into_one_job():
    from eventsnn.validation.verify import _jobs

    specs = plan_runs(1.0, [1.0, 0.1], parse_probes("reverse"), "cpp_standalone", event=False)
    jobs = _jobs([(s,) for s in specs])
    brian2 = [[t[0].name for t in j] for j in jobs if j[0][0].engine == "brian2"]
    assert brian2 == [[f"brian2-dt{dt}-{tr}" for tr in ("none", "reverse-window", "reverse-full")]
                      for dt in ("1", "0.1")]
    assert all(len(j) == 1 for j in jobs if j[0][0].engine != "brian2")


@pytest.mark.compiled
def test_brian2_rebuild_in_the_same_directory_recompiles_only_the_arrays_and_equals_a_fresh_build(tmp_path):
    """verify runs a probe's Brian2 run in the directory of the original's: the code objects keep their names
    (nothing of the earlier run leaks into them), so make reuses them, and the result is that of a fresh build."""
    from eventsnn.bridge.engines.brian2 import simulate_brian2
    from eventsnn.data.transforms import transform_by_name

    net, ev = random_network(13, refractory=True), random_events(13, n_samples=3)
    rev = transform_by_name("reverse-full")(ev)
    shared = tmp_path / "shared"
    simulate_brian2(net, ev, target="cpp_standalone", build_dir=shared)
    objects = shared / "cpp_standalone" / "code_objects"
    first = {f.name: f.stat().st_mtime_ns for f in objects.glob("*.o")}
    again = simulate_brian2(net, rev, target="cpp_standalone", build_dir=shared)
    second = {f.name: f.stat().st_mtime_ns for f in objects.glob("*.o")}
    assert set(second) == set(first), "the second build named its code objects differently"
    assert sum(second[k] == first[k] for k in first) >= len(first) // 2, "make recompiled the code objects"
    assert_runs_identical(again, simulate_brian2(net, rev, target="cpp_standalone", build_dir=tmp_path / "fresh"))
