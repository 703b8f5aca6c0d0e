"""NIR in and out: the network file's model as a NIR graph (``nir`` 1.0), and back.

Export maps each layer to ``[Delay] -> Linear -> CubaLIF`` (the readout to ``CubaLI``), recurrence to a
``Linear`` (with an optional ``Delay``) from a layer's output back to its input -- a cycle in the graph. NIR's
neurons are continuous-time; times are in seconds (NIR's convention):

    tau_syn dI/dt = -I + w_in S,   tau_mem dv/dt = (v_leak - v) + r I,   spike when v > v_threshold

With ``r = 1``, ``v_leak = 0`` and ``w_in = tau_syn`` a presynaptic spike (a Dirac impulse of the Linear's
weight ``W``) makes ``I`` jump by exactly ``W`` -- our ``I += w``. What NIR cannot say is recorded in the graph's
metadata and restored on import: the training ``dt`` and step order (NIR has no time step), the reset mode (NIR
resets to ``v_reset``; ``subtract`` is ours), refractory periods (NIR has none), the threshold rule (ours is
``v >= theta``, NIR's ``v > v_threshold``; they differ only on a set of measure zero in continuous time), the
readout and which delays were learned. Per-synapse (``synaptic``) delays cannot be expressed (NIR's ``Delay``
delays each element of a vector, i.e. per presynaptic neuron): export refuses them with that reason.

Import reads graphs of this shape. ``source="generic"``: NIR's continuous-time semantics (the jump per spike is
``W * w_in / tau_syn``; ``r`` scales it too, as ``v`` integrates ``r I``). ``source="snntorch"`` and
``source="norse"``: the graph as that library's exporter wrote it, mapped onto our discrete-time contract so that
the library's own simulation is reproduced exactly at its step ``dt``:

* both libraries update ``I <- b I + input`` and ``v <- a v + k I`` *in the same step* (the input of step t moves
  ``v`` at step t); ours moves it at step t+1 (DESIGN's step order). So every layer fires exactly one step later
  than in the library: layer ``i`` (0-based) of ours at step ``t + i + 1`` is the library's spike at step ``t``.
* snnTorch (``Synaptic``; exporter 1.0: ``tau = dt_x/(1 - decay)``, ``r = tau_mem/dt_x``, ``w_in = tau_syn/dt_x``
  with its fixed ``dt_x = 1e-4``): ``b = alpha = 1 - dt_x/tau_syn``, ``a = beta = 1 - dt_x/tau_mem``, ``k = 1``;
  reset to zero right after the spike (``reset_mechanism="zero"``, ``reset_delay=False``: how snnTorch's own NIR
  import reads ``CubaLIF``; its default delayed subtractive reset is not in the graph and cannot be reproduced).
* Norse (``LIFCell``, forward Euler): ``a = 1 - dt/tau_mem``, ``b = 1 - dt/tau_syn``, ``k = dt/tau_mem``, reset to
  ``v_reset = 0``. Norse 1.1's exporter writes ``dt / tau_inv`` (= ``dt * tau``) as the time constant; a value
  below ``dt`` is read that way (a real time constant is longer than the step of a stable Euler scheme).

Our taus reproduce ``a`` and ``b`` exactly (``tau = -dt/ln(decay)``) and the weights are scaled by the library's
``k`` over ours. A graph that ends in spiking neurons (the libraries have no ``CubaLI``) gets an added readout:
one leaky integrator per output neuron (identity weights, tau_syn = dt, tau_mem = 1e7 ms, i.e. a spike counter),
so the output layer's spikes can be simulated and verified like the others; predictions come from that readout.
"""
from __future__ import annotations

import json
import warnings

import numpy as np

from eventsnn.bridge.network import Layer, Network
from eventsnn.model.contract import SPIKING_READOUTS, propagators
from eventsnn.util.errors import EventsnnError, EventsnnWarning, fail
from eventsnn.util.files import atomic_path, open_h5

MS = 1e-3  # NIR times are in seconds


def _nir():
    try:
        import nir
    except ImportError:
        raise EventsnnError("NIR support needs the 'nir' package: pip install 'nir>=1.0.8'") from None
    return nir


