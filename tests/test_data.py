"""Issue: timing datasets, SHD/norm readers, transforms."""
import json

import h5py
import numpy as np
import pytest

from eventsnn.data.datasets import (count_baseline, feature_baseline, load_norm, make_coincidence, make_isi,
                               make_polychrony, split_indices)
from eventsnn.util.errors import EventsnnError
from eventsnn.data.events import Events, load_events, save_events
from eventsnn.data.transforms import Compose, Delete, Jitter, RandomizeTiming, RemoveRate, Reverse, parse_probes
from tests.conftest import run_cli, write_mini_shd


def _chance(ev):
    return np.bincount(ev.labels).max() / len(ev)


def _timing_features_polychrony(ev):
    """Per pair: mean signed lag between the two units' spikes (b minus a)."""
    P = ev.n_units // 2
    X = np.zeros((len(ev), P))
    for s in range(len(ev)):
        t, u = ev.sample(s)
        for p in range(P):
            X[s, p] = t[u == 2 * p + 1].mean() - t[u == 2 * p].mean()
    return X


def _timing_features_isi(ev):
    """Per unit: smallest interval between its spikes."""
    X = np.zeros((len(ev), ev.n_units))
    for s in range(len(ev)):
        t, u = ev.sample(s)
        for k in range(ev.n_units):
            X[s, k] = np.diff(np.sort(t[u == k])).min()
    return X


