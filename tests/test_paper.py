"""The paper's datasets (generators and the speech pipeline) and the sweep command."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import run_cli, write_mini_shd
from eventsnn.bridge import load_network
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


@pytest.mark.parametrize("variant", ["whole", "part", "norm"])
def test_prepare_carries_speaker_ids_with_their_samples(official, variant):
    """Every prepared sample keeps the speaker id of the sample it was made from (selection, balancing, split)."""
    tr, te = (load_any(p) for p in official)
    te.speakers = te.speakers + 1000  # ids unique over both files: an id names its source sample
    (Xa, Ya), (Xb, Yb) = _authors_raster(tr), _authors_raster(te)
    X, Y = np.concatenate([Xa, Xb]), np.concatenate([Ya, Yb])
    source = {int(s): i for i, s in enumerate(np.concatenate([tr.speakers[:len(Ya)], te.speakers[:len(Yb)]]))}
    *splits, summary = prepare_speech([tr, te], "shd", variant, seed=5)
    ids = np.concatenate([ev.speakers for ev in splits])
    assert len(np.unique(ids)) == len(ids) == sum(map(len, splits))  # no sample twice
    for ev in splits:
        idx = np.array([source[int(s)] for s in ev.speakers])
        np.testing.assert_array_equal(ev.labels, Y[idx])
        if variant == "whole":
            np.testing.assert_array_equal(_dense(ev), X[idx])
        else:  # the kept channels of the source sample: norm keeps a subset of its spikes, part all of them
            kept = _dense(ev).sum((1, 2))
            assert np.all(kept >= 1) and np.all(kept <= X[idx].sum((1, 2)))
    # a file without speaker ids gives prepared samples without them
    tr.speakers = None
    assert all(ev.speakers is None for ev in prepare_speech([tr, te], "shd", variant, seed=5)[:3])


def test_data_prepare_cli_writes_three_files_and_refuses_bad_input(official, tmp_path):
    tr, te = official
    r = run_cli("data", "prepare", "shd", "--train", tr, "--test", te, "--variant", "norm", "--out", tmp_path / "n",
                "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert {f.name for f in (tmp_path / "n").iterdir()} >= {"train.h5", "val.h5", "test.h5", "summary.json"}
    prepared = load_any(tmp_path / "n" / "train.h5")
    assert prepared.n_units == s["units"]
    # the official files' extra/speaker ids (0..299 and 0..269 here) are carried, not replaced by zeros
    assert prepared.speakers.max() > 0 and prepared.speakers.max() < 300
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

@pytest.mark.parametrize("config", ["isi_randomisation", "ccisi_max_isi", "coincidence_overlap",
                                    "isi_randomisation_srm", "ccisi_max_isi_srm", "coincidence_overlap_srm"])
def test_paper_synthetic_configs_run_quick(config, tmp_path):
    """Each synthetic experiment runs end to end with our LIF models and, in its *_srm variant (extends: the LIF
    config), with the authors' SRM network and recipe (a model's preset:, under the sweep's shared schedule)."""
    models = {"srm-axonal", "srm-none"} if config.endswith("_srm") else {"axonal", "none"}
    out = tmp_path / "sweep"
    r = run_cli("sweep", PAPER / f"{config}.yaml", "--out", out, "--quick", "--workers", "2", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["done"] == res["cells"] == res["ran"] >= 4
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == res["cells"]
    assert all(0 <= x["test_acc"] <= 1 and "reverse-window" in x["probes"] for x in rows)
    assert not any(x["still_improving"] for x in rows)  # one epoch: nothing to compare with
    # workers report their merge counts even when 0 (for totals); a cell's record keeps only real merges
    assert not any(" merged 0 of " in w for x in rows for w in x.get("warnings", [])), rows[0].get("warnings")
    assert {x["cell"]["model"] for x in rows} == models
    assert (out / "figure.png").stat().st_size > 1000
    table = (out / "table.md").read_text()
    assert all(f"| {m} | 1 |" in table for m in models)
    if config.endswith("_srm"):
        from eventsnn.sweep import _digest
        for x in rows:
            run = json.loads((out / "cells" / _digest(x["cell"]) / "run" / "config.json").read_text())
            assert run["neuron"] == "srm" and run["loss"] == "prob" and run["readout"] == "count"
            assert run["optimizer"] == "nadam" and run["patience"] == 30 and run["epochs"] == 1
            assert run["delays"] == ("none" if x["cell"]["model"] == "srm-none" else "axonal")
            assert run["hidden"] == ([3] if config.startswith("coincidence") else [8])
    # resumable: nothing runs again
    r = run_cli("sweep", PAPER / f"{config}.yaml", "--out", out, "--quick", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ran"] == 0


@pytest.fixture(scope="module")
def prepared_whole(official, tmp_path_factory):
    tr, te = official
    data = tmp_path_factory.mktemp("prepared") / "whole"
    assert run_cli("data", "prepare", "shd", "--train", tr, "--test", te, "--variant", "whole",
                   "--out", data).returncode == 0
    return data


@pytest.mark.parametrize("config", sorted(p.stem for p in PAPER.glob("*.yaml")))
def test_every_paper_config_loads(config, prepared_whole, tmp_path):
    """Every config of examples/paper/ passes the sweep's checks, as written and with --quick (the speech configs
    with their prepared directory pointed at a miniature one; some run end to end below)."""
    from eventsnn.sweep import load_config

    cfg = yaml.safe_load((PAPER / f"{config}.yaml").read_text())
    if cfg.get("data", {}).get("prepared"):
        cfg["data"]["prepared"] = str(prepared_whole)
    if cfg.get("extends"):
        cfg["extends"] = str(PAPER / cfg["extends"])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    for quick in (False, True):
        sc = load_config(tmp_path / "c.yaml", quick=quick)
        assert sc.name == cfg["name"] and sc.seeds
        assert set(sc.models) == {k for k, v in cfg["models"].items() if v is not None}


@pytest.mark.parametrize("config", ["shd_whole", "shd_part", "shd_norm", "shd_part_jitter", "shd_part_jitter_neuron",
                                    "shd_part_delete", "digits_whole"])
def test_paper_speech_configs_run_quick(config, official, tmp_path):
    tr, te = official
    variant = config.split("_")[1]
    data = tmp_path / f"shd_{variant}"
    assert run_cli("data", "prepare", "shd", "--train", tr, "--test", te, "--variant", variant,
                   "--out", data).returncode == 0
    cfg = yaml.safe_load((PAPER / f"{config}.yaml").read_text())
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
    levels = {tuple(x["cell"]["transforms"].items()) for x in rows}  # each level retrained, every model
    quick_levels = next(iter(cfg["quick"].get("transforms", {"": [None]}).values()))
    assert len(levels) == len(quick_levels) and len(rows) == len(cfg["models"]) * len(levels)
    if config == "digits_whole":  # the sweep's models verified with the clock's ceiling (docs/paper.md)
        ref = tmp_path / "refractory"
        p = subprocess.run([sys.executable, str(PAPER / "clock_ceiling.py"), "--sweep", out, "--data",
                            data / "test.h5", "--out", ref, "--workers", "1", "--target", "numpy", "--first", "3"],
                           capture_output=True, text=True, env=dict(os.environ, EVENTSNN_PROGRESS="0"), timeout=900)
        assert p.returncode == 0, p.stderr
        got = json.loads((ref / "refractory.json").read_text())["rows"]
        assert sorted((r["model"], r["seed"]) for r in got) == sorted((x["cell"]["model"], 0) for x in rows)
        for r in got:
            assert r["samples"] == 3
            for probe in ("none", "reverse-window", "reverse-full"):
                assert r[probe]["brian2_spike_mismatch"] == 0 and r[probe]["clock_torch"] == r[probe]["clock_brian2"]
        for net in ref.glob("*/network_refractory.h5"):
            n = load_network(net)
            assert all(np.all(L.refractory_ms == n.dt_ms) for L in n.layers if L.kind == "lif")
        assert "| -- | axonal | 0 |" in (ref / "refractory.md").read_text()
        before = {f: f.stat().st_mtime_ns for f in ref.glob("*/verify/report.json")}
        p = subprocess.run([sys.executable, str(PAPER / "clock_ceiling.py"), "--sweep", out, "--data",
                            data / "test.h5", "--out", ref, "--workers", "1", "--target", "numpy", "--first", "3"],
                           capture_output=True, text=True, env=dict(os.environ, EVENTSNN_PROGRESS="0"), timeout=300)
        assert p.returncode == 0, p.stderr  # resumed: nothing verified again, the same rows
        assert {f: f.stat().st_mtime_ns for f in ref.glob("*/verify/report.json")} == before and len(before) == len(got)
        assert json.loads((ref / "refractory.json").read_text())["rows"] == got


def test_sweep_config_extends_a_base_config(prepared_whole, tmp_path):
    """``extends:`` reads a base config and overrides it key by key: mappings merged, lists replaced, null removes
    a key; a relative data.prepared of the base still points at its directory from the variant's."""
    from eventsnn.sweep import load_config

    base = load_config(PAPER / "coincidence_overlap.yaml")
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "small.yaml").write_text(yaml.safe_dump({
        "extends": str(Path(os.path.relpath(PAPER, tmp_path / "v")) / "coincidence_overlap.yaml"),
        "data": {"train_samples": 120, "grid": {"overlap": [0.0, 1.0]}},
        "models": {"axonal": None}, "train": {"epochs": 7}, "seeds": [4]}))
    (tmp_path / "v" / "smaller.yaml").write_text("extends: small.yaml\ntrain: {hidden: [8]}\nverify: null\n")
    for name in ("small", "smaller"):
        got = load_config(tmp_path / "v" / f"{name}.yaml")
        assert got.data.train_samples == 120 and got.data.test_samples == base.data.test_samples
        assert got.data.grid == {"overlap": [0.0, 1.0]} and got.data.task == base.data.task
        assert list(got.models) == [m for m in base.models if m != "axonal"] and got.seeds == [4]
        assert got.train == {**base.train, "epochs": 7, **({"hidden": [8]} if name == "smaller" else {})}
        assert (got.verify is None) == (name == "smaller") and got.figure == base.figure and got.name == base.name
    # a base reading a prepared directory by a relative path, extended from another directory
    (tmp_path / "b").mkdir()
    shutil.copytree(prepared_whole, tmp_path / "b" / "whole")
    cfg = yaml.safe_load((PAPER / "digits_whole.yaml").read_text())
    cfg["data"]["prepared"] = "whole"
    (tmp_path / "b" / "base.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "v" / "speech.yaml").write_text("extends: ../b/base.yaml\nseeds: [0]\n")
    got = load_config(tmp_path / "v" / "speech.yaml")
    assert (tmp_path / "v" / got.data.prepared).resolve() == (tmp_path / "b" / "whole").resolve()
    # a model given with its own preset replaces the base's model of that name (the preset's delay cap, not the
    # base's 15 ms); a null inside quick:, train: or a model is the value null, not a removal
    cfg = yaml.safe_load((PAPER / "coincidence_overlap.yaml").read_text())
    cfg["quick"].pop("verify")
    cfg["quick"]["models"] = {"axonal": {"max_delay_ms": 10}}
    (tmp_path / "v" / "own.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "v" / "srm.yaml").write_text(yaml.safe_dump({
        "extends": "own.yaml", "models": {"axonal": {"preset": "paper-isi"}, "none": {"dt_ms": 1.0}},
        "quick": {"verify": None}}))
    got = load_config(tmp_path / "v" / "srm.yaml")
    assert got.models == {"none": {"delays": "none", "dt_ms": 1.0}, "axonal": {"preset": "paper-isi"}}
    assert got.verify is not None and load_config(tmp_path / "v" / "srm.yaml", quick=True).verify is None
    assert load_config(tmp_path / "v" / "own.yaml", quick=True).models["axonal"]["max_delay_ms"] == 10
    # (the base's quick settings of the replaced model go with it)
    assert "max_delay_ms" not in load_config(tmp_path / "v" / "srm.yaml", quick=True).models["axonal"]


