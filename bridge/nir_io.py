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

Import (``source="generic"``) reads graphs of this shape written by anyone, with NIR's continuous-time semantics:
the jump per spike is ``W * w_in / tau_syn``, ``r`` scales it too (``v`` integrates ``r I``). Other tools'
discrete-time conventions (snnTorch's decay factors, Norse's) are not mapped yet.
"""
from __future__ import annotations

import json
import warnings

import numpy as np

from eventsnn.errors import EventsnnError, fail
from eventsnn.events import EventsnnWarning

from .network import Layer, Network

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
    if source != "generic":
        raise EventsnnError(f"--source {source}: only 'generic' (NIR's continuous-time semantics) is supported")
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
    neuron_types = (nir.CubaLIF, nir.CubaLI)
    while True:
        nxt = [b for b in succ.get(cur, []) if not isinstance(nodes[b], nir.Output)]
        fwd = nxt if cur == inputs[0] else _forward_branches(nodes, succ, cur, nxt, nir)
        if not fwd:
            break
        if len(fwd) > 1:
            raise fail(where, f"node {cur!r}: branches to {fwd}; only a chain of layers can be represented")
        # this layer's feed-forward path: [Delay] -> Linear/Affine -> neuron
        step, delay = fwd[0], None
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
        if not isinstance(neuron, neuron_types):
            raise fail(where, f"node {neuron_name!r}: expected CubaLIF or CubaLI, found {type(neuron).__name__}")
        W = np.asarray(lin.weight, float)
        ts, tm = np.asarray(neuron.tau_syn, float).ravel(), np.asarray(neuron.tau_mem, float).ravel()
        scale = np.asarray(neuron.w_in, float) * np.asarray(neuron.r, float) / ts  # jump of I per unit weight
        if np.any(np.asarray(neuron.v_leak) != 0):
            raise fail(where, f"node {neuron_name!r}: v_leak must be 0 (the model leaks to 0)")
        N = len(ts)
        if W.shape != (N, n_pre):
            raise fail(where, f"node {step!r}: weight shape {list(W.shape)} does not connect {n_pre} -> {N}")
        li = len(layers)
        ml = meta.get("layers") or []
        lm = ml[li] if li < len(ml) else {}
        spiking = isinstance(neuron, nir.CubaLIF)
        rec_w, rec_d = _recurrent(nodes, succ, neuron_name, N, scale, nir, where)
        ref = lm.get("refractory_ms")
        layers.append(Layer("lif" if spiking else "li", N, tm / MS, ts / MS, (W * scale[:, None]).T,
                            reset=lm.get("reset", "zero") if spiking else "zero",
                            threshold=np.asarray(neuron.v_threshold, float).ravel() if spiking else None,
                            refractory_ms=None if ref is None else np.asarray(ref, float),
                            ff_delay_ms=delay, rec_weight=rec_w, rec_delay_ms=rec_d,
                            ff_delay_learned=bool(lm.get("ff_delay_learned", False))))
        cur, n_pre = neuron_name, N
        if not spiking:
            break
    if not layers:
        raise fail(where, "no layers found after the Input node")
    try:
        return Network(float(dt), n_in, layers, meta.get("readout", "max"), {"source": "nir"}).validate(where)
    except EventsnnError:
        raise
    except Exception as e:
        raise fail(where, f"not a network eventsnn can represent ({e})") from None


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
    from eventsnn.errors import atomic_path

    nir = _nir()
    graph = to_nir(net)
    with atomic_path(path) as tmp:
        nir.write(str(tmp), graph)


def load_nir(path, dt_ms: float | None = None, source: str = "generic") -> Network:
    """Read a NIR file into a network (errors name the file)."""
    from eventsnn.errors import open_h5

    nir = _nir()
    open_h5(path).close()  # exists, is HDF5
    try:
        graph = nir.read(str(path))
    except Exception as e:  # nir raises many types for files it cannot parse
        raise fail(path, f"not a readable NIR graph ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") \
            from None
    return from_nir(graph, dt_ms, source, path)