def _timing_features_coincidence(ev, windows=5, group=10):
    """Per window and group: spike count (which groups are on together in time)."""
    X = np.zeros((len(ev), windows, 3))
    for s in range(len(ev)):
        t, u = ev.sample(s)
        w = np.minimum((t / (ev.duration_s / windows)).astype(int), windows - 1)
        np.add.at(X[s], (w, u // group), 1)
    # agreement features: |g_i - g_j| per window
    d = np.stack([np.abs(X[:, :, 0] - X[:, :, 1]), np.abs(X[:, :, 0] - X[:, :, 2]),
                  np.abs(X[:, :, 1] - X[:, :, 2])], axis=2)
    return d.reshape(len(ev), -1)


@pytest.mark.parametrize("make,feat", [(make_isi, _timing_features_isi),
                                       (make_polychrony, _timing_features_polychrony),
                                       (make_coincidence, _timing_features_coincidence)])
def test_counts_at_chance_timing_far_above(make, feat):
    ev = make(samples=900, seed=3)
    base = count_baseline(ev)
    chance = _chance(ev)
    assert base <= chance + 0.06, (base, chance)
    timing = feature_baseline(feat(ev), ev.labels)
    assert timing >= chance + 0.4, (timing, chance)


def test_counts_identical_by_construction():
    for ev in (make_isi(samples=50), make_polychrony(samples=50)):
        c = ev.counts()
        assert (c == c[0]).all()


def test_coincidence_overlap_one_is_chance():
    ev = make_coincidence(samples=900, overlap=1.0, seed=4)
    assert feature_baseline(_timing_features_coincidence(ev), ev.labels) < _chance(ev) + 0.08


def test_train_and_test_share_class_structure():
    a, b = make_polychrony(samples=400, seed=1), make_polychrony(samples=400, seed=2)
    from sklearn.linear_model import LogisticRegression
    clf = LogisticRegression(max_iter=2000).fit(np.sign(_timing_features_polychrony(a)), a.labels)
    assert clf.score(np.sign(_timing_features_polychrony(b)), b.labels) > 0.95


def _tiny():
    return Events.from_lists([[0.001, 0.004, 0.006], [0.002, 0.009]], [[0, 1, 0], [2, 2]], [0, 1], 3, 0.01, 2)


def test_reverse_window_and_full_hand_computed():
    r = Reverse("window")(_tiny())
    # sample 0: first 1 ms, last 6 ms -> t -> 7 - t : 6, 3, 1 ms
    t0, u0 = r.sample(0)
    assert np.allclose(t0 * 1e3, [1, 3, 6]) and u0.tolist() == [0, 1, 0]
    t1, _ = r.sample(1)
    assert np.allclose(t1 * 1e3, [2, 9])
    f = Reverse("full")(_tiny())
    t0, u0 = f.sample(0)
    assert np.allclose(t0 * 1e3, [4, 6, 9]) and u0.tolist() == [0, 1, 0]


@pytest.mark.parametrize("mode", ["window", "full"])
def test_reverse_twice_is_identity(mode):
    ev = make_polychrony(samples=20, seed=5)
    back = Reverse(mode)(Reverse(mode)(ev))
    np.testing.assert_allclose(back.times, ev.times, atol=1e-12)
    np.testing.assert_array_equal(back.units, ev.units)


def test_transformed_samples_are_ordered_by_time_then_unit_as_a_lexsort():
    """Every transform's output orders each sample's spikes by time, then unit, and drops times outside
    [0, duration): the same events as one lexsort of (sample, time, unit), on random sets with ties, empty
    samples, out-of-range times and samples given out of order."""
    from eventsnn.data.transforms import _rebuild
    rng = np.random.default_rng(0)
    for _ in range(300):
        lens = rng.integers(0, 30, rng.integers(1, 6))
        ts = [np.round(rng.uniform(-0.1, 1.1, m), rng.integers(1, 3)) for m in lens]
        us = [rng.integers(0, 5, m) for m in lens]
        ev = Events.from_lists([np.clip(t, 0, 0.99) for t in ts], us, np.zeros(len(lens), int), 5, 1.0)
        s, t, u = np.repeat(np.arange(len(lens)), lens), np.concatenate(ts), np.concatenate(us)
        if rng.random() < 0.3:
            p = rng.permutation(len(s))
            s, t, u = s[p], t[p], u[p]
        keep = (t >= 0) & (t < 1.0)
        o = np.lexsort((u[keep], t[keep], s[keep]))
        out = _rebuild(ev, s.copy(), t.copy(), u.copy())
        np.testing.assert_array_equal(out.times, t[keep][o])
        np.testing.assert_array_equal(out.units, u[keep][o])
        np.testing.assert_array_equal(np.diff(out.offsets), np.bincount(s[keep], minlength=len(lens)))
        assert out.meta["dropped_spikes"] == int((~keep).sum())


def test_delete_jitter_randomize_invariants():
    ev = make_polychrony(samples=30, seed=6)
    assert len(Delete(0.0)(ev).times) == len(ev.times)
    assert len(Delete(1.0)(ev).times) == 0
    d = Delete(0.5, seed=1)(ev)
    assert 0.4 < len(d.times) / len(ev.times) < 0.6
    np.testing.assert_allclose(Jitter(0.0)(ev).times, ev.times)
    j = Jitter(1.0, seed=2)(ev)
    assert len(j.times) + j.meta["dropped_spikes"] == len(ev.times)
    jn = Jitter(2.0, per="neuron", seed=3)(make_isi(samples=5, seed=1))
    isi_before = np.diff(make_isi(samples=5, seed=1).sample(0)[0][make_isi(samples=5, seed=1).sample(0)[1] == 0])
    t, u = jn.sample(0)
    if (u == 0).sum() == len(isi_before) + 1:  # no spike of unit 0 dropped at the edges
        np.testing.assert_allclose(np.diff(t[u == 0]), isi_before, atol=1e-12)  # per-neuron shift keeps ISIs
    r = RandomizeTiming(0.5, seed=4)(ev)
    np.testing.assert_array_equal(r.counts(), ev.counts())
    assert not np.allclose(np.sort(r.times), np.sort(ev.times))


def test_remove_rate_makes_counts_constant_per_unit():
    rng = np.random.default_rng(0)
    tl, ul, labels = [], [], []
    for s in range(200):
        c = s % 4
        rates = 3 + (np.arange(12) % 4 == c) * 4  # class-dependent counts
        n = rng.poisson(rates)
        ul.append(np.repeat(np.arange(12), n))
        tl.append(rng.uniform(0, 0.1, n.sum()))
        labels.append(c)
    ev = Events.from_lists(tl, ul, labels, 12, 0.1, 4)
    assert count_baseline(ev) > 0.6  # rates carry the class before
    out = RemoveRate(floor=1, max_drop_fraction=0.02, seed=1)(ev)
    c = out.counts()
    assert (c == c[0]).all()  # every unit: the same count in every sample
    assert np.ptp(np.bincount(out.labels)) == 0  # class balanced
    assert count_baseline(out) <= _chance(out) + 0.08


def test_compose_and_parse_probes():
    ts = parse_probes("reverse,jitter:0.5,delete:0.2")
    assert [t.name for t in ts] == ["reverse-window", "reverse-full", "jitter-0.5ms", "delete-0.2"]
    ev = _tiny()
    np.testing.assert_allclose(Compose([Reverse("full"), Reverse("full")])(ev).times, ev.times, atol=1e-15)
    with pytest.raises(EventsnnError, match="unknown probe"):
        parse_probes("nonsense")


def test_norm_readers_mat_and_h5(tmp_path):
    from scipy.io import savemat
    X = np.zeros((3, 4, 100))
    X[0, 1, 10] = 1
    X[0, 2, 99] = 2
    X[1, 0, 0] = 1
    X[2, 3, 50] = 3
    Y = np.array([0, 1, 1])
    savemat(tmp_path / "shd_norm.mat", {"X": X, "Y": Y})
    ev = load_norm(tmp_path / "shd_norm.mat")
    # both released files are the authors' raster: np.digitize on 100 edges over 1.4 s, bins of 1400/99 ms
    w = 1400 / 99
    assert ev.n_units == 4 and len(ev) == 3 and ev.duration_s == pytest.approx(100 * w * 1e-3)
    assert ev.meta["bin_ms"] == pytest.approx(w)
    t, u = ev.sample(0)
    # one spike at the centre of bin 10; two spread evenly in bin 99 (at 1/4 and 3/4 of it)
    assert np.allclose(t * 1e3, [10.5 * w, 99.25 * w, 99.75 * w]) and u.tolist() == [1, 2, 2]
    np.testing.assert_array_equal(ev.counts().sum(1), X.sum((1, 2)))
    with h5py.File(tmp_path / "ssc_norm.h5", "w") as f:
        f["X"] = X
        f["Y"] = Y
    ev2 = load_norm(tmp_path / "ssc_norm.h5")  # SSC-norm: the same 1.4 s in 100 bins (not 1 s)
    assert ev2.duration_s == pytest.approx(ev.duration_s) and ev2.meta["bin_ms"] == pytest.approx(w)
    np.testing.assert_array_equal(ev2.times, ev.times)
    with h5py.File(tmp_path / "fifty.h5", "w") as f:  # the width follows the file's number of bins
        f["X"] = X[:, :, :50]
        f["Y"] = Y
    assert load_norm(tmp_path / "fifty.h5").meta["bin_ms"] == pytest.approx(1400 / 49)
    p = run_cli("data", "info", tmp_path / "ssc_norm.h5", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["samples"] == 3


def test_split_is_deterministic_and_disjoint():
    a, b = split_indices(100, 0.15, 0)
    assert len(b) == 15 and not set(a) & set(b)
    assert np.array_equal(split_indices(100, 0.15, 0)[1], b)


@pytest.mark.parametrize("task", ["isi", "polychrony", "coincidence"])
def test_cli_data_make_and_info(tmp_path, task):
    f = tmp_path / f"{task}.h5"
    p = run_cli("data", "make", task, "--out", f, "--samples", "300", "--seed", "1")
    assert p.returncode == 0, p.stderr
    p = run_cli("data", "info", f, "--rate-baseline", "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["samples"] == 300
    assert info["count_only_accuracy"] <= info["chance"] + 0.1


def test_cli_data_info_on_miniature_shd(tmp_path):
    rngs = [np.random.default_rng(i) for i in range(3)]
    f = write_mini_shd(tmp_path / "shd_train.h5", [np.sort(r.uniform(0, 1.0, 50)) for r in rngs],
                       [np.random.default_rng(i).integers(0, 700, 50) for i in range(3)], [0, 5, 19])
    p = run_cli("data", "info", f, "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["units"] == 700 and info["classes"] == 20 and info["samples"] == 3


def test_cli_transform_reverse_roundtrip(tmp_path):
    f, g, h = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    save_events(make_polychrony(samples=10), f)
    assert run_cli("data", "transform", f, "--out", g, "--reverse").returncode == 0
    assert run_cli("data", "transform", g, "--out", h, "--reverse", "window").returncode == 0
    np.testing.assert_allclose(load_events(h).times, load_events(f).times, atol=1e-12)


BAD_EVENTS = {
    "negative": (lambda h: h["spikes/times"].__setitem__(0, np.array([-0.1, 0.01])), "negative spike time"),
    "nan": (lambda h: h["spikes/times"].__setitem__(0, np.array([np.nan, 0.01])), "NaN"),
    "unit": (lambda h: h["spikes/units"].__setitem__(0, np.array([0, 99], np.int32)), "out of range"),
    "keys": (lambda h: h.__delitem__("labels"), "missing dataset 'labels'"),
}


@pytest.mark.parametrize("name", sorted(BAD_EVENTS))
def test_cli_bad_events_exit_2(tmp_path, name):
    f = tmp_path / "ev.h5"
    ev = Events.from_lists([[0.001, 0.002], [0.003]], [[0, 1], [1]], [0, 1], 2, 0.01, 2)
    save_events(ev, f)
    mutate, msg = BAD_EVENTS[name]
    with h5py.File(f, "a") as h:
        mutate(h)
    p = run_cli("data", "info", f)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and msg in p.stderr and str(f) in p.stderr


def test_cli_missing_file(tmp_path):
    p = run_cli("data", "info", tmp_path / "missing.h5")
    assert p.returncode == 2 and "no such file" in p.stderr
    p = run_cli("data", "transform", tmp_path / "missing.h5", "--out", tmp_path / "x.h5", "--reverse")
    assert p.returncode == 2 and not (tmp_path / "x.h5").exists()


def test_tonic_arrays_round_trip_and_file_has_tonic_datasets(tmp_path):
    ev = make_polychrony(samples=5, seed=3)
    arrs = [ev.to_tonic(i) for i in range(len(ev))]
    assert arrs[0].dtype.names == ("t", "x", "p") and arrs[0]["t"].dtype == np.int64 and set(arrs[0]["p"]) == {1}
    back = Events.from_tonic(arrs, ev.labels, ev.n_units, ev.duration_s, ev.n_classes)
    np.testing.assert_allclose(back.times, ev.times, atol=0.5e-6)  # tonic keeps integer microseconds
    np.testing.assert_array_equal(back.units, ev.units)
    f = tmp_path / "ev.h5"
    save_events(ev, f)
    with h5py.File(f) as h:
        assert len(h["extra/speaker"]) == 5 and [k.decode() for k in h["extra/keys"][()]] == ev.class_names


def test_speaker_ids_travel_with_their_samples(tmp_path):
    ev = make_polychrony(samples=6, seed=3)
    ev.speakers = np.array([5, 5, 7, 9, 7, 2])
    f = tmp_path / "ev.h5"
    save_events(ev, f)
    back = load_events(f)
    np.testing.assert_array_equal(back.speakers, ev.speakers)
    np.testing.assert_array_equal(back.subset([4, 0]).speakers, [7, 5])
    np.testing.assert_array_equal(Events.concat([back, back.subset([3])]).speakers, [5, 5, 7, 9, 7, 2, 9])
    np.testing.assert_array_equal(Compose([Reverse(), Delete(0.5, seed=1)])(back).speakers, ev.speakers)
    p = run_cli("data", "transform", f, "--out", tmp_path / "r.h5", "--reverse")
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(load_events(tmp_path / "r.h5").speakers, ev.speakers)
    with h5py.File(f, "a") as h:  # a file whose speaker ids do not match its samples is refused, naming it
        del h["extra/speaker"]
        h.create_dataset("extra/speaker", data=np.arange(4))
    with pytest.raises(EventsnnError, match=r"ev\.h5.*extra/speaker: expected 6 integer ids"):
        load_events(f)


def test_tonic_shd_reader_opens_our_file_and_trains_with_its_transforms(tmp_path):
    """tonic.datasets.SHD reads an eventsnn events file placed where it looks (DIR/SHD/shd_train.h5, with the
    archive it checks for present), and that dataset, with a tonic transform, trains through DatasetSource."""
    tonic = pytest.importorskip("tonic")
    import eventsnn
    from eventsnn.data.datasets import DatasetSource

    ev = make_polychrony(samples=40, seed=3)
    (tmp_path / "SHD").mkdir()
    save_events(ev, tmp_path / "SHD" / "shd_train.h5")
    (tmp_path / "SHD" / "shd_train.h5.zip").touch()  # tonic only checks that its download is there
    ds = tonic.datasets.SHD(str(tmp_path), train=True)
    assert len(ds) == len(ev) and [c.decode() for c in ds.classes] == ev.class_names
    for i in (0, 7, 39):
        arr, label = ds[i]
        t, u = ev.sample(i)
        assert label == ev.labels[i]
        np.testing.assert_array_equal(arr["x"], u)
        np.testing.assert_allclose(arr["t"] * 1e-6, t, atol=1e-6)  # tonic truncates to whole microseconds
    jittered = tonic.datasets.SHD(str(tmp_path), train=True, transform=tonic.transforms.TimeJitter(std=200))
    m = eventsnn.train(DatasetSource(jittered, ev.n_units, ev.n_classes, ev.duration_s), epochs=1, hidden=[8],
                       val_fraction=0.25, seed=1)
    assert len(m.history) == 1 and 0.0 <= m.history[0]["train_acc"] <= 1.0


def test_transform_specs_have_one_spelling_that_reads_back():
    """Every transform prints its spec (name:value), the spelling --probes and sweep configs take; its file-safe
    name (':' as '-') reads back to the same transform."""
    from eventsnn.data.transforms import transform_by_name
    cases = {"reverse:window": Reverse("window"), "reverse:full": Reverse("full"), "reverse:max": Reverse("max"),
             "jitter:5ms": Jitter(5.0), "jitter-neuron:2bins+20bins": Jitter(2.0, per="neuron", unit="bins",
                                                                             offset=20.0),
             "delete:0.1": Delete(0.1), "randomize:0.5": RandomizeTiming(0.5)}
    for spec, t in cases.items():
        assert t.spec == spec
        (back,) = parse_probes(spec)
        assert back == t and back.spec == spec
        assert transform_by_name(t.name) == t and ":" not in t.name
    assert RemoveRate().spec == "remove-rate"
    assert Compose([Reverse("window"), Delete(0.1)]).spec == "reverse:window+delete:0.1"
