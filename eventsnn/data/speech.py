"""Spoken digits made here: synthetic voices (libespeak-ng) through the SHD cochlea model.

Not SHD: SHD is recordings of 12 people; this is digits 0-9 in English and German spoken by synthetic voices
(``espeakng-loader`` ships libespeak-ng 1.52 and its voice data), put through the same cochlea model that made SHD
(:mod:`eventsnn.data.cochlea`, equal to lauscher 1.0.1) and written in SHD's layout, 20 classes ``en-0 .. de-9``.

A *speaker* is a voice: an espeak variant (``!v/...``: m1, f3, klatt2, ...), a base pitch, a pitch range and a
speaking rate, drawn from the seed. Every speaker says every digit of every language ``repeats`` times, each time
with a small change of pitch and rate. Speakers are split: the test file's voices use espeak variants that no
training voice uses (as SHD holds two speakers out of training). Every utterance is trimmed of silence and centred (with a small random shift) in a
clip of :data:`CLIP_SAMPLES` samples at 22050 Hz, so that all clips share one basilar-membrane transfer matrix;
optional white noise at a given SNR. Same seed -> byte-identical files, whatever ``workers`` is.
"""
from __future__ import annotations

import ctypes
import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eventsnn.data.events import Events, save_events
from eventsnn.util.errors import EventsnnError
from eventsnn.util.files import atomic_path
from eventsnn.util.progress import progress_bar

