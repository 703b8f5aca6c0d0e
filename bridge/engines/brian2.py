"""Network file -> Brian2 (runtime numpy/cython, cpp_standalone, cuda_standalone).

Every neuron group implements the contract of :mod:`eventsnn.model.contract` with
explicit per-neuron propagators (``a``, ``b``, ``k`` from
:func:`~eventsnn.model.contract.propagators`) in a ``run_regularly`` in the
``groups`` slot -- not ``method='exact'``, which is NaN for equal taus. Brian2's
default schedule (groups, thresholds, synapses, resets) gives the step order.

SRM-alpha layers (``kind="srm"``, :mod:`eventsnn.model.srm`) are two such pairs with equal taus -- ``v, I``
(``tau_sr``) and ``vr, Ir`` (``tau_ref``) -- integrated by their explicit propagators in the same slot; the
threshold is on ``v + vr``; the reset slot adds the refractory jump to ``Ir`` (no reset of ``v``); an arrival
does ``I_post += e*w``.

Many samples per build. ``C`` copies of the network run side by side (copy
``c`` uses neurons ``c*N .. c*N+N-1`` of each group), and samples also follow
one another in time: sample slot ``(w, c)`` occupies window ``w`` of ``W``
steps of copy ``c``. At each window start all state is zeroed; in the last
``W - T`` steps of a window (the padding, ``W >= T + max delay + 1``) neurons
may not spike, so no spike crosses into the next window. One build (one
compilation for the compiled targets) therefore runs any number of samples.
"""
from __future__ import annotations

import gc
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from eventsnn.bridge.engines import TARGETS, check_compatible
from eventsnn.bridge.network import Network, with_delay_mode
from eventsnn.bridge.runfile import LayerSpikes, RunResult, run_sample_chunks
from eventsnn.data.events import bin_for_run, warn_merged
from eventsnn.model.contract import (
    SPIKING_READOUTS,
    delay_steps,
    grid_ratio,
    propagators,
    readout_scores,
    refractory_steps,
    trace_sample_steps,
)
from eventsnn.model.srm import E as SRM_E
from eventsnn.model.srm import propagators as srm_propagators
from eventsnn.model.srm import fir_kinks, refractory_jump
from eventsnn.util.errors import EventsnnError
from eventsnn.util.files import atomic_path

# Deterministic, contraction-free arithmetic for the compiled targets (no -ffast-math, no FMA).
EXACT_GCC_FLAGS = ["-w", "-O3", "-ffp-contract=off", "-fno-fast-math"]
DEFAULT_MAX_SYNAPSES = 4_000_000


