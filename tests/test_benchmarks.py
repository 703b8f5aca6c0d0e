"""The benchmark scripts run in CI-sized form and print their JSON (no timing is asserted)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script,keys", [
    ("verify_throughput.py", {"samples_per_s", "baseline_samples_per_s", "dt_ms", "target"}),
    ("event_throughput.py", {"samples_per_s", "baseline_samples_per_s", "event_s_per_sample", "brian2_s_per_sample",
                             "brian2_matched_within_0.1ms"}),
    ("srm_scan.py", {"samples_per_s", "baseline_samples_per_s", "same_spikes"}),
    ("narrow_delays.py", {"samples_per_s", "baseline_samples_per_s", "rows"}),
])
def test_benchmark_prints_json(script, keys):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--small", "--json"], capture_output=True,
                       text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert keys <= set(res)
    assert res["samples_per_s"] > 0 and res["baseline_samples_per_s"] > 0


def test_event_throughput_runs_the_srm_workload():
    """The authors' ISI network on ISI samples: the exact SRM engine against Brian2, its burst count reported."""
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "event_throughput.py"), "--small", "--workloads",
                        "srm-isi", "--counts", "2", "--workers", "1", "--json"], capture_output=True, text=True,
                       timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    (pt,) = res["workloads"]["srm-isi"]
    assert pt["samples"] == 2 and pt["hidden_spikes_per_sample"][0] > 0 and pt["srm_steep_crossings"] >= 0
    assert pt["event_s_cold"] > 0 and pt["brian2_s"] > 0 and 0 <= pt["brian2_vs_exact"]["prediction_agreement"] <= 1


def test_benchmark_rejects_an_unknown_workload():
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "event_throughput.py"), "--workloads", "srm"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 2 and "--workloads: unknown workload 'srm'" in p.stderr


def test_train_throughput_compares_three_implementations():
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--small", "--batch", "4,8",
                        "--delays", "none,axonal", "--iters", "1", "--json"], capture_output=True, text=True,
                       timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert [(r["batch"], r["delays"]) for r in res["rows"]] == [(4, "none"), (8, "none"), (4, "axonal"),
                                                                 (8, "axonal")]
    for r in res["rows"]:
        for impl in ("eventsnn", "plain", "compiled"):
            assert r[impl]["samples_per_s"] > 0 and r[impl]["peak_mb"] > 0
        assert r["eventsnn_vs_compiled"] > 0 and r["eventsnn_vs_plain"] > 0


def test_speech_standin_measures_every_step():
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speech_standin.py"), "--small", "--threads", "1",
                        "--json"], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    for v in ("whole", "part", "norm"):
        prep, ep = res[v]["prepare"], res[v]["train_epoch"]
        assert sum(prep["train_val_test"]) <= prep["samples"] and prep["peak_rss_mb"] > 0
        assert ep["samples_per_s"] > 0 and ep["epoch_seconds"] > 0
    assert res["whole"]["prepare"]["units"] == 700
    assert res["part"]["prepare"]["units"] == res["norm"]["prepare"]["units"] < 700


def test_synaptic_delay_benchmark_rows():
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "synaptic_delays.py"), "--small", "--max-delays",
                        "5,40", "--iters", "1", "--json"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout.strip().splitlines()[-1])["rows"]
    assert {(r["delays"], r["method"], r["max_delay_steps"]) for r in rows} == {
        (k, m, d) for d in (5, 40) for k, m in (("axonal", "gather"), ("synaptic", "loop"), ("synaptic", "taps"))}
    assert all(r["samples_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in rows)
