"""The Heidelberg cochlea model (the chain that made SHD), fast and spike-for-spike equal to ``lauscher`` 1.0.1.

The chain (Cramer et al. 2020; ``lauscher`` 1.0.1 on PyPI is the reference implementation), for a mono clip of
``n`` samples at ``fs`` Hz:

1. RMS-normalise to 0.3, then a Hann window: the first ``n//2`` samples are multiplied by the rising half of a
   Hann window of ``2*(n//2)`` points, the last ``n//2`` by the falling half.
2. Sieroka basilar membrane: the FFT of the clip, its first ``n//2+1`` bins multiplied by each channel's transfer
   function ``v(omega, c)`` (hydrodynamic shallow-water model, Sieroka et al. 2006) at ``omega = 2 pi *
   linspace(1, fs//2, n//2+1)`` and places ``c = linspace(0, 3.5, channels)``, then the real part of the inverse
   FFT of those ``n//2+1`` bins: the membrane velocity, from here on at the rate ``fs//2``. The transfer matrix
   depends only on ``(n, fs, channels)``: it is computed once and cached on disk under the user cache directory
   (:func:`cache_dir`), read back a block of channels at a time (in memory instead with ``disk_cache=False``).
3. Meddis inner hair cell: a per-sample transmitter-pool recursion (free pool q, cleft c, reprocessing store w);
   its output ``c * h / fs`` is a release probability per sample.
4. Bushy cells: 40 fibres per channel, each releases with that probability per sample (one uniform draw per
   sample and fibre, ``rand(n_samples, 40)`` channel after channel from numpy's legacy generator), fibres are
   refractory for 1 ms; a LIF (tau_mem 1 ms, tau_syn 0.5 ms, weight 13000/40, threshold 1, 1 ms refractory)
   sums them; its spikes are the output, at ``step / (fs//2)`` seconds.

Stages 3-4 are compiled (numba, :mod:`eventsnn.data.cochlea_numba`, cached on disk): the hair cells of the next
block of channels are computed, with its membrane velocity, in a thread while the fibres and bushy cells of the
current block run. The random draws come from a compiled MT19937 that continues numpy's legacy generator state
and hands it back, and the fibres' currents are summed in numpy's pairwise order, so with the same numpy seed the
spikes are those of ``lauscher`` 1.0.1, spike for spike (the test suite checks it; the transfer functions and the
inverse FFT agree with lauscher's to rounding, 1e-12 and 1e-15 relative, not bit for bit). Clip ``i`` of
:func:`cochlea` draws from ``numpy.random.RandomState([seed, i])``: ``numpy.random.seed([seed, i])`` before
lauscher gives its spikes.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from eventsnn.data.events import Events
from eventsnn.util.errors import EventsnnError, fail
from eventsnn.util.files import atomic_path
from eventsnn.util.progress import progress_bar

# lauscher 1.0.1's defaults (Wave2Spike): the parameters of every stage
RMS_LEVEL = 0.3
BM = dict(a=3500.0, alpha=3.0, rho=1.0, c_max=3.5, c0=10e8, de=0.15, h=0.1, m=0.05)
HAIR = dict(y=5.05, g=2000.0, l=2500.0, r=6580.0, x=66.3, a=5.0, b=300.0, h=50000.0, m=1.0)
BUSHY = dict(n_fibres=40, tau_mem=1e-3, tau_syn=5e-4, tau_refrac=1e-3, weight=13e3)
DEFAULT_CHANNELS = 700
MAX_CHANNELS = 10_000
MIN_SAMPLES = 16
_BLOCK = 32               # channels per block of the basilar-membrane stage (bounds the working memory)
_CACHE_VERSION = 1
_CACHE_LIMIT_BYTES = 2 * 2**30   # the disk cache keeps its newest matrices up to this size


# ----------------------------------------------------------------------------- stage 1: level and window

def normalise_and_window(samples: np.ndarray) -> np.ndarray:
    """RMS-normalise a mono clip to 0.3 and apply the Hann ramps (a new float64 array)."""
    x = np.array(samples, dtype=np.float64)
    x *= RMS_LEVEL / np.sqrt(np.mean(x ** 2))
    half = len(x) // 2
    ramp = np.hanning(2 * half)[:half]
    x[:half] = ramp * x[:half]
    x[len(x) - half:] = ramp[::-1] * x[len(x) - half:]
    return x


# ----------------------------------------------------------------------------- stage 2: basilar membrane

def _transfer_block(omega: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Sieroka's transfer function v(omega, c), shape [len(c), len(omega)] (complex128).

    xi(w, c) = s(c) - m w^2 - i w r(c) with stiffness s = c0 e^{-alpha c} - a and damping r = r0 e^{-alpha c/2};
    the pressure p(w, c) = sqrt(G/g) H0^(1)(G) with g = w sqrt(rho / (h xi)) and the WKB phase G(w, c) in closed
    form; the middle-ear impedance z(w) from Bessel functions; v = 2 w / xi * p(w, c) * z(w) / p(w, 0).
    """
    from scipy import special

    a, alpha, rho, c0, h, m = BM["a"], BM["alpha"], BM["rho"], BM["c0"], BM["h"], BM["m"]
    r0 = BM["de"] * np.sqrt(c0 * m)
    w = omega[None, :]

    def xi(cc):
        return (c0 * np.exp(-alpha * cc) - a) - m * w ** 2 - 1j * w * (r0 * np.exp(-alpha * cc / 2.0))

    def g(cc):
        return w * np.sqrt(rho / (h * xi(cc)))

    q = np.sqrt(a + m * w ** 2)
    start = -alpha * np.sqrt(-a + c0 - w * (m * w + 1j * r0)) + 1j * alpha * (2.0 * a + w * (2.0 * m * w + 1j * r0)) \
        / (2.0 * q)
    coef = 2.0 * 1j * np.sqrt(2.0) * w / (alpha * np.sqrt(h * 2.0 * (m * w ** 2 + a)))

    def p(cc):
        e1, e2 = np.exp(-alpha * cc), np.exp(-alpha * cc / 2.0)
        end = 0.5 * alpha * np.exp(alpha * cc / 2.0) * (
            -2.0 * np.sqrt(-a + c0 * e1 - m * w ** 2 - 1j * e2 * w * r0)
            + 1j * (2.0 * a + w * (2.0 * m * w + 1j * e2 * r0)) / q)
        G = 2.0 * g(0.0) / alpha - coef * np.log(start / end)
        return np.sqrt(G / g(cc)) * special.hankel1(0, G)

    k = 4.0 * np.pi * (w / (2.0 * np.pi)) / alpha * np.sqrt(2.0 / (h * c0))
    z = np.sqrt(2.0 * c0 / h) * (1j * special.j0(k) + special.y0(k)) / (special.j1(k) - 1j * special.y1(k))
    cc = np.asarray(c, np.float64)[:, None]
    return 2.0 * w / xi(cc) * p(cc) * z / p(0.0)


