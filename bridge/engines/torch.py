"""torch model <-> network file (the only bridge module that imports torch)."""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from eventsnn.bridge.network import Layer, Network, with_delay_mode
from eventsnn.bridge.runfile import LayerSpikes, RunResult
from eventsnn.data.events import bin_for_run, warn_merged
from eventsnn.model.contract import grid_ratio, readout_scores, trace_sample_steps
from eventsnn.model.layers import SNN, LIFLayer
from eventsnn.util.progress import progress_bar


def _np(t):
    return None if t is None else t.detach().cpu().double().numpy().copy()


def network_from_model(model: SNN, meta: dict | None = None) -> Network:
    layers = []
    for l in model.layers:
        if l.kind == "srm":
            layers.append(Layer(kind="srm", size=l.size, tau_mem_ms=None, tau_syn_ms=None, ff_weight=_np(l.ff_weight),
                                threshold=_np(l.threshold), tau_sr_ms=_np(l.tau_sr_ms), tau_ref_ms=_np(l.tau_ref_ms),
                                scale_ref=_np(l.scale_ref), ff_delay_ms=_np(l.ff_delay_ms),
                                refractory_ms=_np(l.refractory_ms) if bool((l.refractory_ms > 0).any()) else None,
                                ff_delay_learned=bool(l.delays_learned), psp_taps=_np(l.psp_taps),
                                psp_tap_ms=None if l.psp_taps is None else l.psp_tap_ms))
            continue
        layers.append(Layer(kind="lif" if l.spiking else "li", size=l.size, reset=l.reset,
                            tau_mem_ms=_np(l.tau_mem_ms), tau_syn_ms=_np(l.tau_syn_ms),
                            threshold=_np(l.threshold) if l.spiking else None,
                            refractory_ms=_np(l.refractory_ms) if l.spiking else None,
                            ff_weight=_np(l.ff_weight), ff_delay_ms=_np(l.ff_delay_ms),
                            rec_weight=_np(l.rec_weight), rec_delay_ms=_np(l.rec_delay_ms),
                            ff_delay_learned=bool(l.delays_learned)))
    return Network(model.dt_ms, model.n_inputs, layers, model.readout, dict(meta or {})).validate()


def model_from_network(net: Network, dtype=torch.float64, device="cpu", dt_ms: float | None = None) -> SNN:
    """An :class:`SNN` whose parameters are exactly the file's (evaluation model), stepping at ``dt_ms``
    (default: the training dt; delays and refractory periods round at the step it runs at)."""
    layers = []
    n_pre = net.n_inputs
    for L in net.layers:
        if L.kind == "srm":
            layers.append(_srm_layer(L, n_pre, dtype).to(device))
            n_pre = L.size
            continue
        layer = LIFLayer(n_pre, L.size, spiking=L.kind == "lif", reset=L.reset, dtype=dtype,
                         delays=L.delay_kind, max_delay_ms=L.max_delay_ms(),
                         recurrent=L.rec_weight is not None,
                         rec_delays="none" if L.rec_delay_ms is None else "synaptic")
        with torch.no_grad():
            def put(name, value):
                getattr(layer, name).copy_(torch.as_tensor(value, dtype=dtype))
            put("tau_mem_ms", L.tau_mem_ms)
            put("tau_syn_ms", L.tau_syn_ms)
            if L.threshold is not None:
                put("threshold", L.threshold)
            if L.refractory_ms is not None:
                put("refractory_ms", L.refractory_ms)
            put("ff_weight", L.ff_weight)
            if L.ff_delay_ms is not None:
                layer.ff_delay_ms = torch.nn.Parameter(torch.as_tensor(L.ff_delay_ms, dtype=dtype))
            if L.rec_weight is not None:
                put("rec_weight", L.rec_weight)
            if L.rec_delay_ms is not None:
                layer.rec_delay_ms = torch.as_tensor(L.rec_delay_ms, dtype=dtype)
        layer.delays_learned = L.ff_delay_learned
        layers.append(layer.to(device))
        n_pre = L.size
    model = SNN(layers, net.dt_ms if dt_ms is None else dt_ms, net.readout)
    model.requires_grad_(False)
    return model


def _srm_layer(L, n_pre: int, dtype):
    from eventsnn.model.srm_layer import SRMLayer

    layer = SRMLayer(n_pre, L.size, tau_sr_ms=L.tau_sr_ms, tau_ref_ms=L.tau_ref_ms, scale_ref=L.scale_ref,
                     threshold=L.threshold, refractory_ms=0.0 if L.refractory_ms is None else L.refractory_ms,
                     delays=L.delay_kind, max_delay_ms=L.max_delay_ms(), dtype=dtype,
                     psp_taps=L.psp_taps, psp_tap_ms=L.psp_tap_ms or 1.0)
    with torch.no_grad():
        layer.ff_weight.copy_(torch.as_tensor(L.ff_weight, dtype=dtype))
        if L.ff_delay_ms is not None:
            layer.ff_delay_ms = torch.nn.Parameter(torch.as_tensor(L.ff_delay_ms, dtype=dtype))
    layer.delays_learned = L.ff_delay_learned
    return layer


