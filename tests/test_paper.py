"""The paper's datasets (generators and the speech pipeline) and the sweep command."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import run_cli, write_mini_shd
from eventsnn.data.datasets import count_baseline, load_any, make_task
from eventsnn.util.errors import EventsnnError
from eventsnn.data.paper import (N_BINS, _count_distributions, make_paper_coincidence, make_paper_isi, overlap_to_mix,
                            prepare_speech)

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "examples" / "paper"


# ----------------------------------------------------------------------------- synthetic generators

def test_paper_isi_pairs_line_and_rate_leak():
    ev = make_paper_isi(300, duration_ms=2000.0, seed=3)
    assert (ev.n_units, ev.n_classes, len(ev), ev.duration_s) == (10, 2, 300, 2.0)
    assert 0.35 < ev.labels.mean() < 0.65
    for i in range(40):
        t, u = ev.sample(i)
        ms = np.round(t * 1e3).astype(int)
        np.testing.assert_allclose(t * 1e3, ms, atol=1e-9)  # the 1 ms grid
        isis = set()
        for n in range(10):
            s = np.sort(ms[u == n])
            assert len(s) % 2 == 0
            d = np.diff(s)[::2]  # pairs do not overlap, so sorted spikes alternate onset / partner
            isis.update(d.tolist())
        assert len(isis) <= 1, f"sample {i}: one interval per sample, got {isis}"
    # the rate is part of the class definition (a line in the rate-ISI plane): counts alone beat chance
    assert count_baseline(ev) > 0.6


def test_paper_ccisi_partner_fires_interval_later():
    ev = make_paper_isi(60, cross_channel=True, duration_ms=3000.0, max_isi_ms=400.0, seed=1)
    assert ev.n_units == 20
    longest = 0
    for i in range(len(ev)):
        t, u = ev.sample(i)
        ms = np.round(t * 1e3).astype(int)
        lags = set()
        for p in range(0, 20, 2):
            a, b = np.sort(ms[u == p]), np.sort(ms[u == p + 1])
            assert len(a) == len(b)
            lags.update((b - a).tolist())
        assert len(lags) <= 1
        longest = max(longest, max(lags, default=0))
    assert 300 < longest <= 400


def test_paper_coincidence_windows_counts_and_overlap():
    ev = make_paper_coincidence(90, overlap=0.0, seed=2)
    assert (ev.n_units, ev.n_classes, ev.duration_s) == (60, 3, 4.0)
    assert np.bincount(ev.labels).tolist() == [30, 30, 30]
    ms = np.round(ev.times * 1e3).astype(int)
    assert np.all((ms % 200 >= 50) & (ms % 200 < 150)), "spikes only in [50, 150) ms of each 200 ms window"
    s, w = ev.sample_index(), ms // 200
    key = (s * 20 + w) * 60 + ev.units
    assert len(np.unique(key)) == len(key), "a neuron fires at most once per window"
    # group counts per window: on ~ Poisson(12), off ~ Poisson(2), truncated to 0..20
    counts = np.zeros((len(ev), 20, 3), int)
    np.add.at(counts, (s, w, ev.units // 20), 1)
    c = np.sort(counts, axis=2)  # two groups share a state: the odd one is the max or the min
    assert 8 < c[..., 2].mean() < 13 and c[..., 0].mean() < 3
    # the class is which two groups agree: the two closest counts in a window point at the pair
    # overlap' = 1 means identical on/off distributions: mixing 1, both means 5
    assert overlap_to_mix(1.0) == 1.0 and overlap_to_mix(0.0) == 0.0
    mixes = [overlap_to_mix(o) for o in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert mixes == sorted(mixes) and 0 < mixes[0] < mixes[-1] < 1
    on, off = _count_distributions(1.0, 20)
    np.testing.assert_allclose(on, off)
    for o in (0.3, 0.7):
        on, off = _count_distributions(overlap_to_mix(o), 20)
        assert abs(np.minimum(on, off).sum() - o) < 0.01


def test_paper_coincidence_counts_carry_no_class():
    ev = make_paper_coincidence(300, overlap=0.0, seed=4, duration_ms=1000.0)
    assert count_baseline(ev) < 0.5  # 3 classes: per-neuron counts do not tell which two groups agree


def test_make_task_errors_name_the_flag():
    with pytest.raises(EventsnnError, match="--overlap applies to the coincidence tasks only"):
        make_task("paper-isi", overlap=0.2)
    with pytest.raises(EventsnnError, match="--max-isi-ms applies to paper-isi and paper-ccisi only"):
        make_task("paper-coincidence", max_isi_ms=50)
    with pytest.raises(EventsnnError, match="--units must be an even number"):
        make_task("paper-ccisi", units=3)
    with pytest.raises(EventsnnError, match="--classes: paper-isi has 2 classes"):
        make_task("paper-isi", classes=4)
    r = run_cli("data", "make", "paper-isi", "--max-isi-ms", "20000", "--out", "/tmp/never.h5")
    assert r.returncode == 2 and "--max-isi-ms must be in [1, duration)" in r.stderr
    assert not Path("/tmp/never.h5").exists()


# ----------------------------------------------------------------------------- speech: whole / part / norm

def _mini_official(path, n, seed, classes=4):
    """Official-layout file: 40 busy channels (3..6 spikes, always >= 2 except in a few samples), the rest sparse."""
    rng = np.random.default_rng(seed)
    times, units = [], []
    for i in range(n):
        busy = np.repeat(np.arange(40), rng.integers(3, 7, 40))
        if i % 150 == 5:
            busy = busy[busy != 7]  # channel 7 silent in ~1% of samples: those samples are dropped
        sparse = rng.choice(np.arange(40, 700), 30, replace=False)
        u = np.concatenate([busy, sparse])
        t = rng.uniform(0, 1.3, len(u))
        if i == 0:
            t[:3] = [1.39, 1.45, 2.0]  # past the last edge: the authors clamp these into the last bin
        times.append(t)
        units.append(u)
    labels = rng.integers(0, classes, n)
    return write_mini_shd(path, times, units, labels)


def _authors_raster(ev):
    """Independent reference: the authors' dense binning of one official file (np.digitize, clamp, binary,
    whole batches of 256)."""
    n = (len(ev) // 256) * 256
    X = np.zeros((n, ev.n_units, 100), np.uint8)
    edges = np.linspace(0, 1.4, 100)
    for i in range(n):
        t, u = ev.sample(i)
        b = np.digitize(t, edges)
        b[b >= 100] = 99
        X[i, u, b] = 1
    return X, ev.labels[:n]


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    d = tmp_path_factory.mktemp("official")
    tr = _mini_official(d / "shd_train.h5", 300, 1)
    te = _mini_official(d / "shd_test.h5", 270, 2)
    return tr, te


def _dense(ev, n_bins=N_BINS):
    bin_ms = 1400 / 99
    X = np.zeros((len(ev), ev.n_units, n_bins), np.uint8)
    s = ev.sample_index()
    b = np.floor(ev.times * 1e3 / bin_ms).astype(int)
    X[s, ev.units, b] = 1
    return X


def test_prepare_whole_equals_the_authors_binning(official):
    tr, te = (load_any(p) for p in official)
    train, val, test, summary = prepare_speech([tr, te], "shd", "whole")
    Xa, Ya = _authors_raster(tr)
    Xb, Yb = _authors_raster(te)
    X, Y = np.concatenate([Xa, Xb]), np.concatenate([Ya, Yb])
    N = len(Y)
    assert summary["samples_binned"] == N == 512  # 300 -> 256 and 270 -> 256 (whole batches only)
    assert (len(train), len(val), len(test)) == (int(N * .6), int(N * .75) - int(N * .6), int(N * .9) - int(N * .75))
    np.testing.assert_array_equal(_dense(train), X[:len(train)])  # whole: not shuffled, train file first
    np.testing.assert_array_equal(test.labels, Y[int(N * .75):int(N * .9)])
    np.testing.assert_array_equal(_dense(test), X[int(N * .75):int(N * .9)])
    assert train.duration_s == pytest.approx(200 * 1.4 / 99)


def test_prepare_norm_and_part(official):
    tr, te = (load_any(p) for p in official)
    *norm, sn = prepare_speech([tr, te], "shd", "norm", seed=5)
    *part, sp = prepare_speech([tr, te], "shd", "part", seed=5)
    assert sn["channels"] == sp["channels"] == norm[0].n_units == part[0].n_units
    assert 40 <= sn["channels"] < 100  # the busy channels, plus sparse ones that fire in every kept sample: none
    assert sn["samples_removed"] == sp["samples_removed"] > 0  # channel 7's silent samples (<= 1% each)
    allnorm = [c for ev in norm for c in ev.counts()]
    allnorm = np.array(allnorm)
    assert np.all(allnorm == allnorm[0]), "norm: every channel fires the same count in every sample"
    assert allnorm[0].min() >= 1 and allnorm[0].sum() == sn["spikes_per_sample_norm"]
    for ev in norm + part:
        assert len(np.unique(ev.labels)) > 1
    labels = np.concatenate([ev.labels for ev in part])
    counts = np.bincount(labels)
    assert counts.max() - counts.min() <= max(2, 0.35 * counts.mean())  # balanced before the 60/15/15 cut
    # part keeps original spikes: more than norm
    assert part[0].counts().sum(1).mean() > norm[0].counts().sum(1).mean()


def test_data_prepare_cli_writes_three_files_and_refuses_bad_input(official, tmp_path):
    tr, te = official
    r = run_cli("data", "prepare", "shd", "--train", tr, "--test", te, "--variant", "norm", "--out", tmp_path / "n",
                "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert {f.name for f in (tmp_path / "n").iterdir()} >= {"train.h5", "val.h5", "test.h5", "summary.json"}
    assert load_any(tmp_path / "n" / "train.h5").n_units == s["units"]
    before = Path(tr).read_bytes()
    r = run_cli("data", "prepare", "shd", "--train", tr, "--test", te, "--variant", "norm", "--out", tr)
    assert r.returncode == 2 and "is the input" in r.stderr and Path(tr).read_bytes() == before
    other = make_task("isi", samples=10)
    from eventsnn.data.events import save_events
    save_events(other, tmp_path / "ours.h5")
    r = run_cli("data", "prepare", "shd", "--train", tmp_path / "ours.h5", "--test", te, "--variant", "whole",
                "--out", tmp_path / "w")
    assert r.returncode == 2 and "official SHD/SSC files (700 channels)" in r.stderr and not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- sweeps

@pytest.mark.parametrize("config", ["isi_randomisation", "ccisi_max_isi", "coincidence_overlap"])
def test_paper_synthetic_configs_run_quick(config, tmp_path):
    out = tmp_path / "sweep"
    r = run_cli("sweep", PAPER / f"{config}.yaml", "--out", out, "--quick", "--workers", "2", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["done"] == res["cells"] == res["ran"] >= 4
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == res["cells"]
    assert all(0 <= x["test_acc"] <= 1 and "reverse-window" in x["probes"] for x in rows)
    assert {x["cell"]["model"] for x in rows} == {"none", "axonal"}
    assert (out / "figure.png").stat().st_size > 1000
    table = (out / "table.md").read_text()
    assert "| axonal | 1 |" in table and "| none | 1 |" in table
    # resumable: nothing runs again
    r = run_cli("sweep", PAPER / f"{config}.yaml", "--out", out, "--quick", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ran"] == 0


@pytest.mark.parametrize("variant", ["whole", "part", "norm"])
def test_paper_speech_configs_run_quick(variant, official, tmp_path):
    tr, te = official
    data = tmp_path / f"shd_{variant}"
    assert run_cli("data", "prepare", "shd", "--train", tr, "--test", te, "--variant", variant,
                   "--out", data).returncode == 0
    cfg = yaml.safe_load((PAPER / f"shd_{variant}.yaml").read_text())
    cfg["data"]["prepared"] = str(data)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "sweep"
    r = run_cli("sweep", tmp_path / "c.yaml", "--out", out, "--quick", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == json.loads(r.stdout)["cells"] >= 2
    for x in rows:
        v = x["verify"]  # the selected model verified: torch vs Brian2 at the training dt, exact event engine
        assert v["brian2-dt14.1414-none"]["agreement_with_torch"] == 1.0
        assert v["brian2-dt14.1414-none"]["spike_mismatch"] == 0
        assert "event-none" in v and "brian2-dt14.1414-reverse-window" in v


def test_sweep_resumes_after_a_kill_and_refuses_a_changed_config(tmp_path):
    cfg = yaml.safe_load((PAPER / "coincidence_overlap.yaml").read_text())
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "s"
    r = run_cli("sweep", tmp_path / "c.yaml", "--out", out, "--quick", "--json")
    assert r.returncode == 0, r.stderr
    lines = (out / "results.jsonl").read_text().splitlines()
    # a kill while writing the last line leaves it cut: that cell (and only it) runs again
    (out / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    r = run_cli("sweep", tmp_path / "c.yaml", "--out", out, "--quick", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ran"] == 1
    # verification added to the config afterwards: the trained cells are verified, not retrained
    from eventsnn.sweep import read_results
    before = {json.dumps(x["cell"], sort_keys=True): x for x in read_results(out / "results.jsonl")}
    cfg["verify"] = {"dt": [0.5], "samples": 2, "probes": "reverse-window"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = run_cli("sweep", tmp_path / "c.yaml", "--out", out, "--quick", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["ran"] == 0 and res["verified"] == res["cells"] == 4
    rows = read_results(out / "results.jsonl")
    assert len(rows) == 4
    for x in rows:
        old = before[json.dumps(x["cell"], sort_keys=True)]
        assert x["test_acc"] == old["test_acc"] and x["train_seconds"] == old["train_seconds"]  # not retrained
        assert x["verify"]["brian2-dt1-none"]["spike_mismatch"] == 0 and "brian2-dt0.5-reverse-window" in x["verify"]
    assert "verify brian2-dt0.5-none (%)" in (out / "table.md").read_text()
    r = run_cli("sweep", tmp_path / "c.yaml", "--out", out, "--quick", "--json")  # nothing left to do
    assert json.loads(r.stdout)["verified"] == 0 and json.loads(r.stdout)["ran"] == 0
    # a seed added and a grid value dropped: only the new seed's cells train; the table shows the config's grid
    cfg["seeds"] = [0, 1]
    cfg["quick"]["data"]["grid"]["overlap"] = [0.0]
    del cfg["verify"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = run_cli("sweep", tmp_path / "c.yaml", "--out", out, "--quick", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["cells"] == res["done"] == 4 and res["ran"] == 2 and res["verified"] == 0
    rows = read_results(out / "results.jsonl")
    assert len(rows) == 6  # the dropped level's records are kept in the file
    for x in rows:
        if x["cell"]["seed"] == 0:
            assert x["test_acc"] == before[json.dumps(x["cell"], sort_keys=True)]["test_acc"]
    table = [ln for ln in (out / "table.md").read_text().splitlines() if ln.startswith("| 0 |")]
    assert len(table) == 2 and all(ln.split(" | ")[2] == "2" for ln in table), table
    assert not any(ln.startswith("| 1 |") for ln in (out / "table.md").read_text().splitlines())
    for key, value, what in (("train", {**cfg["train"], "lr": 0.003}, "train"),
                             ("models", {**cfg["models"], "none": {"delays": "none", "recurrent": True}},
                              "models.none"),
                             ("probes", [], "probes")):
        bad = {**cfg, key: value}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(bad))
        r = run_cli("sweep", tmp_path / "c.yaml", "--out", out, "--quick")
        assert r.returncode == 2 and f"different config ({what} changed)" in r.stderr, r.stderr
        assert len(read_results(out / "results.jsonl")) == 6


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["data"].update(task="nope"), "data.task: unknown task 'nope'"),
    (lambda c: c["data"].setdefault("options", {}).update(bogus=1), "unknown task option 'bogus'"),
    (lambda c: c["models"]["axonal"].update(delays="sideways"), "models.axonal / train: delays"),
    (lambda c: c["train"].update(seed=3), "seed is set by the sweep"),
    (lambda c: c.update(probes=["wobble"]), "probes: unknown probe 'wobble'"),
    (lambda c: c["figure"].update(x="nothing"), "figure.x: 'nothing' is not swept"),
    (lambda c: c.update(extra=1), "extra: Extra inputs are not permitted"),
])
def test_sweep_config_errors_are_one_line_and_write_nothing(mutate, message, tmp_path):
    cfg = yaml.safe_load((PAPER / "coincidence_overlap.yaml").read_text())
    mutate(cfg)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = run_cli("sweep", tmp_path / "c.yaml", "--out", tmp_path / "s")
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "s").exists()


def test_prepare_reads_files_in_chunks_like_events(official):
    """The path reader (chunked, what the CLI uses) and the Events reader give identical datasets."""
    from eventsnn.data.paper import _bin_like_authors

    tr, te = official
    a = prepare_speech([tr, te], "shd", "norm", seed=3)
    b = prepare_speech([load_any(tr), load_any(te)], "shd", "norm", seed=3)
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x.times, y.times)
        np.testing.assert_array_equal(x.units, y.units)
        np.testing.assert_array_equal(x.labels, y.labels)
    k1 = _bin_like_authors(tr, chunk=100)[0]
    k2 = _bin_like_authors(load_any(tr), chunk=7)[0]
    np.testing.assert_array_equal(k1, k2)