def to_nir(net: Network):
    """The network as a ``nir.NIRGraph`` (see the module docstring for the mapping and what goes to metadata)."""
    nir = _nir()
    net.validate()
    nodes = {"input": nir.Input(input_type={"input": np.array([net.n_inputs])})}
    edges = []
    prev = "input"
    notes = []
    for i, L in enumerate(net.layers):
        if L.kind == "srm":
            raise EventsnnError(f"layers/{i}: an SRM-alpha ('srm') layer cannot be expressed in NIR, which has no "
                                "neuron without a reset and with a refractory kernel; export it as h5 or brian2")
        if L.delay_kind == "synaptic" or (L.rec_delay_ms is not None and L.rec_delay_ms.ndim == 2):
            raise EventsnnError(f"layers/{i}: per-synapse (synaptic) delays cannot be expressed in NIR, whose Delay "
                                "node delays each presynaptic neuron; export a network with axonal delays")
        if L.ff_delay_ms is not None:
            nodes[f"delay{i}"] = nir.Delay(delay=L.ff_delay_ms * MS)
            edges.append((prev, f"delay{i}"))
            prev = f"delay{i}"
        nodes[f"w{i}"] = nir.Linear(weight=L.ff_weight.T.copy())
        edges.append((prev, f"w{i}"))
        ts, tm = L.tau_syn_ms * MS, L.tau_mem_ms * MS
        common = dict(tau_syn=ts, tau_mem=tm, r=np.ones(L.size), v_leak=np.zeros(L.size), w_in=ts.copy())
        name = f"lif{i}" if L.kind == "lif" else "readout"
        if L.kind == "lif":
            nodes[name] = nir.CubaLIF(v_threshold=L.threshold.copy(), v_reset=np.zeros(L.size), **common)
            if L.reset == "subtract":
                notes.append(f"layers/{i}: subtract reset (NIR resets to v_reset; kept in metadata)")
            if L.refractory_ms is not None and np.any(L.refractory_ms > 0):
                notes.append(f"layers/{i}: refractory periods (NIR has none; kept in metadata)")
        else:
            nodes[name] = nir.CubaLI(**common)
        edges.append((f"w{i}", name))
        if L.rec_weight is not None:
            nodes[f"rec{i}"] = nir.Linear(weight=L.rec_weight.T.copy())
            src = name
            if L.rec_delay_ms is not None:
                nodes[f"recdelay{i}"] = nir.Delay(delay=L.rec_delay_ms * MS)
                edges.append((name, f"recdelay{i}"))
                src = f"recdelay{i}"
            edges += [(src, f"rec{i}"), (f"rec{i}", name)]
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array([net.n_outputs])})
    edges.append((prev, "output"))
    meta = {"eventsnn": json.dumps({
        "format": "eventsnn.network", "time_unit": "s", "dt_ms": net.dt_ms, "order": "brian2-default",
        "threshold_rule": "v >= theta", "readout": net.readout,
        "layers": [{"reset": L.reset, "ff_delay_learned": bool(L.ff_delay_learned),
                    "refractory_ms": None if L.refractory_ms is None else L.refractory_ms.tolist()}
                   for L in net.layers]})}
    for n in notes:
        warnings.warn(f"NIR export: {n}", EventsnnWarning, stacklevel=2)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def from_nir(graph, dt_ms: float | None = None, source: str = "generic", path=None) -> Network:
    """A network from a NIR graph of the shape :func:`to_nir` writes (``Input -> ([Delay] -> Linear -> CubaLIF)* ->
    [Delay] -> Linear -> CubaLI -> Output``, optional recurrent ``Linear`` cycles). ``dt_ms``: the training step
    to record (required unless the graph's metadata has ours)."""
    nir = _nir()
    if source not in SOURCES:
        raise EventsnnError(f"--source {source}: choose one of {', '.join(SOURCES)}")
    where = path or "NIR graph"
    meta = {}
    raw = (graph.metadata or {}).get("eventsnn")
    if raw is not None:
        try:
            meta = json.loads(raw if isinstance(raw, str) else bytes(raw).decode())
        except (ValueError, TypeError):
            meta = {}
    dt = dt_ms if dt_ms is not None else meta.get("dt_ms")
    if dt is None or not (np.isfinite(dt) and dt > 0):
        raise EventsnnError("--dt: required (a positive step in ms): NIR graphs carry no time step")
    nodes, edges = graph.nodes, list(graph.edges)
    succ = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise fail(where, f"expected one Input node, found {len(inputs)}")
    n_in = int(np.prod(next(iter(nodes[inputs[0]].input_type.values()))))
    layers, cur, n_pre = [], inputs[0], n_in
    while True:
        nxt = [b for b in succ.get(cur, []) if not isinstance(nodes[b], nir.Output)]
        fwd = nxt if cur == inputs[0] else _forward_branches(nodes, succ, cur, nxt, nir)
        if not fwd:
            break
        if len(fwd) > 1:
            raise fail(where, f"node {cur!r}: branches to {fwd}; only a chain of layers can be represented")
        ml = meta.get("layers") or []
        layer, cur = _layer_from_nir(nodes, succ, fwd[0], n_pre, source, float(dt), where,
                                     ml[len(layers)] if len(layers) < len(ml) else {}, nir)
        layers.append(layer)
        n_pre = layer.size
        if layer.kind != "lif":
            break
    if not layers:
        raise fail(where, "no layers found after the Input node")
    info = {"source": "nir" if source == "generic" else f"nir:{source}"}
    if layers[-1].kind == "lif" and meta.get("readout") not in SPIKING_READOUTS:
        n = layers[-1].size
        layers.append(Layer("li", n, np.full(n, 1e7), np.full(n, float(dt)), np.eye(n)))
        info["added_readout"] = "spike counter (identity weights, tau_syn = dt, tau_mem = 1e7 ms)"
        warnings.warn(f"{where}: the graph ends in spiking neurons; a spike-counting readout was added so that "
                      "its output spikes can be simulated and verified (predictions come from that readout)",
                      EventsnnWarning, stacklevel=2)
    if source != "generic":
        info["latency"] = "each layer fires one step later than in the source library (its input moves v in the " \
                          "same step; ours in the next)"
    try:
        return Network(float(dt), n_in, layers, meta.get("readout", "max"), info).validate(where)
    except EventsnnError:
        raise
    except Exception as e:
        raise fail(where, f"not a network eventsnn can represent ({e})") from None


