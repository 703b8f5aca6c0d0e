"""The SHD cochlea model (eventsnn.cochlea) against lauscher 1.0.1, its files and errors; spoken digits (speech)."""
import h5py
import numpy as np
import pytest
import soundfile

import eventsnn
from eventsnn.data import cochlea as C
from eventsnn.data.events import load_events
from eventsnn.cli import main

from conftest import run_cli

lauscher = pytest.importorskip("lauscher")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Transfer matrices go to a per-test cache directory (never the user's, never the package's)."""
    monkeypatch.setenv("EVENTSNN_CACHE_DIR", str(tmp_path / "cache"))
    C._transfer_source.cache_clear()
    yield tmp_path / "cache"
    C._transfer_source.cache_clear()


def lauscher_spikes(samples=None, rate=None, path=None, channels=6):
    from lauscher.audiowaves import FileMonoAudioWave, MonoAudioWave
    from lauscher.helpers import CommandLineArguments
    from lauscher.transformations.wave2spike import Wave2Spike

    CommandLineArguments().num_concurrent_jobs = 1
    wave = FileMonoAudioWave(str(path)) if path is not None else MonoAudioWave(np.array(samples, float), rate)
    sp = wave.transform(Wave2Spike(num_channels=channels))
    return sp.spike_times, sp.spike_labels


def chirp(rate, n, seed=0):
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    return np.sin(2 * np.pi * 300 * t * (1 + 4 * t)) * np.exp(-((t - t[-1] / 2) / 0.04) ** 2) \
        + 0.02 * rng.standard_normal(n)


def word(text="sieben", lang="de"):
    from eventsnn.data.speech import Espeak, trim
    return trim(Espeak.get().say(text, lang, "f2", 60, 50, 200)).astype(float) / 32768


@pytest.mark.parametrize("clip", ["chirp-16k-odd", "espeak-22k", "chirp-8k-70-channels", "chirp-16k-mid-block"])
def test_spike_for_spike_equal_to_lauscher(clip):
    """Same numpy seed -> the same spikes as lauscher 1.0.1, and numpy's generator left where lauscher leaves it
    (70 channels: three blocks of the basilar-membrane stage, the next computed while the loop runs this one;
    mid-block: the generator starts 7 draws into a block of its state)."""
    channels = 70 if clip == "chirp-8k-70-channels" else 6
    x, rate = {"chirp-16k-odd": (chirp(16000, 3201), 16000), "espeak-22k": (word(), 22050),
               "chirp-8k-70-channels": (chirp(8000, 1201, 3), 8000),
               "chirp-16k-mid-block": (chirp(16000, 3201, 5), 16000)}[clip]
    drawn = 7 if clip.endswith("mid-block") else 0
    np.random.seed(11)
    np.random.rand(drawn)
    t_ref, u_ref = lauscher_spikes(x, rate, channels=channels)
    after_ref = np.random.rand(3)
    np.random.seed(11)
    np.random.rand(drawn)
    assert not drawn or np.random.get_state()[2] == 2 * drawn     # 7 uniforms = 14 words into the block
    t, u = C.clip_spikes(x, rate, channels)
    assert channels <= C._BLOCK or len(np.unique(u)) > C._BLOCK, "the spikes do not span several blocks"
    assert len(t_ref) > 20, "clip too quiet to be a test"
    np.testing.assert_array_equal(t, t_ref)
    np.testing.assert_array_equal(u, u_ref)
    np.testing.assert_array_equal(np.random.rand(3), after_ref)


def test_api_files_equal_lauscher_per_file_seed(tmp_path):
    """eventsnn.cochlea on WAV and FLAC files: file i equals lauscher after numpy.random.seed([seed, i])."""
    wav, flac = tmp_path / "a.wav", tmp_path / "b.flac"
    soundfile.write(wav, chirp(16000, 2400, 1) * 0.5, 16000, subtype="PCM_16")
    soundfile.write(flac, word("three", "en") * 0.8, 22050)
    ev = eventsnn.cochlea([wav, flac], channels=5, seed=3, labels=[1, 0])
    assert (ev.n_units, len(ev), ev.labels.tolist(), ev.n_classes) == (5, 2, [1, 0], 2)
    for i, f in enumerate([wav, flac]):
        np.random.seed([3, i])
        t_ref, u_ref = lauscher_spikes(path=f, channels=5)
        t, u = ev.sample(i)
        assert len(t) > 10
        np.testing.assert_array_equal(t, t_ref)
        np.testing.assert_array_equal(u, u_ref)


def test_transfer_matrix_cached_on_disk_in_user_dir(cache_dir):
    v = C.transfer_matrix(801, 8000, 4)
    files = list(cache_dir.rglob("bm_*.npy"))
    assert len(files) == 1 and files[0].parent == cache_dir / "cochlea" == C.cache_dir()
    C._transfer_source.cache_clear()
    np.testing.assert_array_equal(np.load(files[0]), v)
    np.testing.assert_array_equal(C.transfer_matrix(801, 8000, 4), v)   # read back, not recomputed
    from lauscher.transformations.basilar_membrane import BasilarMembrane
    bm = BasilarMembrane(channels=4)
    ref = np.array([bm._v(C.frequencies(801, 8000), c) for c in bm.ch])
    np.testing.assert_allclose(v, ref, rtol=1e-12, atol=0)


def test_cli_cochlea_file_and_bad_inputs(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    soundfile.write(wav, chirp(16000, 2400, 2) * 0.5, 16000)
    out = tmp_path / "out.h5"
    r = run_cli("data", "cochlea", wav, "--out", out, "--channels", "4", "--seed", "2", "--labels", "3")
    assert r.returncode == 0, r.stderr
    ev = load_events(out)
    ref = eventsnn.cochlea(wav, channels=4, seed=2, labels=[3])
    np.testing.assert_array_equal(ev.times, ref.times)
    np.testing.assert_array_equal(ev.units, ref.units)
    assert ev.labels.tolist() == [3] and ev.n_units == 4
    silent, text = tmp_path / "silent.wav", tmp_path / "text.wav"
    soundfile.write(silent, np.zeros(1000), 16000)
    text.write_text("not audio")
    bad = tmp_path / "bad.h5"
    cases = [([tmp_path / "missing.wav"], [], "no such file"),
             ([text], [], "cannot read audio"),
             ([wav, silent], [], "silent"),
             ([wav], ["--channels", "0"], "--channels"),
             ([wav, wav], ["--labels", "1"], "--labels")]
    for files, extra, msg in cases:
        rc = main(["data", "cochlea", *map(str, files), "--out", str(bad), *extra])
        err = capsys.readouterr().err
        assert rc == 2, (files, extra, err)
        assert msg in err and len(err.strip().splitlines()) == 1, err
        assert not bad.exists()


def test_speak_tiny_reproducible_held_out_voices(tmp_path, capsys):
    """data speak: same seed -> same bytes; test voices never in training; 20 class names; data info beside SHD."""
    from eventsnn.data.speech import make_speech
    make_speech(tmp_path / "a", languages="en", size="tiny", channels=3, seed=4)
    r = run_cli("data", "speak", "--size", "tiny", "--languages", "en", "--channels", "3", "--seed", "4",
                "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    for f in ("train.h5", "test.h5", "speakers.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    with h5py.File(tmp_path / "a" / "train.h5") as tr, h5py.File(tmp_path / "a" / "test.h5") as te:
        train_spk, test_spk = set(tr["extra/speaker"][()]), set(te["extra/speaker"][()])
        assert len(train_spk) == 1 and len(test_spk) == 1 and not train_spk & test_spk
        keys = [k.decode() for k in tr["extra/keys"][()]]
        assert keys[0] == "en-0" and keys[19] == "de-9" and len(keys) == 20
    train = load_events(tmp_path / "a" / "train.h5")
    assert len(train) == 10 and sorted(set(train.labels.tolist())) == list(range(10))
    assert np.diff(train.offsets).min() > 0 and train.n_units == 3
    assert main(["data", "info", str(tmp_path / "a" / "train.h5"), "--json"]) == 0
    import json
    info = json.loads(capsys.readouterr().out)
    assert "not SHD" in info["made_by"] and info["speakers"] == 1 and info["shd_published"]["train_samples"] == 8156


def test_prepare_reads_spoken_digit_files_only_among_ours(tmp_path):
    """data prepare (the authors' whole/part/norm) takes the files data speak writes; our other files stay refused."""
    from conftest import random_events
    from eventsnn.data.events import save_events
    from eventsnn.data.speech import SOURCE

    for name, n in (("train", 512), ("test", 256)):
        ev = random_events(seed=len(name), n_samples=n, n_units=8, duration_s=1.0, spikes=80, n_classes=20)
        ev.source = SOURCE
        save_events(ev, tmp_path / f"{name}.h5")
    out = tmp_path / "whole"
    assert main(["data", "prepare", "shd", "--train", str(tmp_path / "train.h5"), "--test",
                 str(tmp_path / "test.h5"), "--variant", "whole", "--out", str(out)]) == 0
    train = load_events(out / "train.h5")
    assert train.n_units == 8 and len(train) == int(0.6 * 768)
    other = random_events(seed=3, n_samples=256, n_units=8, duration_s=1.0)
    save_events(other, tmp_path / "other.h5")
    assert main(["data", "prepare", "shd", "--train", str(tmp_path / "other.h5"), "--test",
                 str(tmp_path / "test.h5"), "--variant", "whole", "--out", str(tmp_path / "o")]) == 2


def test_speech_clip_placement_and_noise():
    """An utterance lands whole in the 1.0 s clip near its middle; --noise-snr adds noise at that SNR, seeded."""
    from eventsnn.data.speech import CLIP_SAMPLES, place

    raw = np.where(np.arange(8000) % 10 < 5, 12000, -12000).astype(np.int16)   # no quiet edges to trim
    clean = place(raw, 1, (0, 0, 3, 0))
    loud = np.flatnonzero(clean)
    assert len(clean) == CLIP_SAMPLES and loud[-1] - loud[0] + 1 == 8000
    assert abs((loud[0] + loud[-1]) / 2 - CLIP_SAMPLES / 2) <= 22050 // 20 + 1
    noisy = place(raw, 1, (0, 0, 3, 0), snr_db=10.0)
    np.testing.assert_array_equal(noisy, place(raw, 1, (0, 0, 3, 0), snr_db=10.0))
    noise = noisy - clean
    snr = 10 * np.log10(np.mean((raw / 32768.0) ** 2) / np.mean(noise ** 2))
    assert abs(snr - 10.0) < 0.2