LANGUAGES = ("en", "de")
WORDS = {"en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
         "de": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun")}
SAMPLE_RATE = 22050
# 22048 samples (1.0 s): the membrane stage's FFTs have n//2+1 = 11025 = 3^2 5^2 7^2 bins, a fast length
CLIP_SAMPLES = 22048
SIZES = {  # speakers (train, test), repetitions of each word per speaker
    "tiny": dict(train=1, test=1, repeats=1),
    "small": dict(train=2, test=1, repeats=1),
    "default": dict(train=80, test=20, repeats=3),
    "large": dict(train=160, test=40, repeats=3),
}
SOURCE = "synthetic voices (espeak-ng) through the SHD cochlea model"
# SHD as published (Cramer et al. 2020, IEEE TNNLS, and the data set's page); spikes per sample are not published
SHD_PUBLISHED = {"train_samples": 8156, "test_samples": 2264, "channels": 700, "classes": 20, "speakers": 12,
                 "test_only_speakers": 2}


# ----------------------------------------------------------------------------- espeak-ng through ctypes

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4


class Espeak:
    """libespeak-ng of the ``espeakng-loader`` wheel, one per process (the library keeps global state)."""

    _instance = None

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise EventsnnError("speech synthesis needs the espeakng-loader package (pip install espeakng-loader)") \
                from None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate != SAMPLE_RATE:
            raise EventsnnError(f"libespeak-ng failed to start (returned {rate}; expected {SAMPLE_RATE} Hz)")
        self.lib, self.chunks = lib, []
        self._callback = _SYNTH_CALLBACK(self._collect)   # kept alive as long as the library may call it
        lib.espeak_SetSynthCallback(self._callback)
        self.variants = sorted(p.name for p in (Path(espeakng_loader.get_data_path()) / "voices" / "!v").iterdir()
                               if p.is_file() and " " not in p.name)

    @classmethod
    def get(cls) -> "Espeak":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _collect(self, wav, n, events):
        if wav and n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def say(self, text: str, language: str, variant: str, pitch: int, pitch_range: int, rate: int) -> np.ndarray:
        """One utterance as int16 samples at 22050 Hz. The library's noise seed is reset, but its wave generator
        carries phase from the previous utterance: the same calls in a fresh process give the same samples."""
        if self.lib.espeak_SetVoiceByName(f"{language}+{variant}".encode()) != 0:
            raise EventsnnError(f"espeak-ng has no voice {language}+{variant}")
        for param, value in ((_RATE, rate), (_VOLUME, 100), (_PITCH, pitch), (_RANGE, pitch_range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self.lib.espeak_ng_SetRandSeed(1)
        self.chunks = []
        data = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise EventsnnError(f"espeak-ng could not synthesise {text!r} ({language}+{variant}): error {err}")
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


# ----------------------------------------------------------------------------- the data set

@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: an espeak variant with its base pitch (0-99), pitch range (0-99) and rate (words/min)."""
    variant: str
    pitch: int
    pitch_range: int
    rate: int

    def name(self) -> str:
        return f"{self.variant}/p{self.pitch}/r{self.pitch_range}/w{self.rate}"


def make_speakers(n_train: int, n_test: int, seed: int, variants) -> list[Speaker]:
    """``n_train`` then ``n_test`` speakers drawn from ``seed``. The test speakers' variants are never used in
    training (training speakers reuse their own variants, with other pitches and rates, once those run out)."""
    if n_test >= len(variants):
        raise EventsnnError(f"{n_test} test voices need more than the {len(variants)} espeak variants")
    rng = np.random.default_rng([seed, 0xD161])
    order = [variants[i] for i in rng.permutation(len(variants))]
    test_v, train_v = order[:n_test], order[n_test:]
    chosen = [train_v[i % len(train_v)] for i in range(n_train)] + test_v
    return [Speaker(v, int(rng.integers(25, 76)), int(rng.integers(20, 81)), int(rng.integers(130, 231)))
            for v in chosen]


def trim(x: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """The utterance without leading and trailing silence (samples below ``threshold`` of the peak)."""
    a = np.abs(x.astype(np.float64))
    loud = np.flatnonzero(a > threshold * a.max()) if a.max() > 0 else np.zeros(0, np.int64)
    return x[loud[0]:loud[-1] + 1] if len(loud) else x[:0]


def voice_settings(lang, digit, speaker, rep, seed, ident):
    """What espeak is asked to say for one sample: text, language, variant, pitch, range, rate. Repetitions after
    the first change the pitch by up to 4 and the rate by up to 8%."""
    rng = np.random.default_rng([seed, 0x5EEC, *ident])
    pitch = int(np.clip(speaker.pitch + (rng.integers(-4, 5) if rep else 0), 0, 99))
    rate = int(round(speaker.rate * (rng.uniform(0.92, 1.08) if rep else 1.0)))
    return WORDS[lang][digit], lang, speaker.variant, pitch, speaker.pitch_range, rate


def synthesise_all(settings) -> list[np.ndarray]:
    """Every utterance, in order, in this process (libespeak-ng carries state from one utterance to the next, so
    the same list in a fresh process gives the same samples)."""
    e = Espeak.get()
    return [e.say(*s) for s in settings]


def synthesise_fresh(settings) -> list[np.ndarray]:
    """:func:`synthesise_all` in a fresh Python process (what a new process says does not depend on what this one
    said before); settings go in as JSON on stdin, the samples come back in a temporary ``.npz`` file."""

    settings = [list(s) for s in settings]
    with tempfile.TemporaryDirectory(prefix="eventsnn_speak_") as tmp:
        out = Path(tmp) / "utterances.npz"
        code = "import sys; from eventsnn.data.speech import _synthesise_main; _synthesise_main(sys.argv[1])"
        p = subprocess.run([sys.executable, "-c", code, str(out)], input=json.dumps(settings), text=True,
                           capture_output=True)
        if p.returncode != 0:
            lines = p.stderr.strip().splitlines()
            raise EventsnnError(f"speech synthesis failed: {lines[-1] if lines else 'exit code ' + str(p.returncode)}")
        with np.load(out) as z:
            samples, offsets = z["samples"], z["offsets"]
    return [samples[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def _synthesise_main(out: str) -> None:

    raws = synthesise_all([tuple(s) for s in json.loads(sys.stdin.read())])
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in raws])]).astype(np.int64)
    np.savez(out, samples=np.concatenate(raws) if raws else np.zeros(0, np.int16), offsets=offsets)


def place(raw: np.ndarray, seed: int, ident, snr_db=None) -> np.ndarray:
    """The clip of one sample: the utterance trimmed, scaled to [-1, 1) (int16 / 32768), placed in
    :data:`CLIP_SAMPLES` samples (centred, shifted by up to 50 ms), with white noise at ``snr_db`` if given."""
    rng = np.random.default_rng([seed, 0xC11F, *ident])
    x = trim(raw).astype(np.float64) / 32768.0
    if len(x) == 0:
        raise EventsnnError(f"espeak-ng produced silence for sample {tuple(ident)}")
    room = CLIP_SAMPLES - len(x)
    if room < 0:   # longer than the clip (a very slow voice): keep its middle
        x, room = x[-room // 2: -room // 2 + CLIP_SAMPLES], 0
    shift = int(rng.integers(-SAMPLE_RATE // 20, SAMPLE_RATE // 20 + 1))
    start = int(np.clip(room // 2 + shift, 0, room))
    clip = np.zeros(CLIP_SAMPLES)
    clip[start:start + len(x)] = x
    if snr_db is not None:
        clip += rng.standard_normal(CLIP_SAMPLES) * math.sqrt(np.mean(x ** 2) / 10 ** (snr_db / 10))
    return clip


def _sample_job(job):
    """One sample's clip through the cochlea (importable for :class:`eventsnn.util.dask_pool.Pool`)."""
    from eventsnn.data.cochlea import clip_spikes

    raw, seed, ident, snr_db, channels = job
    clip = place(raw, seed, ident, snr_db)
    return clip_spikes(clip, SAMPLE_RATE, channels, np.random.RandomState([seed, 0xC0C1, *ident]))


def plan(languages, size: str, seed: int):
    """Speakers and the samples of each file: ``{"train": [(lang, digit, speaker_id, repeat), ...], "test": ...}``."""
    sz = SIZES[size]
    speakers = make_speakers(sz["train"], sz["test"], seed, Espeak.get().variants)
    parts = {"train": range(sz["train"]), "test": range(sz["train"], sz["train"] + sz["test"])}
    return {part: [(lang, d, si, r) for si in ids for lang in languages for d in range(10)
                   for r in range(sz["repeats"])] for part, ids in parts.items()}, speakers


def check_languages(text: str) -> tuple[str, ...]:
    langs = tuple(x.strip() for x in str(text).split(",") if x.strip())
    bad = [x for x in langs if x not in LANGUAGES]
    if not langs or bad or len(set(langs)) != len(langs):
        raise EventsnnError(f"--languages: expected a comma-separated subset of {','.join(LANGUAGES)}, got {text!r}")
    return langs


def make_speech(out, *, languages=LANGUAGES, size: str = "default", seed: int = 0, noise_db=None,
                channels: int = 700, workers: int = 1, progress: bool = False) -> dict:
    """Write ``out/train.h5`` and ``out/test.h5`` (SHD layout, ``extra/speaker``, ``extra/keys``) and
    ``out/speakers.json``; return a summary. Classes ``"{lang}-{digit}"``: ``en-0`` is 0, ``de-9`` is 19."""
    from eventsnn.data.cochlea import _transfer_source, check_channels, clip_duration_s
    from eventsnn.util.dask_pool import Pool

    if size not in SIZES:
        raise EventsnnError(f"--size: expected one of {', '.join(SIZES)}, got {size!r}")
    languages = check_languages(",".join(languages) if not isinstance(languages, str) else languages)
    channels = check_channels(channels, "--channels")
    if noise_db is not None and not math.isfinite(noise_db):
        raise EventsnnError(f"--noise-snr: expected a finite number of dB, got {noise_db!r}")
    class_names = [f"{lang}-{d}" for lang in LANGUAGES for d in range(10)]
    samples, speakers = plan(languages, size, seed)
    order = samples["train"] + samples["test"]
    idents = [(si, LANGUAGES.index(lang), d, r) for lang, d, si, r in order]
    raws = synthesise_fresh([voice_settings(lang, d, speakers[si], r, seed, ident)
                             for (lang, d, si, r), ident in zip(order, idents)])
    _transfer_source(CLIP_SAMPLES, SAMPLE_RATE, channels, True)   # computed once here, workers read the disk cache
    jobs = [(raw, seed, ident, noise_db, channels) for raw, ident in zip(raws, idents)]
    with Pool(min(int(workers), len(jobs))) as pool, \
            progress_bar(total=len(jobs), desc="speech", disable=not progress) as bar:
        results = pool.map(_sample_job, jobs, bar)
    out = Path(out)
    duration = clip_duration_s(CLIP_SAMPLES, SAMPLE_RATE)
    summary = {"source": SOURCE, "languages": list(languages), "size": size, "seed": seed, "noise_snr_db": noise_db,
               "channels": channels, "sample_rate_hz": SAMPLE_RATE, "clip_s": CLIP_SAMPLES / SAMPLE_RATE}
    start = 0
    for part in ("train", "test"):
        js = samples[part]
        res = results[start:start + len(js)]
        start += len(js)
        labels = [LANGUAGES.index(lang) * 10 + d for lang, d, _, _ in js]
        ev = Events.from_lists([r[0] for r in res], [r[1] for r in res], labels, channels, duration, 20,
                               class_names, source=SOURCE, sort=False)
        ev.meta = {"seed": seed, "size": size, "languages": ",".join(languages)}
        ev.speakers = np.array([si for _, _, si, _ in js], np.int64)
        save_events(ev, out / f"{part}.h5")
        summary[part] = {"samples": len(ev), "speakers": sorted({si for _, _, si, _ in js})}
    summary["speakers"] = [dict(id=i, name=s.name(), variant=s.variant, pitch=s.pitch, pitch_range=s.pitch_range,
                                rate=s.rate) for i, s in enumerate(speakers)]
    with atomic_path(out / "speakers.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return summary


def speech_statistics(events, path=None) -> dict:
    """What ``eventsnn data info`` adds for a file made by ``data speak``: speakers, active channels and the spike
    span per sample, beside what the SHD paper and site publish (samples, channels, classes, speakers)."""
    counts = events.counts()
    spans = [float(t.max() - t.min()) if len(t) else 0.0 for t in (events.sample(i)[0] for i in range(len(events)))]
    stats = {"made_by": "eventsnn data speak: " + SOURCE + " (not SHD)",
             "active_channels_mean": float((counts > 0).sum(1).mean()),
             "spike_span_s_mean": float(np.mean(spans))}
    if path is not None:
        import h5py
        with h5py.File(path, "r") as f:
            if "extra/speaker" in f:
                stats["speakers"] = int(len(np.unique(f["extra/speaker"][()])))
    stats["shd_published"] = SHD_PUBLISHED
    return stats