def frequencies(n_samples: int, sample_rate: int) -> np.ndarray:
    """Angular frequencies of the ``n//2+1`` bins the membrane model uses (up to ``fs//2``)."""
    return 2 * np.pi * np.linspace(1, sample_rate // 2, n_samples // 2 + 1)


def cache_dir() -> Path:
    """Where transfer matrices are kept between runs: ``$EVENTSNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/eventsnn``,
    else ``~/.cache/eventsnn`` (never the package folder); the matrices live in its ``cochlea/`` folder."""
    base = os.environ.get("EVENTSNN_CACHE_DIR")
    if not base:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eventsnn"
    return Path(base) / "cochlea"


def _transfer_blocks(n_samples: int, sample_rate: int, channels: int):
    """Yield ``(first_channel, block)`` of the transfer matrix, :data:`_BLOCK` channels at a time."""
    omega = frequencies(n_samples, sample_rate)
    places = np.linspace(0, BM["c_max"], channels)
    for s in range(0, channels, _BLOCK):
        yield s, _transfer_block(omega, places[s:s + _BLOCK])


def _prune(folder: Path, keep: Path) -> None:
    files = sorted(folder.glob("bm_*.npy"), key=lambda f: f.stat().st_mtime, reverse=True)
    total = 0
    for f in files:
        total += f.stat().st_size
        if total > _CACHE_LIMIT_BYTES and f != keep:
            f.unlink(missing_ok=True)


class _DiskTransfer:
    """A transfer matrix in the disk cache (a ``.npy`` file), read a block of channels at a time: a process never
    holds the whole matrix (123 MB at 700 channels and 1 s of 22 kHz audio), the OS page cache keeps it warm."""

    def __init__(self, path: Path, shape):
        self.path, self.shape = path, shape
        with open(path, "rb") as f:
            fmt = np.lib.format
            read = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
            shp, fortran, dtype = read(f)
            if shp != shape or fortran or dtype != np.complex128:
                raise ValueError(f"{path}: shape {shp}, dtype {dtype}; expected {shape} complex128")
            self.offset = f.tell()

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        width = self.shape[1]
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * width * 16)
            block = np.fromfile(f, np.complex128, (stop - start) * width)
        if len(block) != (stop - start) * width:
            raise ValueError(f"{self.path}: truncated")
        return block.reshape(stop - start, width)