def test_sweep_refuses_to_resume_when_a_models_preset_changed(tmp_path):
    """A resumed sweep compares each model's settings with its preset expanded: cells trained under another
    version of a preset are not mixed into one table."""
    from eventsnn.sweep import load_config, model_settings

    cfg = yaml.safe_load((PAPER / "coincidence_overlap.yaml").read_text())
    cfg["models"] = {"srm": {"preset": "paper-isi", "delays": "none"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    c = load_config(tmp_path / "c.yaml")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.json").write_text(json.dumps({
        "config": c.model_dump(mode="json"), "quick": False,
        "model_settings": {"srm": {**model_settings(c, "srm"), "lr": 0.5}}}))
    r = run_cli("sweep", tmp_path / "c.yaml", "--out", tmp_path / "s")
    assert r.returncode == 2, r.stderr
    assert "different config (models.srm: the settings of its preset changed)" in r.stderr, r.stderr
    assert sorted(x.name for x in (tmp_path / "s").iterdir()) == ["sweep.json"]


@pytest.mark.parametrize("config", sorted(p.parent.name for p in (ROOT / "results" / "paper").glob("*/config.yaml")))
def test_saved_sweep_variants_resume_their_results(config):
    """A results/paper variant (extends: an examples/paper config) still describes the cells it trained: rerunning
    its command resumes them instead of refusing a changed config."""
    from eventsnn.sweep import _incompatible, cells, cell_key, load_config

    d = ROOT / "results" / "paper" / config
    cfg = load_config(d / "config.yaml")
    assert yaml.safe_load((d / "config.yaml").read_text()).get("extends")
    assert _incompatible(json.loads((d / "sweep.json").read_text())["config"], cfg.model_dump(mode="json")) is None
    wanted = {cell_key(c) for c in cells(cfg)}
    done = [json.loads(x)["cell"] for x in (d / "results.jsonl").read_text().splitlines()]
    assert done and all(cell_key(c) in wanted for c in done)