def plan_copies(net: Network, n_samples: int, max_synapses: int = DEFAULT_MAX_SYNAPSES,
                max_copies: int | None = None) -> tuple[int, int]:
    """Copies side by side (C) and windows in time so that C copies hold n_samples."""
    syn = sum(L.ff_weight.size + (L.rec_weight.size if L.rec_weight is not None else 0) for L in net.layers)
    C = max(1, min(n_samples, max_synapses // max(syn, 1)))
    if max_copies:
        C = min(C, max_copies)
    n_windows = math.ceil(n_samples / C)
    C = math.ceil(n_samples / n_windows)  # balance the windows
    return C, n_windows


def import_brian2():
    """``brian2``, with its Ctrl-C handler taken out again.

    Importing Brian2 installs a SIGINT handler that turns Ctrl-C during ``Network.run`` into "finish this step
    and stop": the run returns early as if it had finished, with its monitors cut short. eventsnn's runs must
    either finish or raise ``KeyboardInterrupt`` (the CLI then prints how to resume and exits 130), so the
    handler Brian2 replaced is put back (in the main thread, the only one that may set handlers) and Brian2's
    ``core.stop_on_keyboard_interrupt`` preference is switched off."""

    if "brian2" not in sys.modules:
        from eventsnn.util.files import process_tempdir
        with process_tempdir():  # Brian2's debug log and script copy: in this process's own directory
            import brian2
    import brian2

    brian2.prefs.core.stop_on_keyboard_interrupt = False
    handler = signal.getsignal(signal.SIGINT)
    if isinstance(handler, getattr(brian2, "_InterruptHandler", ())) and \
            threading.current_thread() is threading.main_thread():
        previous = handler.previous_handler
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    return brian2


def _configure(target: str, build_dir: Path, exact: bool):
    """Select the Brian2 device/target with per-run build directories; returns the device module."""
    brian2 = import_brian2()
    from brian2 import prefs, set_device

    _reset_device()
    # Objects of an earlier run in this process may survive in reference cycles; their names would make Brian2
    # name this run's code objects "..._1", changing every source file and defeating a rebuild in the same
    # directory, which then recompiles only what differs (the arrays: seconds instead of a full compile)
    gc.collect()
    prefs.reset_to_defaults()
    prefs.core.stop_on_keyboard_interrupt = False  # Ctrl-C raises KeyboardInterrupt (see import_brian2)
    prefs.core.default_float_dtype = np.float64
    prefs.logging.console_log_level = "WARNING"
    prefs.codegen.cpp.extra_compile_args_gcc = list(EXACT_GCC_FLAGS) if exact else ["-w", "-O3", "-ffast-math",
                                                                                  "-march=native"]
    if target in ("numpy", "cython"):
        set_device("runtime")
        prefs.codegen.target = target
        if target == "cython":
            cache = build_dir / "cython_cache"
            cache.mkdir(parents=True, exist_ok=True)
            prefs.codegen.runtime.cython.cache_dir = str(cache)
            prefs.codegen.runtime.cython.multiprocess_safe = True
        return brian2.get_device()
    if target == "cpp_standalone":
        set_device("cpp_standalone", directory=str(build_dir / "cpp_standalone"), build_on_run=False)
        return brian2.get_device()
    if target == "cuda_standalone":
        import brian2cuda  # noqa: F401  (registers the device)

        cb = prefs.devices.cuda_standalone.cuda_backend
        nvcc_flags = ["-w", "-std=c++17"]
        inc, libdir = _curand_paths(build_dir)
        if inc:
            nvcc_flags.append(f"-I{inc}")
        cb.extra_compile_args_nvcc = nvcc_flags
        if libdir:
            prefs.codegen.cpp.extra_link_args = [f"-L{libdir}", f"-Wl,-rpath,{libdir}"]
        prefs.codegen.cpp.extra_compile_args_gcc = prefs.codegen.cpp.extra_compile_args_gcc + ["-std=c++17"]
        if not _have_gpu():
            cb.detect_gpus = False
            cb.gpu_id = 0
            cb.compute_capability = 9.0
        set_device("cuda_standalone", directory=str(build_dir / "cuda_standalone"), build_on_run=False)
        return brian2.get_device()
    raise EventsnnError(f"unknown Brian2 target {target!r}; choose one of {', '.join(TARGETS)}")


def _have_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and os.system("nvidia-smi -L >/dev/null 2>&1") == 0


def _curand_location():
    """Where curand's header and library are: ``("system", None, None)`` (a CUDA toolkit with curand at
    ``$CUDA_PATH`` or /usr/local/cuda), ``("wheel", include_dir, library_file)`` (the ``nvidia-curand``
    wheel), or None."""
    for root in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and Path(root, "include", "curand.h").exists() and \
                (list(Path(root).glob("lib64/libcurand.so*")) or list(Path(root).glob("lib/libcurand.so*"))):
            return "system", None, None
    try:
        import nvidia
    except ImportError:
        return None
    for base in [Path(p) for p in nvidia.__path__]:
        for sub in ("cu13", "curand", "cu12"):
            inc, lib = base / sub / "include", base / sub / "lib"
            libs = sorted(lib.glob("libcurand.so*"))
            if (inc / "curand.h").exists() and libs:
                return "wheel", str(inc), libs[0].resolve()
    return None


def cuda_toolchain_problem() -> str | None:
    """Why the ``cuda_standalone`` target cannot be compiled here (None when it can): it needs ``nvcc`` and
    curand's header and library."""
    if shutil.which("nvcc") is None:
        return "nvcc is not on PATH (install the CUDA toolkit)"
    if _curand_location() is None:
        return ("curand (curand.h and libcurand.so) not found in $CUDA_PATH, /usr/local/cuda or the nvidia-curand "
                "wheel; install it with: pip install 'eventsnn[cuda]'")
    return None


def _curand_paths(build_dir: Path):
    """Extra include/library directories for curand (None, None when the system CUDA provides it).

    The wheel ships only a versioned ``libcurand.so.N``; the link needs an unversioned ``libcurand.so``,
    made as a symlink in the build directory. Its include directory also holds other CUDA headers (of the
    wheels' CUDA version, which may differ from nvcc's): only the ``curand*.h`` headers are linked into a
    directory of their own, so nvcc keeps its own toolkit headers.
    """
    loc = _curand_location()
    if loc is None or loc[0] == "system":
        return None, None
    _, inc, lib = loc
    inc_dir, link_dir = build_dir / "curand_include", build_dir / "curand_lib"
    for d in (inc_dir, link_dir):
        d.mkdir(parents=True, exist_ok=True)
    for h in Path(inc).glob("curand*.h"):
        if not (inc_dir / h.name).exists():
            (inc_dir / h.name).symlink_to(h.resolve())
    link = link_dir / "libcurand.so"
    if not link.exists():
        link.symlink_to(lib)
    return str(inc_dir), str(link_dir)


def simulate_brian2(net: Network, events, indices=None, *, dt_ms: float | None = None, target: str = "numpy",
                    delays: str = "round", inputs: str = "binned", build_dir=None, ieee_math: bool = True,
                    max_copies: int | None = None, max_synapses: int = DEFAULT_MAX_SYNAPSES,
                    progress: bool = False, compile_only: bool = False, workers: int = 1) -> RunResult | Path:
    """Simulate ``events[indices]`` through the network in Brian2 and collect a RunResult.

    ``delays``: ``round`` (training grid) or ``exact`` (real-valued, rounded to ``dt``);
    ``inputs``: ``binned`` (training grid) or ``exact`` (binned at ``dt``).
    ``compile_only`` (standalone targets): generate and compile, do not run; returns the project dir.
    ``workers`` > 1: the samples are cut into that many consecutive chunks, each simulated by its own process
    with its own build directory, and the parts joined (identical to one process: samples never interact).
    """

    b2 = import_brian2()

    logging.captureWarnings(False)  # brian2 routes Python warnings into its log on import; give them back
    if target not in TARGETS:
        raise EventsnnError(f"unknown Brian2 target {target!r}; choose one of {', '.join(TARGETS)}")
    if target == "cuda_standalone" and (why := cuda_toolchain_problem()):
        raise EventsnnError(f"--target cuda_standalone: {why}")
    dt_ms = net.dt_ms if dt_ms is None else float(dt_ms)
    check_compatible(net, events, dt_ms)
    ratio = grid_ratio(net.dt_ms, dt_ms)
    if indices is None:
        indices = np.arange(len(events))
    indices = np.asarray(indices, dtype=np.int64)
    S = len(indices)
    if delays not in ("round", "exact"):
        raise EventsnnError(f"unknown delay mode {delays!r} for Brian2; choose round or exact")
    if build_dir is None:  # a private temporary build directory, removed afterwards
        if compile_only:
            raise EventsnnError("compile_only needs a build_dir to keep the compiled project in")
        import tempfile
        with tempfile.TemporaryDirectory(prefix="eventsnn_brian2_") as tmp:
            return simulate_brian2(net, events, indices, dt_ms=dt_ms, target=target, delays=delays, inputs=inputs,
                                   build_dir=tmp, ieee_math=ieee_math, max_copies=max_copies,
                                   max_synapses=max_synapses, progress=progress, workers=workers)
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(int(workers), S))
    if workers > 1 and not compile_only:
        return _simulate_in_workers(net, events, indices, workers, build_dir, progress,
                                    dict(dt_ms=dt_ms, target=target, delays=delays, inputs=inputs,
                                         ieee_math=ieee_math, max_copies=max_copies, max_synapses=max_synapses))
    netq = with_delay_mode(net, delays)

    binned = bin_for_run(events, indices, dt_ms, net.dt_ms, inputs)
    if inputs == "binned":
        warn_merged(binned.merged, binned.n_spikes, net.dt_ms)
    T = binned.n_steps
    K = T // ratio
    C, n_windows = plan_copies(net, S, max_synapses, max_copies)
    Dff, Drec, W = _steps(netq, T, dt_ms, ratio, n_windows)
    total_steps = n_windows * W

    dev = _configure(target, build_dir, ieee_math)
    b2.start_scope()
    dt = dt_ms * b2.ms
    b2.defaultclock.dt = dt
    try:
        objs, hidden_mons, trace_mon = _build(b2, net, netq, binned, C, W, n_windows, dt_ms, Dff, Drec)
        network = b2.Network(*objs)
        t0 = time.perf_counter()
        _run(b2, network, total_steps * dt, target, dt_ms, progress)
    except BaseException:  # interrupted (or failed) half-way: the objects built are not "unused" by mistake
        b2.prefs.logging.warn_for_unused_objects = False
        raise
    if target in ("cpp_standalone", "cuda_standalone"):
        try:
            dev.build(directory=str(build_dir / target), compile=True, run=not compile_only, clean=False)
        except Exception as e:  # compiler or run failure: one line with the log location
            raise EventsnnError(f"Brian2 {target} build in {build_dir / target} failed: "
                                f"{str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}") from None
        if compile_only:
            _reset_device()
            return build_dir / target
    wall = time.perf_counter() - t0

    # ---- collect
    layers = []
    for mon, N in hidden_mons:
        gi = np.asarray(mon.i[:], dtype=np.int64)
        gstep = np.round(np.asarray(mon.t[:] / b2.second) * 1e3 / dt_ms).astype(np.int64)
        w, lstep = gstep // W, gstep % W
        c, u = gi // N, gi % N
        slot = w * C + c
        keep = (slot < S) & (lstep < T)
        layers.append(LayerSpikes.from_steps(slot[keep], u[keep], lstep[keep], dt_ms))
    v = np.asarray(getattr(trace_mon, "count" if net.readout in SPIKING_READOUTS else "v")[:])  # [C*N_out, records]
    N_out = net.n_outputs
    trace = np.zeros((S, K, N_out))
    local = (trace_sample_steps(K, ratio) + 1) // ratio  # record index within a window
    for s in range(S):
        w, c = divmod(s, C)
        cols = w * (W // ratio) + local
        trace[s] = v[c * N_out:(c + 1) * N_out, cols].T
    _reset_device()
    pred = readout_scores(trace, net.readout).argmax(axis=1)
    attrs = {"copies": C, "windows": n_windows, "window_steps": W, "wall_s": wall, "ieee_math": ieee_math}
    return RunResult("brian2", dt_ms, net.dt_ms, delays, inputs, target, net.readout, layers, trace, pred,
                     events.labels[indices].copy(), indices, attrs)


def _run(b2, network, duration, target: str, dt_ms: float, progress: bool) -> None:
    """``network.run(duration)``, with a progress bar on the runtime targets when asked."""
    if target in ("numpy", "cython") and progress:
        from eventsnn.util.progress import progress_bar
        bar = progress_bar(total=100, desc=f"brian2 {target} dt={dt_ms:g}ms")

        def report(elapsed, completed, start, dur):
            bar.n = int(round(completed * 100))
            bar.refresh()
        network.run(duration, report=report, report_period=2 * b2.second, namespace={})
        bar.close()
    else:
        network.run(duration, namespace={})
    if b2.Network._globally_stopped:  # stopped by a Brian2 handler installed behind our back: never a result
        raise KeyboardInterrupt


def _steps(netq, T: int, dt_ms: float, ratio: int, n_windows: int):
    """Integer delays at ``dt_ms`` per layer (``T`` steps or more deliver after the sample: the same as exactly
    ``T``) and the window length ``W`` in steps (padding that covers the longest chain of delays when samples
    follow one another in time; one training step more otherwise, so the last trace sample is recorded)."""
    Dff = [None if L.ff_delay_ms is None else np.minimum(delay_steps(L.ff_delay_ms, dt_ms), T) for L in netq.layers]
    Drec = [None if L.rec_delay_ms is None else np.minimum(delay_steps(L.rec_delay_ms, dt_ms), T)
            for L in netq.layers]
    if n_windows > 1:  # (a learned PSP kernel moves u for its span after the last arrival)
        max_total_delay = sum(max([0] + [int(d.max()) for d in (a, b) if d is not None and d.size])
                              + int(round(L.psp_span_ms() / dt_ms)) for a, b, L in zip(Dff, Drec, netq.layers))
        W = int(math.ceil((T + max_total_delay + 1) / ratio) * ratio)  # windows start on the training grid
    else:
        W = T + ratio
    return Dff, Drec, W


def to_brian2(net: Network, events, sample: int = 0, *, dt_ms: float | None = None, delays: str = "round",
              inputs: str = "binned"):
    """One sample of the network as a plain ``brian2.Network`` on Brian2's runtime device.

    Named objects: ``inputs`` (SpikeGeneratorGroup; a unit with m spikes in one step fires in m stacked lanes),
    ``layer<i>`` (NeuronGroups; dimensionless ``v``, ``I``, the contract's propagators ``a``, ``b``, ``k``),
    ``layer<i>_integrate`` (their update), ``ff<i>`` / ``rec<i>`` (Synapses, ``I_post += w``, delays in ms),
    ``spikes<i>`` (SpikeMonitors) and ``readout_trace`` (StateMonitor of the readout ``v`` -- ``count`` for a count readout -- on the training grid).
    Run it for ``network.eventsnn_duration`` (a Brian2 time): ``network.run(network.eventsnn_duration)``. Its
    spikes are the ones :func:`simulate_brian2` gives for that sample with the same settings; its readout
    trace (``readout_trace``, recorded at the start of every training step) holds the run's trace in records
    ``1 .. network.eventsnn_trace_steps``.
    """

    b2 = import_brian2()

    logging.captureWarnings(False)
    dt_ms = net.dt_ms if dt_ms is None else float(dt_ms)
    ratio = grid_ratio(net.dt_ms, dt_ms)
    if not 0 <= sample < len(events):
        raise EventsnnError(f"sample {sample} out of range [0, {len(events)})")
    netq = with_delay_mode(net, delays)
    binned = bin_for_run(events, [sample], dt_ms, net.dt_ms, inputs)
    Dff, Drec, W = _steps(netq, binned.n_steps, dt_ms, ratio, 1)
    _configure("numpy", Path("."), exact=True)  # runtime device, numpy target, float64, as simulate_brian2
    b2.start_scope()
    b2.defaultclock.dt = dt_ms * b2.ms
    objs, _, _ = _build(b2, net, netq, binned, 1, W, 1, dt_ms, Dff, Drec)
    network = b2.Network(*objs)
    network.eventsnn_duration = W * dt_ms * b2.ms
    network.eventsnn_trace_steps = binned.n_steps // ratio  # training steps in the readout trace
    return network


def on_pre(L) -> str:
    """What an arriving spike does to a neuron of layer ``L``: ``I += w`` (LIF/LI), ``I += e*w`` (SRM), ``I += c*w``
    (SRM with a learned PSP kernel: one synapse per knot, ``c`` its change of slope)."""
    if L.kind == "srm":
        return "I_post += c*w" if L.psp_taps is not None else f"I_post += {SRM_E!r}*w"
    return "I_post += w"


def synapse_model(L) -> str:
    """The feed-forward synapses' variables: ``w``, and ``c`` for a learned PSP kernel's knots."""
    return "w : 1 (constant)" + ("\nc : 1 (constant)" if L.psp_taps is not None else "")


def psp_knots_steps(L, dt_ms: float):
    """A learned PSP kernel's knots as ``(lags in steps of dt_ms, c)`` (:func:`eventsnn.model.srm.fir_kinks`);
    None for other layers."""
    if L.psp_taps is None:
        return None
    lags, c = fir_kinks(L.psp_taps, L.psp_tap_ms)
    return np.rint(lags / dt_ms).astype(np.int64), c


def neuron_parameters(L, dt_ms: float) -> dict:
    """Per-neuron constants of a layer's Brian2 model (float64 arrays): the propagators, the threshold and, for
    SRM, the refractory jump."""
    if L.kind == "srm":
        a, k, ar, kr = srm_propagators(L.tau_sr_ms, L.tau_ref_ms, dt_ms)
        if L.psp_taps is not None:  # the kernel part: v += dt*I, I its slope (per ms), moved at the knots
            a, k = np.ones(L.size), np.full(L.size, float(dt_ms))
        return {"a": a, "k": k, "ar": ar, "kr": kr, "theta": L.threshold,
                "jump": refractory_jump(L.scale_ref, L.threshold)}
    a, b, k = propagators(L.tau_mem_ms, L.tau_syn_ms, dt_ms)
    return {"a": a, "b": b, "k": k, **({"theta": L.threshold} if L.kind == "lif" else {})}


def neuron_equations(L, dt_ms: float, windowed: bool, count: bool = False):
    """The Brian2 model of one layer as strings: ``(model, threshold, reset, update, R)``.

    ``update`` is the contract's integrate step (explicit propagators ``a``, ``b``, ``k``), run in the ``groups``
    slot; threshold and reset are Brian2's own slots, so the default schedule gives the contract's step order.
    SRM layers: ``v, I, vr, Ir``, threshold on ``v + vr``, the reset slot adds ``jump`` to ``Ir``
    (:mod:`eventsnn.model.srm`). ``R``: the refractory period (LIF: ``v`` held) or dead time (SRM: nothing held)
    in steps, counted down in ``refcount``, or None where it is at most one step. ``windowed``: no spikes in the
    padding of a time window. ``count``: the layer counts its spikes in ``count`` (a spiking readout,
    ``readout="count"``).
    """
    R = refractory_steps(L.refractory_ms, dt_ms) if (L.spiking and L.refractory_ms is not None) else None
    if R is not None and not np.any(R > 1):
        R = None
    if L.kind == "srm":
        model = "".join(f"{n} : 1\n" for n in ("v", "I", "vr", "Ir")) + "".join(
            f"{n} : 1 (constant)\n" for n in ("a", "k", "ar", "kr", "theta", "jump"))
        threshold = "v + vr >= theta"
        reset = "Ir += jump"
        update = "v = a*v + k*I\nI = a*I\nvr = ar*vr + kr*Ir\nIr = ar*Ir"
    else:
        model = "v : 1\nI : 1\na : 1 (constant)\nb : 1 (constant)\nk : 1 (constant)\n"
        threshold = reset = None
        if L.spiking:
            model += "theta : 1 (constant)\n"
            threshold = "v >= theta"
            reset = "v = 0" if L.reset == "zero" else "v = v - theta"
        update = ("v = int(refcount > 0)*v + int(refcount <= 0)*(a*v + k*I)\nI = b*I" if R is not None
                  else "v = a*v + k*I\nI = b*I")
    if R is not None:
        model += "R : 1 (constant)\nrefcount : 1\n"
        threshold += " and refcount <= 0"
        reset += "\nrefcount = R"
        update = "refcount = clip(refcount - 1, 0, inf)\n" + update
    if L.spiking and windowed:
        threshold += " and (timestep(t, dt) % Wsteps) < Tsteps"
    if L.spiking and count:
        model += "count : 1\n"
        reset += "\ncount += 1"
    return model, threshold, reset, update, R


def _build(b2, net, netq, binned, C, W, n_windows, dt_ms, Dff, Drec):
    """The Brian2 objects of a run: input generator (with lanes), layers, synapses, monitors."""
    T = binned.n_steps
    dt = dt_ms * b2.ms
    objs = []
    # inputs: slot s -> window w = s // C, copy c = s % C. A SpikeGeneratorGroup neuron fires at most once
    # per step, so a unit with m spikes in one step fires in m "lanes": lane l holds the (l+1)-th spike of
    # every (step, unit); each lane is a copy of the input units with the same synapses. Usually one lane.
    lanes = int(binned.count.max()) if len(binned.count) else 1
    lane_of = [np.flatnonzero(binned.count > l) for l in range(lanes)]
    lane = np.concatenate([np.full(len(ix), l) for l, ix in enumerate(lane_of)])
    pick = np.concatenate(lane_of)
    sample, step, unit = binned.sample[pick], binned.step[pick], binned.unit[pick]
    w_of, c_of = sample // C, sample % C
    gen_idx = (lane * C + c_of) * net.n_inputs + unit
    gen_step = w_of * W + step
    order = np.lexsort((gen_idx, gen_step))
    inp = b2.SpikeGeneratorGroup(lanes * C * net.n_inputs, gen_idx[order], (gen_step[order] * dt_ms) * b2.ms,
                                 period=0 * b2.ms, name="inputs")
    objs.append(inp)

    pre, n_pre = inp, net.n_inputs
    hidden_mons, readout_group = [], None
    namespace = {"Wsteps": W, "Tsteps": T}
    for li, L in enumerate(netq.layers):
        N = L.size
        spiking = L.spiking
        counted = li == len(netq.layers) - 1  # the readout layer; a spiking one (readout count) counts its spikes
        model, threshold, reset, update, R = neuron_equations(L, dt_ms, n_windows > 1, count=counted)
        use_ref = R is not None
        kw = dict(threshold=threshold, reset=reset) if spiking else {}
        G = b2.NeuronGroup(C * N, model, namespace=namespace, name=f"layer{li}", **kw)
        for name, value in neuron_parameters(L, dt_ms).items():
            setattr(G, name, np.tile(value, C))
        if use_ref:
            G.R = np.tile(R.astype(np.float64), C)
        G.run_regularly(update, when="groups", name=f"layer{li}_integrate")
        if n_windows > 1:
            zero = ("v = 0\nI = 0" + ("\nvr = 0\nIr = 0" if L.kind == "srm" else "")
                    + ("\nrefcount = 0" if use_ref else "") + ("\ncount = 0" if counted and spiking else ""))
            G.run_regularly(zero, dt=W * dt, when="before_groups", name=f"layer{li}_window_reset")
        objs.append(G)

        objs.append(_block_synapses(pre, G, n_pre, N, C, L.ff_weight, Dff[li], dt_ms, f"ff{li}",
                                    lanes=lanes if li == 0 else 1, on_pre=on_pre(L), model=synapse_model(L),
                                    knots=psp_knots_steps(L, dt_ms)))
        if L.rec_weight is not None:
            objs.append(_block_synapses(G, G, N, N, C, L.rec_weight, Drec[li], dt_ms, f"rec{li}"))
        if counted:
            readout_group = G
        else:
            mon = b2.SpikeMonitor(G, name=f"spikes{li}")
            hidden_mons.append((mon, N))
            objs.append(mon)
        pre, n_pre = G, N

    var = "count" if net.readout in SPIKING_READOUTS else "v"
    trace_mon = b2.StateMonitor(readout_group, var, record=True, dt=net.dt_ms * b2.ms, when="start",
                                name="readout_trace")
    objs.append(trace_mon)
    return objs, hidden_mons, trace_mon


def _simulate_part(args):
    net, events, build_dir, kw = args
    return simulate_brian2(net, events, build_dir=build_dir, progress=False, workers=1, **kw)


def _simulate_in_workers(net, events, indices, workers, build_dir, progress, kw) -> RunResult:
    """``simulate_brian2`` over consecutive sample chunks in ``workers`` spawned processes (own build dirs)."""

    t0 = time.perf_counter()
    run = run_sample_chunks(_simulate_part, lambda i, ev: (net, ev, build_dir / f"part{i}", kw), events, indices,
                            workers, f"brian2 {kw['target']} dt={kw['dt_ms']:g}ms parts", progress)
    run.attrs["wall_s"] = time.perf_counter() - t0
    return run


def _block_synapses(pre, post, n_pre, n_post, C, weight, D, dt_ms, name, lanes: int = 1, on_pre="I_post += w",
                    model="w : 1 (constant)", knots=None):
    """All-to-all synapses ``pre -> post`` inside each of the C copies (block diagonal).

    ``D``: None, integer steps per presynaptic neuron ``[n_pre]`` (axonal) or per synapse ``[n_pre, n_post]``.
    ``lanes``: the presynaptic group holds ``lanes`` stacked copies of the C blocks (input lanes), each
    connected like the first. ``knots``: ``(lags in steps, c)`` of a learned PSP kernel: every pair is connected
    once per knot, delayed by its lag more, with ``c`` the knot's change of slope.
    """
    import brian2 as b2

    ii, jj = np.meshgrid(np.arange(n_pre), np.arange(n_post), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    d = np.zeros(len(ii), np.int64) if D is None else (D[ii] if D.ndim == 1 else D[ii, jj])
    lags, c = (np.zeros(1, np.int64), None) if knots is None else knots
    ii, jj, w = np.tile(ii, len(lags)), np.tile(jj, len(lags)), np.tile(weight[ii, jj], len(lags))
    d = (d[None] + lags[:, None]).ravel()
    S = b2.Synapses(pre, post, model, on_pre=on_pre, name=name)
    blocks = lanes * C
    S.connect(i=((np.arange(blocks) * n_pre)[:, None] + ii[None]).ravel(),
              j=((np.arange(blocks) % C * n_post)[:, None] + jj[None]).ravel())
    S.w = np.tile(w, blocks)
    if knots is not None:
        S.c = np.tile(np.repeat(c, len(w) // len(lags)), blocks)
    if D is not None or knots is not None:
        S.delay = np.tile(d * dt_ms, blocks) * b2.ms
    return S


def _reset_device():
    import brian2

    dev = brian2.get_device()
    if dev.__class__.__name__ != "RuntimeDevice":
        dev.reinit()
        brian2.set_device("runtime")


_SCRIPT_HEAD = '''"""Brian2 script written by eventsnn {version}: one sample of a network, readable and standalone.

Network: {network}; sample {sample} of {events} (label {label}); dt = {dt_ms:g} ms (training dt {train_dt:g} ms),
delays: {delays}, inputs: {inputs}. The parameters are in {npz} next to this script.

Model (dimensionless; eventsnn's discrete-time contract): tau_mem dv/dt = I - v, tau_syn dI/dt = -I, integrated
exactly over each step by the propagators a, b, k (v = a v + k I; I = b I) in the 'groups' slot; a spike when
v >= theta (Brian2's 'thresholds' slot), then synaptic delivery I += w ('synapses') and the reset ('resets'):
Brian2's default schedule is the contract's step order. A unit with several input spikes in one step fires in
several stacked copies ("lanes") of the input group. Spikes at or after {duration_ms:g} ms (the last, extra step,
which records the final readout sample) are outside the sample.{srm_note}

Run: python {script}   (prints the prediction; writes {out_npz}: spike times and units per layer, the
readout trace [training steps, outputs] -- the trace `eventsnn simulate` gives for this sample --, the class
scores and the prediction)
"""
from pathlib import Path

import brian2 as b2
import numpy as np

here = Path(__file__).resolve().parent
p = np.load(here / "{npz}")
b2.prefs.core.default_float_dtype = np.float64
b2.prefs.codegen.target = "numpy"
b2.defaultclock.dt = {dt_ms!r} * b2.ms

inputs = b2.SpikeGeneratorGroup({n_gen}, p["inputs_index"], p["inputs_time_ms"] * b2.ms, name="inputs")
'''


_SCRIPT_SRM = """
SRM-alpha layers (SLAYER's srmAlpha; eventsnn.srm): u = v + vr, where v, I is the same filter pair with
tau_mem = tau_syn = tau_sr (a = exp(-dt/tau_sr), k = dt/tau_sr*a) and an arriving spike does I += e*w, so that
each spike adds w (t/tau_sr) e^(1 - t/tau_sr) to u; vr, Ir is a second pair with tau_ref driven by the neuron's
own spikes (the reset slot does Ir += jump = -e*scale_ref*theta), so that each own spike adds
-scale_ref*theta (t/tau_ref) e^(1 - t/tau_ref). A spike when v + vr >= theta; no reset of v. A layer with a
learned PSP kernel (piecewise linear through its taps) has a = 1, k = dt: v += dt*I, I the kernel part's slope,
and its synapses come once per knot of the kernel (delay + the knot's lag), each doing I += c*w, c the change
of slope there."""


def write_brian2_script(net: Network, events, sample: int, path, *, dt_ms: float | None = None,
                        delays: str = "round", inputs: str = "binned", names: dict | None = None) -> tuple:
    """Write a standalone, readable Brian2 script (``path``, .py) and its parameters (same name, .npz) that
    reproduce ``sample`` of ``events`` in ``net``: the objects of :func:`to_brian2`, spelled out. Returns the
    two paths. ``names``: the network and events file names to mention in the script's docstring."""
    import brian2 as b2
    from brian2.utils.logger import BrianLogger

    from eventsnn import __version__

    BrianLogger.suppress_name("unused_brian_object")  # the objects are read here, not run
    path = Path(path)
    npz_path = path.with_suffix(".npz")
    network = to_brian2(net, events, sample, dt_ms=dt_ms, delays=delays, inputs=inputs)
    dt_ms = net.dt_ms if dt_ms is None else float(dt_ms)
    obj = {o.name: o for o in network.objects}
    arrays = {"inputs_index": np.asarray(obj["inputs"].neuron_index[:]),
              "inputs_time_ms": np.asarray(obj["inputs"].spike_time[:]) * 1e3}
    names = names or {}
    lines = [_SCRIPT_HEAD.format(version=__version__, network=names.get("network", "network"), sample=sample,
                                 events=names.get("events", "events"), label=int(events.labels[sample]),
                                 dt_ms=dt_ms, train_dt=net.dt_ms, delays=delays, inputs=inputs, npz=npz_path.name,
                                 duration_ms=events.duration_ms, script=path.name,
                                 out_npz=path.stem + "_result.npz", n_gen=obj["inputs"].N,
                                 srm_note=_SCRIPT_SRM if net.has_srm else "")]
    monitors = []
    pre = "inputs"
    readout_var = "count" if net.readout in SPIKING_READOUTS else "v"
    for li, L in enumerate(net.layers):
        G = obj[f"layer{li}"]
        last = li == len(net.layers) - 1
        model, threshold, reset, update, R = neuron_equations(L, dt_ms, False, count=last)
        kind = {"lif": "LIF", "srm": "SRM-alpha", "li": "leaky readout"}[L.kind]
        if last and L.spiking:
            kind = "spike-counting readout" if L.kind == "lif" else "spike-counting SRM-alpha readout"
        lines.append(f"\n# layer {li}: {L.size} {kind} neurons"
                     + (f", reset {L.reset}" if L.kind == "lif" else "")
                     + ((", dead time" if L.kind == "srm" else ", refractory") if R is not None else ""))
        kw = "" if threshold is None else f", threshold={threshold!r}, reset={reset!r}"
        lines.append(f"layer{li} = b2.NeuronGroup({L.size}, {model!r}{kw}, name='layer{li}')")
        for pname in tuple(neuron_parameters(L, dt_ms)) + (("R",) if R is not None else ()):
            arrays[f"layer{li}_{pname}"] = np.asarray(getattr(G, pname)[:])
            lines.append(f"layer{li}.{pname} = p['layer{li}_{pname}']")
        lines.append(f"layer{li}.run_regularly({update!r}, when='groups', name='layer{li}_integrate')")
        for syn, src in ((f"ff{li}", pre), (f"rec{li}", f"layer{li}")):
            if syn not in obj:
                continue
            S = obj[syn]
            arrays[f"{syn}_i"], arrays[f"{syn}_j"] = np.asarray(S.i[:]), np.asarray(S.j[:])
            arrays[f"{syn}_w"] = np.asarray(S.w[:])
            arrays[f"{syn}_delay_ms"] = np.asarray(S.delay[:] / b2.ms)
            ff = syn.startswith("ff")
            lines += [f"{syn} = b2.Synapses({src}, layer{li}, {synapse_model(L) if ff else 'w : 1 (constant)'!r}, "
                      f"on_pre={on_pre(L) if ff else 'I_post += w'!r}, name='{syn}')",
                      f"{syn}.connect(i=p['{syn}_i'], j=p['{syn}_j'])",
                      f"{syn}.w = p['{syn}_w']", f"{syn}.delay = p['{syn}_delay_ms'] * b2.ms"]
            if ff and L.psp_taps is not None:
                arrays[f"{syn}_c"] = np.asarray(S.c[:])
                lines.append(f"{syn}.c = p['{syn}_c']")
        if not last:
            lines.append(f"spikes{li} = b2.SpikeMonitor(layer{li}, name='spikes{li}')")
            monitors.append(li)
        else:
            lines.append(f"readout_trace = b2.StateMonitor(layer{li}, {readout_var!r}, record=True, "
                         f"dt={net.dt_ms!r} * b2.ms, when='start', name='readout_trace')")
        pre = f"layer{li}"
    dur = float(network.eventsnn_duration / b2.ms)
    n_train_steps = network.eventsnn_trace_steps  # the readout trace: one value per training step
    score = {"max": "trace.max(axis=0)", "mean": "trace.mean(axis=0)", "last": "trace[-1]", "count": "trace[-1]",
             "softmax-sum": "(np.exp(trace - trace.max(axis=1, keepdims=True))"
                            " / np.exp(trace - trace.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True))"
                            ".sum(axis=0)"}[net.readout]
    lines += ["", "net = b2.Network(b2.collect())", f"net.run({dur!r} * b2.ms)",
              "# the readout at the end of training steps 1..K: recorded at the start of the next training step",
              f"trace = np.asarray(readout_trace.{readout_var}[:, 1:{n_train_steps + 1}]).T  # [steps, outputs]",
              f"scores = {score}  # readout {net.readout!r}",
              "result = {'trace': trace, 'scores': scores, 'prediction': int(np.argmax(scores))}"]
    for li in monitors:
        lines += [f"result['layer{li}_time_ms'] = np.asarray(spikes{li}.t / b2.ms)",
                  f"result['layer{li}_unit'] = np.asarray(spikes{li}.i[:])"]
    lines += [f"np.savez(here / '{path.stem}_result.npz', **result)",
              *(f"print('layer {li}: ' + str(len(result['layer{li}_unit'])) + ' spikes')" for li in monitors),
              f"print('prediction: class ' + str(result['prediction']) + ' (label {int(events.labels[sample])}); "
              "scores ' + np.array2string(scores, precision=4))", ""]
    _reset_device()
    with atomic_path(npz_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path, npz_path