def _disk_transfer(n_samples: int, sample_rate: int, channels: int) -> _DiskTransfer | None:
    """The cached matrix on disk, computed and written block by block if missing (None if it cannot be written)."""
    shape = (channels, n_samples // 2 + 1)
    path = cache_dir() / f"bm_v{_CACHE_VERSION}_{n_samples}_{sample_rate}_{channels}.npy"
    try:
        t = _DiskTransfer(path, shape)
        os.utime(path)
        return t
    except (OSError, ValueError):
        pass
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "<c16", "fortran_order": False, "shape": shape})
                for _, block in _transfer_blocks(n_samples, sample_rate, channels):
                    f.write(np.ascontiguousarray(block, "<c16").tobytes())
        _prune(path.parent, path)
        return _DiskTransfer(path, shape)
    except OSError:   # a read-only or full cache: compute in memory instead
        return None


@lru_cache(maxsize=1)
def _transfer_source(n_samples: int, sample_rate: int, channels: int, disk: bool):
    """Where a clip's transfer blocks come from: the disk cache, else one matrix kept in memory."""
    if disk:
        t = _disk_transfer(n_samples, sample_rate, channels)
        if t is not None:
            return t
    out = np.empty((channels, n_samples // 2 + 1), np.complex128)
    for s, block in _transfer_blocks(n_samples, sample_rate, channels):
        out[s:s + len(block)] = block
    out.flags.writeable = False
    return out


def transfer_matrix(n_samples: int, sample_rate: int, channels: int = DEFAULT_CHANNELS, disk_cache: bool = True):
    """The membrane transfer functions, shape ``[channels, n_samples//2+1]`` (complex128).

    Computed once per ``(n_samples, sample_rate, channels)`` and kept on disk under :func:`cache_dir` (newest
    first, up to 2 GiB; the chain reads it a block of channels at a time), or in memory with
    ``disk_cache=False`` (the last one).
    """
    src = _transfer_source(int(n_samples), int(sample_rate), int(channels), bool(disk_cache))
    return np.array(src[0:channels])


# ----------------------------------------------------------------------------- stages 3-4: compiled

def _kernels():
    """The compiled hair cell and fibres + bushy cell (:mod:`eventsnn.data.cochlea_numba`, imported on first use)."""
    from eventsnn.data.cochlea_numba import bushy, hair_cell

    return hair_cell, bushy


def _meddis_constants(fs: int) -> np.ndarray:
    """Per-sample rates and the resting pools of the Meddis hair cell at rate ``fs`` (as lauscher derives them)."""
    y, g, l_, r, x, a, b, h, m = (HAIR[k] for k in ("y", "g", "l", "r", "x", "a", "b", "h", "m"))
    kt = g * a / (a + b)
    c = m * y * kt / (l_ * kt + y * (l_ + r))
    q = c * (l_ + r) / kt
    w = c * r / x
    return np.array([y * m / float(fs), x / float(fs), y / float(fs), r / float(fs), g / float(fs), h / float(fs),
                     (l_ + r) / float(fs), a, b, m, q, c, w])


# ----------------------------------------------------------------------------- one clip

def check_clip(samples, sample_rate, what="audio") -> np.ndarray:
    """A clip the chain accepts (mono float64, finite, long enough, not silent), or an :class:`EventsnnError`."""
    x = np.asarray(samples)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1 or x.dtype.kind not in "iuf":
        raise fail(what, f"expected a mono clip (1-D numbers), got shape {np.shape(samples)} of {x.dtype}")
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate >= 1000):
        raise fail(what, f"sample rate must be a whole number >= 1000 Hz, got {sample_rate!r}")
    x = x.astype(np.float64)
    if len(x) < MIN_SAMPLES:
        raise fail(what, f"only {len(x)} samples; the cochlea needs at least {MIN_SAMPLES}")
    if not np.all(np.isfinite(x)):
        raise fail(what, "contains NaN or inf samples")
    if not np.any(x):
        raise fail(what, "is silent (RMS 0); the chain normalises the level and cannot scale silence")
    return x


def check_channels(channels, flag="channels") -> int:
    if not isinstance(channels, (int, np.integer)) or isinstance(channels, bool) or not 1 <= channels <= MAX_CHANNELS:
        raise EventsnnError(f"{flag}: expected a whole number in [1, {MAX_CHANNELS}], got {channels!r}")
    return int(channels)


def clip_spikes(samples, sample_rate: int, channels: int = DEFAULT_CHANNELS, random_state=None,
                disk_cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Spikes of one mono clip: ``(times_s, channels)`` sorted by time, then channel (lauscher's order).

    ``random_state``: a ``numpy.random.RandomState`` (advanced as lauscher would advance it), or ``None`` for
    numpy's global legacy generator (what lauscher draws from).
    """
    x = check_clip(samples, sample_rate)
    channels = check_channels(channels)
    fs = int(sample_rate)
    rs = np.random.mtrand._rand if random_state is None else random_state
    x = normalise_and_window(x)
    v = _transfer_source(len(x), fs, channels, bool(disk_cache))
    n_bins = len(x) // 2 + 1
    spectrum = np.fft.fft(x)[:n_bins]
    fs2 = fs // 2
    meddis = _meddis_constants(fs2)
    dt = 1 / float(fs2)
    b = BUSHY
    consts = (b["n_fibres"], b["tau_refrac"] * fs2, np.exp(-dt / b["tau_mem"]), np.exp(-dt / b["tau_syn"]),
              b["weight"] / float(b["n_fibres"]), dt)
    hair_cell, bushy = _kernels()
    name, key, pos, has_gauss, gauss = rs.get_state(legacy=True)
    key = key.copy()
    st = np.array([pos], np.int64)
    out = np.empty(n_bins, np.int64)
    steps, units = [], []

    # The real part of the inverse FFT of z (length n_bins) is the inverse real FFT of z's Hermitian part,
    # h[k] = (z[k] + conj(z[-k])) / 2: half the work of the complex one (lauscher's), equal to it to ~1e-15.
    mirror = (-np.arange(n_bins // 2 + 1)) % n_bins

    def limits(s):   # channels s .. s + _BLOCK: membrane velocity, hair cell
        z = v[s:s + _BLOCK] * spectrum
        vel = np.fft.irfft(0.5 * (z[:, :n_bins // 2 + 1] + np.conj(z[:, mirror])), n=n_bins, axis=-1)
        lim = np.empty(vel.shape)           # C order: the rows are contiguous (one compiled signature)
        for i in range(vel.shape[0]):
            hair_cell(np.ascontiguousarray(vel[i]), meddis, lim[i])
        return lim

    # The next block's velocity and hair cells are computed in a thread while the compiled fibres + bushy cells
    # (which release the GIL, as numpy's FFT does) run the current one: the same arithmetic in the same order,
    # so the same spikes; only the fibres draw random numbers, so the generator's order is kept.
    starts = list(range(0, channels, _BLOCK))
    try:
        with ThreadPoolExecutor(1) as ahead:
            nxt = ahead.submit(limits, starts[0])
            for b, s in enumerate(starts):
                lim = nxt.result()
                if b + 1 < len(starts):
                    nxt = ahead.submit(limits, starts[b + 1])
                for i in range(lim.shape[0]):
                    k = bushy(lim[i], key, st, *consts, out)
                    steps.append(out[:k].copy())
                    units.append(np.full(k, s + i, np.int64))
    finally:
        rs.set_state((name, key, int(st[0]), has_gauss, gauss))
    steps, units = np.concatenate(steps), np.concatenate(units)
    order = np.lexsort((units, steps))
    return steps[order] / fs2, units[order]


def clip_duration_s(n_samples: int, sample_rate: int) -> float:
    """The span of a clip's spike train, ``(n//2+1) / (fs//2)`` seconds, rounded up to whole ms."""
    return math.ceil((n_samples // 2 + 1) / (sample_rate // 2) * 1000 - 1e-9) / 1000


# ----------------------------------------------------------------------------- many clips / files

def read_audio(path) -> tuple[np.ndarray, int]:
    """A WAV/FLAC/... file (anything libsndfile reads) as a mono float64 clip (channels averaged) and its rate."""
    import soundfile

    p = Path(path)
    if not p.exists():
        raise fail(p, "no such file")
    if p.is_dir():
        raise fail(p, "is a directory, expected an audio file")
    try:
        x, fs = soundfile.read(str(p), dtype="float64", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise fail(p, f"cannot read audio ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return check_clip(x.mean(axis=1), int(fs), what=str(p)), int(fs)


def _clip_job(job):
    """One clip (a path or an array with its rate) through the chain; importable for :class:`parallel.Pool`."""
    item, fs, channels, seed, index, disk_cache = job
    if isinstance(item, (str, Path)):
        x, fs = read_audio(item)
    else:
        x = item
    t, u = clip_spikes(x, fs, channels, np.random.RandomState([seed, index]), disk_cache)
    return t, u, clip_duration_s(len(x), fs)


def cochlea(audio, sample_rate=None, *, channels: int = DEFAULT_CHANNELS, seed: int = 0, labels=None,
            class_names=None, workers: int = 1, progress: bool = False, disk_cache: bool = True):
    """Audio through the SHD cochlea model (lauscher 1.0.1's chain, compiled) -> :class:`eventsnn.Events`.

    ``audio``: a path (WAV, FLAC, ... through soundfile), an array (needs ``sample_rate``), or a list of either.
    Stereo files are averaged to mono. ``labels``: one per clip (default 0); ``class_names`` optional. Clip ``i``
    draws its release events from ``numpy.random.RandomState([seed, i])``; results do not depend on ``workers``
    (processes, see :class:`eventsnn.util.dask_pool.Pool`). Every clip is checked before any work: a missing or
    unreadable file, a silent clip or a bad ``channels`` raises :class:`EventsnnError`.
    """
    from eventsnn.util.dask_pool import Pool

    channels = check_channels(channels)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise EventsnnError(f"seed: expected a whole number >= 0, got {seed!r}")
    items = list(audio) if isinstance(audio, (list, tuple)) else [audio]
    if not items:
        raise EventsnnError("audio: no clips given")
    jobs = []
    for i, it in enumerate(items):
        if isinstance(it, (str, Path)):
            read_audio(it)   # validate every file before any work
            jobs.append((str(it), None, channels, int(seed), i, disk_cache))
        else:
            if sample_rate is None:
                raise EventsnnError("sample_rate: required when audio is given as arrays")
            jobs.append((check_clip(it, sample_rate, what=f"audio[{i}]"), int(sample_rate), channels, int(seed), i,
                         disk_cache))
    if labels is None:
        labels = np.zeros(len(items), np.int64)
    labels = np.asarray(labels)
    if labels.shape != (len(items),) or labels.dtype.kind not in "iu" or (len(labels) and labels.min() < 0):
        raise EventsnnError(f"labels: expected {len(items)} whole numbers >= 0 (one per clip), got {labels.tolist()}")
    n_classes = int(labels.max()) + 1
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(class_names) < n_classes:
            raise EventsnnError(f"class_names: {len(class_names)} names for labels up to {n_classes - 1}")
        n_classes = len(class_names)
    with Pool(min(int(workers), len(jobs))) as pool, \
            progress_bar(total=len(jobs), desc="cochlea", disable=not progress) as bar:
        results = pool.map(_clip_job, jobs, bar)
    duration = max(r[2] for r in results)
    return Events.from_lists([r[0] for r in results], [r[1] for r in results], labels, channels, duration,
                             n_classes, class_names, source=f"cochlea(lauscher-1.0.1 chain, {channels} channels)",
                             sort=False).validate()