BATCH_MEMORY_BYTES = 2 << 30  # a batch's dense arrays stay under this (at fine dt one SHD sample is ~2 GB)


def _bounded_batch(net: Network, events, dt_ms: float, dtype, batch_size: int) -> int:
    """``batch_size`` reduced so that a batch's dense arrays — the input raster and about four ``[T, N]`` arrays
    per layer (currents, spikes, membrane before reset, delayed inputs) — fit :data:`BATCH_MEMORY_BYTES`; at
    least one sample. At dt 0.01 ms a 1 s sample is 100,000 steps."""
    steps = max(1, int(np.ceil(events.duration_s * 1000.0 / dt_ms)) + 1)
    width = net.n_inputs + 4 * sum(L.size for L in net.layers)
    per_sample = steps * width * torch.finfo(dtype).bits // 8
    return int(max(1, min(batch_size, BATCH_MEMORY_BYTES // per_sample)))


def simulate_torch(net: Network, events, indices=None, *, dt_ms: float | None = None, delays: str = "round",
                   inputs: str = "binned", device: str = "cpu", dtype=torch.float64, batch_size: int = 128,
                   progress: bool = False):
    """Run the network file on the torch engine (the discrete-time contract at ``dt_ms``).

    Parameters
    ----------
    net : Network
        The network file's contents.
    events : Events
        Input samples; ``indices`` selects some (default: all).
    dt_ms : float, optional
        Step in ms (default: the training dt); must divide the training dt.
    delays : {"round", "exact"}
        ``round``: delays rounded to the training grid; ``exact``: real-valued, rounded to ``dt_ms``.
    inputs : {"binned", "exact"}
        ``binned``: the binary raster training saw; ``exact``: every spike at ``dt_ms`` (counts kept).
    device, dtype, batch_size
        Where and in what precision to run, and how many samples at once (at most; fewer where a batch's dense
        arrays would pass :data:`BATCH_MEMORY_BYTES`).

    Returns
    -------
    RunResult
        Hidden spikes per layer, the readout trace on the training grid, predictions.

    Raises
    ------
    EventsnnError
        If ``dt_ms`` does not divide the training dt or a mode is unknown.
    """

    from eventsnn.bridge.engines import check_compatible
    from eventsnn.model.layers import raster

    dt_ms = net.dt_ms if dt_ms is None else dt_ms
    check_compatible(net, events, dt_ms)
    if os.environ.get("EVENTSNN_WORKER"):  # a Dask worker process: the workers share the cores
        torch.set_num_threads(1)
    ratio = grid_ratio(net.dt_ms, dt_ms)
    if indices is None:
        indices = np.arange(len(events))
    indices = np.asarray(indices, dtype=np.int64)
    model = model_from_network(with_delay_mode(net, delays), dtype=dtype, device=device, dt_ms=dt_ms)
    batch_size = _bounded_batch(net, events, dt_ms, dtype, batch_size)
    hidden = [[] for _ in model.layers[:-1]]
    traces = []
    t0 = time.perf_counter()
    merged = n_spikes = 0
    with torch.no_grad(), progress_bar(total=len(indices), desc=f"torch dt={dt_ms:g}ms", disable=not progress) as bar:
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            b = bin_for_run(events, chunk, dt_ms, net.dt_ms, inputs)
            K = b.n_steps
            merged, n_spikes = merged + b.merged_away, n_spikes + b.n_spikes
            x = raster(b, net.n_inputs, dtype=dtype, device=device)  # spike counts per unit and step
            _, trace, spikes = model(x, delay_mode="round")
            for li, s in enumerate(spikes):
                b, t, u = torch.nonzero(s, as_tuple=True)
                hidden[li].append(((b + start).cpu().numpy(), u.cpu().numpy(), t.cpu().numpy()))
            sel = torch.as_tensor(trace_sample_steps(K // ratio, ratio), device=device)
            traces.append(trace[:, sel].cpu().numpy())
            bar.update(len(chunk))
    warn_merged(merged, n_spikes, net.dt_ms)
    layers = []
    for parts in hidden:
        cat = [np.concatenate([p[i] for p in parts]) for i in range(3)]
        layers.append(LayerSpikes.from_steps(cat[0], cat[1], cat[2], dt_ms))
    trace = np.concatenate(traces)
    pred = readout_scores(trace, net.readout).argmax(axis=1)
    return RunResult("torch", dt_ms, net.dt_ms, delays, inputs, str(device), net.readout, layers, trace, pred,
                     events.labels[indices].copy(), indices, {"wall_s": time.perf_counter() - t0})