SOURCES = ("generic", "snntorch", "norse")
SNNTORCH_EXPORT_DT_S = 1e-4  # the step snnTorch's exporter assumes when it turns decay factors into taus


def _layer_from_nir(nodes, succ, step, n_pre, source, dt, where, lm, nir):
    """One layer from its feed-forward path ``[Delay] -> Linear/Affine -> CubaLIF/CubaLI`` starting at node
    ``step``; returns the layer and the name of its neuron node. ``lm``: our metadata for the layer, if any."""
    delay = None
    if isinstance(nodes[step], nir.Delay):
        delay = np.asarray(nodes[step].delay, float).ravel() / MS
        step = _only(succ, step, where)
    lin = nodes[step]
    if not isinstance(lin, (nir.Linear, nir.Affine)):
        raise fail(where, f"node {step!r}: expected Linear or Affine, found {type(lin).__name__}")
    if isinstance(lin, nir.Affine) and np.any(np.asarray(lin.bias) != 0):
        raise fail(where, f"node {step!r}: a non-zero bias has no counterpart in the model")
    neuron_name = _only(succ, step, where)
    neuron = nodes[neuron_name]
    if not isinstance(neuron, (nir.CubaLIF, nir.CubaLI)):
        raise fail(where, f"node {neuron_name!r}: expected CubaLIF or CubaLI, found {type(neuron).__name__}")
    W = np.asarray(lin.weight, float)
    if np.any(np.asarray(neuron.v_leak) != 0):
        raise fail(where, f"node {neuron_name!r}: v_leak must be 0 (the model leaks to 0)")
    tm, ts, scale = _neuron_constants(neuron, source, dt, where, neuron_name)  # ms, ms, per neuron
    N = len(ts)
    if W.shape != (N, n_pre):
        raise fail(where, f"node {step!r}: weight shape {list(W.shape)} does not connect {n_pre} -> {N}")
    spiking = isinstance(neuron, nir.CubaLIF)
    rec_w, rec_d = _recurrent(nodes, succ, neuron_name, N, scale, nir, where)
    ref = lm.get("refractory_ms")
    layer = Layer("lif" if spiking else "li", N, tm, ts, (W * scale[:, None]).T,
                  reset=lm.get("reset", "zero") if spiking else "zero",
                  threshold=np.asarray(neuron.v_threshold, float).ravel() if spiking else None,
                  refractory_ms=None if ref is None else np.asarray(ref, float),
                  ff_delay_ms=delay, rec_weight=rec_w, rec_delay_ms=rec_d,
                  ff_delay_learned=bool(lm.get("ff_delay_learned", False)))
    return layer, neuron_name