def test_sweep_resumes_after_a_kill_and_refuses_a_changed_config(tmp_path):
    cfg = yaml.safe_load((PAPER / "coincidence_overlap.yaml").read_text())
    cfg.pop("verify"), cfg["quick"].pop("verify")  # trained without verification first; a verify block comes later
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
    # records written before the verify block had fine_samples: the same verification, not redone
    recs = read_results(out / "results.jsonl")
    for x in recs:
        del x["verify_spec"]["fine_samples"]
    (out / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in recs))
    r = run_cli("sweep", tmp_path / "c.yaml", "--out", out, "--quick", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["verified"] == 0, r.stderr
    # the whole test file, Brian2 and the fine dt on its first sample only
    cfg["verify"] = {"dt": [0.5], "samples": "all", "fine_samples": 1, "probes": ""}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = run_cli("sweep", tmp_path / "c.yaml", "--out", out, "--quick", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["verified"] == 4, r.stderr
    for x in read_results(out / "results.jsonl"):
        n_test = x["verify_samples"]
        assert n_test > 1 and x["verify"]["event-none"]["samples"] == x["verify"]["torch-dt1-none"]["samples"] == n_test
        assert x["verify"]["brian2-dt1-none"]["samples"] == x["verify"]["brian2-dt0.5-none"]["samples"] == 1
    assert ": brian2-dt0.5-none N = 1; brian2-dt1-none N = 1; event-none N = " in (out / "table.md").read_text()
    cfg["verify"] = {"dt": [0.5], "samples": 2, "probes": "reverse-window"}
    # a seed added and a grid value dropped: only the new seed's cells train; the table shows the config's grid
    cfg["quick"]["seeds"] = [0, 1]
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
    (lambda c: c["models"].update(srm={"preset": "nope"}), "models.srm.preset: unknown preset 'nope' (choose from"),
    (lambda c: c.update(extends="nope.yaml"), "nope.yaml does not exist"),
    (lambda c: c.update(extends="c.yaml"), "extends: c.yaml makes a cycle ("),
    (lambda c: c.update(extends="."), "is not a file"),
    (lambda c: c.update(quick=[1]), "quick: give a mapping of settings, not list"),
    (lambda c: c["train"].update({3: 1}), "train: 3 is not a setting name"),
    (lambda c: c["quick"].update(models={"srm": {"hidden": [4]}}), "quick.models.srm: not a model of this sweep"),
    (lambda c: c.update(extends=["a.yaml"]), "extends: give the path of a sweep config"),
    (lambda c: c.update(verify={"samples": 0}), "verify.samples: Value error, samples must be a positive count or 'all'"),
    (lambda c: c.update(transforms={"jitter:bins": [1]}), "transforms.jitter:bins: transform 'jitter:bins': write "
                                                            "it as a probe with * where the level goes"),
    (lambda c: c.update(transforms={"randomize:*": [2]}), "transforms.randomize:*: randomised fraction must be in [0, 1]"),
    (lambda c: c.update(transforms={"randomize": [0.5]}), "transforms.randomize: 'randomize' alone was the rule of "
                                                           "earlier versions"),
    (lambda c: c.update(transforms={"jitter:*bins": [1]}), "transforms.jitter:*bins: in bins, but data.task "
                                                             "paper-coincidence makes events on a 1 ms grid"),
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


# ----------------------------------------------------------------------------- the authors' rules, one by one

def _on_slots(samples, n_units, T, bin_ms=None, labels=None):
    """Events whose spikes sit in given slots (``samples``: one {unit: [slots]} per sample), at the slot's start
    on a 1 ms grid or at the bin centre on a bin grid (``bin_ms``, recorded in meta as data prepare does)."""
    from eventsnn.data.events import Events

    w, phase = (1.0, 0.0) if bin_ms is None else (bin_ms, 0.5 * bin_ms)
    tl = [[(s * w + phase) * 1e-3 for u, ss in d.items() for s in ss] for d in samples]
    ul = [[u for u, ss in d.items() for _ in ss] for d in samples]
    ev = Events.from_lists(tl, ul, np.zeros(len(samples)) if labels is None else labels, n_units, T * w * 1e-3,
                           1 if labels is None else int(max(labels)) + 1).validate()
    if bin_ms is not None:
        ev.meta["bin_ms"] = bin_ms
    return ev


def _slots_of(ev, w=1.0):
    """{(sample, unit): sorted slots} and the in-slot positions (ms) of all spikes."""
    t_ms = ev.times * 1e3
    slot = np.floor(t_ms / w + 1e-3).astype(int)
    out = {}
    for s, u, b in zip(ev.sample_index(), ev.units, slot):
        out.setdefault((int(s), int(u)), []).append(int(b))
    return {k: sorted(v) for k, v in out.items()}, t_ms - slot * w


BIN_MS = 1400 / 99


def test_randomize_moves_floor_fn_spikes_to_free_1ms_slots():
    """The authors' rule for the synthetic tasks (``isi_delay.py``, ``partial_randomize_spike_train``): for each
    neuron, ``num = int(len(spikes) * f)`` spikes chosen without replacement are removed, then uniform draws over
    the T 1-ms slots place a spike wherever the neuron has none, until it has its original count: exactly
    floor(f n) spikes move (f n in floating point: int(100 * 0.29) = 28), none merges, the count is kept."""
    from eventsnn.data.transforms import RandomizeTiming

    sparse = _on_slots([{0: list(range(0, 1000, 10))}], 1, 100_000)  # 100 spikes in 100 s
    out = RandomizeTiming(0.29, seed=3)(sparse)
    before, after = _slots_of(sparse)[0][(0, 0)], _slots_of(out)[0][(0, 0)]
    assert len(after) == 100 and len(set(after)) == 100
    assert len(set(before) - set(after)) == 28  # int(28.999999999999996): floor, not round (29)
    # dense: 18 spikes in 20 slots, half move: only the free slots can take them, so none merges
    rng = np.random.default_rng(0)
    dense = _on_slots([{0: sorted(rng.choice(20, 18, replace=False).tolist())} for _ in range(100)], 1, 20)
    out = RandomizeTiming(0.5, seed=1)(dense)
    got, phase = _slots_of(out)
    assert all(len(v) == 18 == len(set(v)) for v in got.values()) and len(got) == 100
    assert out.meta["randomize_lost_spikes"] == 0 and np.allclose(phase, 0)  # still on the 1 ms grid
    # 9 leave, and 9 of the 11 free slots (the 9 just freed and the 2 empty ones) are drawn uniformly: the
    # number of the 2 empty slots taken is hypergeometric, mean 9 * 2 / 11
    moved = [len(set(_slots_of(dense)[0][k]) - set(v)) for k, v in got.items()]
    assert max(moved) <= 2 and abs(np.mean(moved) - 18 / 11) < 0.2
    isi = make_paper_isi(30, duration_ms=2000, seed=4)
    r = RandomizeTiming(1.0, seed=2)(isi)
    np.testing.assert_array_equal(r.counts(), isi.counts())
    assert np.allclose(r.times * 1e3, np.round(r.times * 1e3))


def test_randomize_each_moves_every_spike_with_probability_f_on_the_padded_bins():
    """The authors' speech rule (``shd_train.py`` and the SSC ``data_*_pre.py``): on the binary raster padded to
    T = 200 bins, each neuron's spikes in time order move with probability f: the bin is emptied, then up to 50
    uniform draws over the 200 bins look for one free of the neuron's spikes; a spike that finds none is lost."""
    from eventsnn.data.transforms import RandomizeTiming

    rng = np.random.default_rng(1)
    ev = _on_slots([{u: sorted(rng.choice(100, 4, replace=False).tolist()) for u in range(5)} for _ in range(300)],
                   5, 200, bin_ms=BIN_MS)
    before = _slots_of(ev, BIN_MS)[0]
    for f, lo, hi in ((0.0, 0.0, 0.0), (0.5, 0.45, 0.53), (1.0, 0.97, 1.0)):
        out = RandomizeTiming(f, seed=5, rule="each")(ev)
        after, phase = _slots_of(out, BIN_MS)
        assert np.allclose(phase, BIN_MS / 2)  # still at the bin centres
        np.testing.assert_array_equal(out.counts(), ev.counts())  # sparse: a free bin is always found
        changed = sum(len(set(before[k]) - set(v)) for k, v in after.items()) / len(ev.times)
        assert lo <= changed <= hi, (f, changed)
    allb = np.concatenate([v for v in after.values()])
    assert allb.max() >= 150 and allb.max() <= 199  # into the padded bins 100..199, as their raster
    # a neuron firing in all 200 bins: each spike finds only its own bin free, often not within 50 draws: lost
    full = _on_slots([{0: list(range(200))}], 1, 200, bin_ms=BIN_MS)
    out = RandomizeTiming(1.0, seed=0, rule="each")(full)
    assert 0 < out.meta["randomize_lost_spikes"] == 200 - len(out.times)
    assert len(set(_slots_of(out, BIN_MS)[0][(0, 0)])) == len(out.times)


def test_jitter_in_bins_per_spike_is_the_authors_rule():
    """The authors' ``jitter_per_spike`` (``pertubation/utils.py``), on the binned raster (speech: 200 bins of
    1.4 s / 99 = 14.14 ms): each neuron's spikes, in time order, go to clip(round(b + N(0, sigma)), 0, T - 1),
    redrawn (at most 500 times) while the bin already holds one of the neuron's placed spikes; sigma is in bins."""
    from eventsnn.data.transforms import Jitter, parse_probes

    rng = np.random.default_rng(2)
    ev = _on_slots([{u: sorted(rng.choice(np.arange(20, 80), 5, replace=False).tolist()) for u in range(4)}
                    for _ in range(200)], 4, 200, bin_ms=BIN_MS)
    (j,) = parse_probes("jitter:5bins", seed=3)
    assert j == Jitter(5.0, unit="bins", seed=3) and j.name == "jitter-5bins"
    np.testing.assert_array_equal(Jitter(0, unit="bins")(ev).times, ev.times)
    out = j(ev)
    np.testing.assert_array_equal(out.counts(), ev.counts())
    got, phase = _slots_of(out, BIN_MS)
    assert np.allclose(phase, BIN_MS / 2) and all(len(v) == len(set(v)) for v in got.values())
    before = _slots_of(ev, BIN_MS)[0]
    shift = np.concatenate([np.array(got[k]) - np.array(before[k]) for k in before])  # sorted: a lower bound
    assert 2.5 < np.abs(shift).mean() < 4.5  # E|round(N(0, 5))| ~ 4 bins (sorting pairs them up closer)
    edge = _on_slots([{0: [0, 1, 198, 199]}] * 50, 1, 200, bin_ms=BIN_MS)
    out = Jitter(30, unit="bins", seed=1)(edge)
    assert len(out.times) == len(edge.times) and out.times.max() < edge.duration_s  # clipped, never dropped
    with pytest.raises(EventsnnError, match="needs binned events"):
        j(make_paper_isi(5, duration_ms=500))


def test_jitter_per_neuron_in_bins_shifts_each_neuron_by_20_plus_a_rounded_gaussian():
    """The authors' ``jitter_per_neuron`` (``pertubation/utils.py``): per sample and neuron one
    d = round(N(0, sigma)) bins; every spike of the neuron goes to clip(b + 20 + d, 0, T - 1), and spikes landing
    in one bin merge (``np.unique``)."""
    from eventsnn.data.transforms import parse_probes, transform_by_name

    (j,) = parse_probes("jitter-neuron:0bins+20bins")
    assert j.name == "jitter-neuron-0bins+20bins" and transform_by_name(j.name) == j
    ev = _on_slots([{0: [10, 50], 1: [185, 190, 195]}], 2, 200, bin_ms=BIN_MS)
    got = _slots_of(j(ev), BIN_MS)[0]
    assert got == {(0, 0): [30, 70], (0, 1): [199]}  # +20 exactly; the three past the end merge into bin 199
    rng = np.random.default_rng(3)
    ev = _on_slots([{u: sorted(rng.choice(np.arange(40, 120), 4, replace=False).tolist()) for u in range(6)}
                    for _ in range(200)], 6, 200, bin_ms=BIN_MS)
    out = parse_probes("jitter-neuron:5bins+20bins", seed=4)[0](ev)
    before, after = _slots_of(ev, BIN_MS)[0], _slots_of(out, BIN_MS)[0]
    d = []
    for k in before:
        s = np.array(after[k]) - np.array(before[k])
        assert np.all(s == s[0])  # one shift for all spikes of a neuron in a sample
        d.append(s[0] - 20)
    assert abs(np.mean(d)) < 0.6 and 4.3 < np.std(d) < 5.7 and np.all(np.array(d) == np.round(d))


def test_remove_rate_is_the_authors_norm_rule():
    """The authors' ``create_min_count_dataset_return_mask`` and ``do_min_count`` (``shd_data_gen.py``): a neuron
    whose minimum count is below 2 is bad; its samples with fewer than 2 spikes are marked when they are at most
    1% of all samples (SHD); the marked samples go only if 0 < their number < 2000; N_f is the minimum over the
    kept samples; every kept sample keeps N_f random spikes of each neuron, so a bad neuron left at N_f = 1 stays
    with one spike (only neurons at N_f = 0 are empty and dropped); then class balance."""
    from eventsnn.data.paper import norm_selection
    from eventsnn.data.transforms import RemoveRate

    rng = np.random.default_rng(0)
    N = 200
    counts = np.stack([rng.integers(3, 6, N),                        # fine: N_f = 3
                       np.where(np.arange(N) % 2, 1, 3),              # 1 spike in half the samples: bad, kept, N_f 1
                       np.where(np.arange(N) == 7, 0, 4),             # silent in 1 sample (0.5%): that sample goes
                       np.where(np.arange(N) % 30 == 0, 0, 2)], 1)    # silent in 3.5%: not removable, N_f 0
    keep, Nf = norm_selection(counts, 0.01, 2000)
    np.testing.assert_array_equal(keep, np.delete(np.arange(N), 7))
    np.testing.assert_array_equal(Nf, [3, 1, 4, 0])
    keep, Nf = norm_selection(counts, 0.01, 1)  # the cap: 1 sample marked, not fewer than 1: nothing removed
    assert len(keep) == N and Nf[2] == 0
    labels = np.arange(N) % 4
    tl, ul = [], []
    for i in range(N):
        u = np.repeat(np.arange(4), counts[i])
        ul.append(u)
        tl.append(rng.uniform(0, 0.1, len(u)))
    from eventsnn.data.events import Events
    ev = Events.from_lists(tl, ul, labels, 4, 0.1, 4).validate()
    out = RemoveRate(seed=1)(ev)
    assert out.n_units == 3 and out.meta["remove_rate_samples_removed"] == 1
    assert (out.counts() == [3, 1, 4]).all()  # the N_f = 1 neuron is kept, as theirs
    assert np.ptp(np.bincount(out.labels)) == 0 and len(out) == 4 * 49  # class 3 lost sample 7


def test_ssc_split_is_shuffled_with_seed_42_like_the_authors(tmp_path):
    """The authors' SSC scripts (``data_whole_pre.py``, ``data_part_pre.py``, ``data_norm_pre.py``):
    ``np.random.seed(42); np.random.shuffle(arange(N))``, then n_train = int(0.6 N), n_val = int((0.75 - 0.6) N),
    n_test = int((0.9 - 0.75) N) of the shuffled indices; the files joined in the order train, test, valid."""
    files = [_mini_official(tmp_path / f"ssc_{n}.h5", k, s) for n, k, s in
             (("train", 260, 1), ("test", 300, 2), ("valid", 256, 3))]
    evs = [load_any(f) for f in files]
    train, val, test, summary = prepare_speech(evs, "ssc", "whole")
    rasters = [_authors_raster(e) for e in evs]
    X, Y = np.concatenate([r[0] for r in rasters]), np.concatenate([r[1] for r in rasters])
    N = len(Y)
    np.random.seed(42)
    perm = np.arange(N)
    np.random.shuffle(perm)
    n_tr, n_va, n_te = int(0.6 * N), int((0.75 - 0.6) * N), int((0.9 - 0.75) * N)
    assert (len(train), len(val), len(test)) == (n_tr, n_va, n_te) == (460, 115, 115)
    for ev, idx in ((train, perm[:n_tr]), (test, perm[n_tr + n_va:n_tr + n_va + n_te])):
        np.testing.assert_array_equal(ev.labels, Y[idx])
        np.testing.assert_array_equal(_dense(ev), X[idx])
    assert train.meta["bin_ms"] == pytest.approx(BIN_MS)


def test_data_make_help_shows_each_tasks_duration():
    r = run_cli("data", "make", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "isi 100," in text and "paper-isi 10000" in text and "paper-coincidence 4000" in text


def test_sweep_record_says_when_a_cell_hit_its_cap_while_improving(tmp_path):
    """A cell whose best validation epoch is among its last two when the epoch cap ends it is marked
    ``still_improving`` in results.jsonl (with the warning that says how to resume it); the configs' caps are the
    authors' budgets and no cell of a finished sweep should carry the mark."""
    cfg = yaml.safe_load((PAPER / "coincidence_overlap.yaml").read_text())
    cfg["models"] = {"none": {"delays": "none"}}
    cfg["quick"]["data"]["grid"]["overlap"] = [0.0]
    cfg["quick"]["train"]["epochs"] = 2
    cfg["quick"]["train"]["patience"] = 5
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = run_cli("sweep", tmp_path / "c.yaml", "--out", tmp_path / "s", "--quick", "--json")
    assert r.returncode == 0, r.stderr
    (rec,) = [json.loads(x) for x in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    assert rec["epochs_run"] == 2 and rec["still_improving"] is True
    assert any("while validation was still improving" in w for w in rec["warnings"])