def _neuron_constants(neuron, source: str, dt_ms: float, where, name):
    """``(tau_mem_ms, tau_syn_ms, scale)`` of a CubaLIF/CubaLI node: our taus and the factor on its input weights
    (see the module docstring for each source's convention)."""
    p = {k: np.asarray(getattr(neuron, k), float).ravel() for k in ("tau_syn", "tau_mem", "r", "w_in")}
    if np.any(p["tau_syn"] <= 0) or np.any(p["tau_mem"] <= 0):
        raise fail(where, f"node {name!r}: time constants must be positive")
    if source == "generic":
        return p["tau_mem"] / MS, p["tau_syn"] / MS, p["w_in"] * p["r"] / p["tau_syn"]
    if source == "snntorch":
        dt_x = p["tau_mem"] / p["r"]  # = the exporter's fixed 1e-4 s
        b_src, a_src = 1 - dt_x / p["tau_syn"], 1 - dt_x / p["tau_mem"]
        k_src = p["w_in"] * dt_x / p["tau_syn"]  # snnTorch's own import scales inputs by this (1 for its exports)
    else:  # norse
        dt_s = dt_ms * MS
        tau = {k: np.where(p[k] < dt_s, p[k] / dt_s, p[k]) for k in ("tau_syn", "tau_mem")}  # see module docstring
        a_src, b_src = 1 - dt_s / tau["tau_mem"], 1 - dt_s / tau["tau_syn"]
        k_src = dt_s / tau["tau_mem"] * p["r"] * p["w_in"]
    for label, d in (("membrane", a_src), ("synaptic", b_src)):
        if np.any(d <= 0) or np.any(d >= 1):
            raise fail(where, f"node {name!r}: {source}'s {label} decay per step must lie in (0, 1), got "
                              f"{float(np.min(d)):g}..{float(np.max(d)):g} (is --dt the library's step?)")
    tm, ts = -dt_ms / np.log(a_src), -dt_ms / np.log(b_src)
    return tm, ts, k_src / propagators(tm, ts, dt_ms)[2]


def _only(succ, name, where):
    out = succ.get(name, [])
    if len(out) != 1:
        raise fail(where, f"node {name!r}: expected exactly one successor, found {len(out)}")
    return out[0]


def _forward_branches(nodes, succ, neuron, nxt, nir):
    """Of a neuron's successors, those that do not lead straight back to it (the forward paths)."""
    fwd = []
    for b in nxt:
        c = b
        if isinstance(nodes[c], nir.Delay):
            c = (succ.get(c) or [None])[0]
        back = c is not None and isinstance(nodes[c], (nir.Linear, nir.Affine)) and neuron in succ.get(c, [])
        if not back:
            fwd.append(b)
    return fwd


def _recurrent(nodes, succ, neuron, N, scale, nir, where):
    """The recurrent weights (and delays, ms) of a neuron node: a Linear from it back to it, maybe via a Delay."""
    for b in succ.get(neuron, []):
        d = None
        c = b
        if isinstance(nodes[c], nir.Delay):
            d = np.asarray(nodes[c].delay, float).ravel() / MS
            c = (succ.get(c) or [None])[0]
        if c is not None and isinstance(nodes[c], (nir.Linear, nir.Affine)) and neuron in succ.get(c, []):
            W = np.asarray(nodes[c].weight, float)
            if W.shape != (N, N):
                raise fail(where, f"node {c!r}: recurrent weight shape {list(W.shape)}, expected {[N, N]}")
            return (W * scale[:, None]).T, d
    return None, None


def save_nir(net: Network, path) -> None:
    """Write the network as a NIR file (atomically)."""

    nir = _nir()
    graph = to_nir(net)
    with atomic_path(path) as tmp:
        nir.write(str(tmp), graph)


def load_nir(path, dt_ms: float | None = None, source: str = "generic") -> Network:
    """Read a NIR file into a network (errors name the file)."""

    nir = _nir()
    open_h5(path).close()  # exists, is HDF5
    try:
        graph = nir.read(str(path))
    except Exception as e:  # nir raises many types for files it cannot parse
        raise fail(path, f"not a readable NIR graph ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") \
            from None
    return from_nir(graph, dt_ms, source, path)
