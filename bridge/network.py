"""The network file (``format="eventsnn.network"``): plain dataclasses, validated in one place.

A network is ``n_inputs`` input units feeding a stack of layers; every layer
but the last is a spiking layer -- LIF (``kind="lif"``) or SRM-alpha (``kind="srm"``,
:mod:`eventsnn.model.srm`) -- the last a leaky integrator readout (``kind="li"``), or a
spiking layer whose spikes are counted (``readout="count"``). All arrays are
float64; delays are real numbers in ms (``ff_delay_ms`` ``[N_pre]`` = axonal,
``[N_pre, N]`` = synaptic).

Versions: a file is written with the lowest version that holds it -- 1 for LIF-only
networks (readable by every eventsnn), 2 when it has ``srm`` layers, 3 when an ``srm``
layer has a learned PSP kernel (``psp_taps`` ``[L]``, attribute ``psp_tap_ms``;
:func:`eventsnn.model.srm.fir_kernel`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from eventsnn.model.contract import READOUTS, RESETS, SPIKING_READOUTS, delay_steps, whole_steps
from eventsnn.util.errors import fail
from eventsnn.util.files import atomic_path, open_h5

NETWORK_FORMAT = "eventsnn.network"
NETWORK_VERSION = 4          # the newest version this eventsnn writes and reads
READABLE_VERSIONS = (1, 2, 3, 4)
SRM_VERSION = 2              # the first version with "srm" layers
PSP_VERSION = 3              # the first version with learned PSP kernels
SRM_DEAD_VERSION = 4         # the first version with a dead time (refractory_ms) on "srm" layers
KINDS = ("lif", "li", "srm")
SPIKING_KINDS = ("lif", "srm")
ORDER = "brian2-default"

_ARRAYS = ("tau_mem_ms", "tau_syn_ms", "threshold", "refractory_ms", "ff_weight", "ff_delay_ms",
           "rec_weight", "rec_delay_ms", "tau_sr_ms", "tau_ref_ms", "scale_ref", "psp_taps")
# per-neuron parameters each kind needs, and those it must not have
_NEEDS = {"lif": ("tau_mem_ms", "tau_syn_ms", "threshold"), "li": ("tau_mem_ms", "tau_syn_ms"),
          "srm": ("tau_sr_ms", "tau_ref_ms", "scale_ref", "threshold")}
_NOT_FOR = {"lif": ("tau_sr_ms", "tau_ref_ms", "scale_ref", "psp_taps"),
            "li": ("tau_sr_ms", "tau_ref_ms", "scale_ref", "psp_taps"),
            "srm": ("tau_mem_ms", "tau_syn_ms", "rec_weight", "rec_delay_ms")}


@dataclass
class Layer:
    kind: str                       # "lif" (spiking), "li" (leaky readout) or "srm" (spiking, SRM-alpha)
    size: int
    tau_mem_ms: np.ndarray | None   # [N] (lif, li)
    tau_syn_ms: np.ndarray | None   # [N] (lif, li)
    ff_weight: np.ndarray           # [N_pre, N]
    reset: str | None = None        # lif/li: "zero" (default) or "subtract"; srm: "none"
    threshold: np.ndarray | None = None       # [N] (lif)
    refractory_ms: np.ndarray | None = None   # [N]
    ff_delay_ms: np.ndarray | None = None     # [N_pre] or [N_pre, N]
    rec_weight: np.ndarray | None = None      # [N, N]
    rec_delay_ms: np.ndarray | None = None    # [N] or [N, N]
    ff_delay_learned: bool = False
    tau_sr_ms: np.ndarray | None = None       # [N] (srm) PSP kernel time constant
    tau_ref_ms: np.ndarray | None = None      # [N] (srm) refractory kernel time constant
    scale_ref: np.ndarray | None = None       # [N] (srm) refractory kernel depth, in units of threshold
    psp_taps: np.ndarray | None = None        # [L] (srm) learned PSP kernel, shared by the layer (tau_sr_ms unused)
    psp_tap_ms: float | None = None           # its tap spacing (ms), with psp_taps

    def __post_init__(self):
        if self.reset is None:
            self.reset = "none" if self.kind == "srm" else "zero"
        for name in _ARRAYS:
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, np.asarray(v, dtype=np.float64))

    @property
    def spiking(self) -> bool:
        return self.kind in SPIKING_KINDS

    @property
    def delay_kind(self) -> str:
        if self.ff_delay_ms is None:
            return "none"
        return "axonal" if self.ff_delay_ms.ndim == 1 else "synaptic"

    def max_delay_ms(self) -> float:
        ds = [d.max() for d in (self.ff_delay_ms, self.rec_delay_ms) if d is not None and d.size]
        return float(max(ds)) if ds else 0.0

    def validate(self, n_pre: int, where: str, path=None) -> None:
        def bad(msg):
            return fail(path, f"{where}: {msg}")
        if self.kind not in KINDS:
            raise bad(f"kind must be one of {', '.join(map(repr, KINDS))}, got {self.kind!r}")
        if self.size <= 0:
            raise bad(f"size must be positive, got {self.size}")
        if self.kind == "srm":
            if self.reset != "none":
                raise bad(f"an 'srm' layer has no reset (its refractory kernel takes its place): reset must be "
                          f"'none', got {self.reset!r}")
        elif self.reset not in RESETS:
            raise bad(f"reset must be one of {RESETS}, got {self.reset!r}")
        for name in _NEEDS[self.kind]:
            if getattr(self, name) is None:
                raise bad(f"a {self.kind!r} layer needs a {name} dataset")
        for name in _NOT_FOR[self.kind]:
            if getattr(self, name) is not None:
                raise bad(f"a {self.kind!r} layer has no {name}"
                          + (" (srm layers are feed-forward)" if name.startswith("rec") else ""))
        N = self.size
        shapes = {"tau_mem_ms": (N,), "tau_syn_ms": (N,), "ff_weight": (n_pre, N), "threshold": (N,),
                  "refractory_ms": (N,), "rec_weight": (N, N), "tau_sr_ms": (N,), "tau_ref_ms": (N,),
                  "scale_ref": (N,)}
        for name, shape in shapes.items():
            v = getattr(self, name)
            if v is None:
                continue
            if v.shape != shape:
                raise bad(f"{name} has shape {list(v.shape)}, expected {list(shape)}")
        for name, allowed in (("ff_delay_ms", [(n_pre,), (n_pre, N)]), ("rec_delay_ms", [(N,), (N, N)])):
            v = getattr(self, name)
            if v is not None and v.shape not in allowed:
                raise bad(f"{name} has shape {list(v.shape)}, expected {' or '.join(str(list(s)) for s in allowed)}")
        if self.rec_delay_ms is not None and self.rec_weight is None:
            raise bad("rec_delay_ms given without rec_weight")
        for name in _ARRAYS:
            v = getattr(self, name)
            if v is not None and not np.all(np.isfinite(v)):
                raise bad(f"{name} contains NaN or inf")
        for name in ("tau_mem_ms", "tau_syn_ms", "tau_sr_ms", "tau_ref_ms"):
            v = getattr(self, name)
            if v is not None and np.any(v <= 0):
                raise bad(f"{name} must be > 0 (min {v.min():g})")
        for name in ("ff_delay_ms", "rec_delay_ms", "refractory_ms", "scale_ref"):
            v = getattr(self, name)
            if v is not None and v.size and v.min() < 0:
                raise bad(f"{name} must be >= 0 (min {v.min():g})")
        if self.threshold is not None and np.any(self.threshold <= 0):
            raise bad("threshold must be > 0")
        if self.psp_taps is not None:
            if self.psp_taps.ndim != 1 or self.psp_taps.size < 1:
                raise bad(f"psp_taps has shape {list(self.psp_taps.shape)}, expected [L] with L >= 1")
            if self.psp_tap_ms is None or not (np.isfinite(self.psp_tap_ms) and self.psp_tap_ms > 0):
                raise bad(f"psp_taps needs an attribute psp_tap_ms > 0, got {self.psp_tap_ms!r}")
        elif self.psp_tap_ms is not None:
            raise bad("psp_tap_ms given without psp_taps")

    def psp_span_ms(self) -> float:
        """How long one spike moves this layer's PSP part: the learned kernel's length (0 for the others, whose
        kernels have no end)."""
        return 0.0 if self.psp_taps is None else (self.psp_taps.size + 1) * float(self.psp_tap_ms)


@dataclass
class Network:
    dt_ms: float
    n_inputs: int
    layers: list[Layer]
    readout: str = "max"
    meta: dict = field(default_factory=dict)

    def validate(self, path=None) -> "Network":
        if not (np.isfinite(self.dt_ms) and self.dt_ms > 0):
            raise fail(path, f"dt_ms must be > 0, got {self.dt_ms}")
        if self.n_inputs <= 0:
            raise fail(path, f"n_inputs must be positive, got {self.n_inputs}")
        if self.readout not in READOUTS:
            raise fail(path, f"readout must be one of {READOUTS}, got {self.readout!r}")
        if not self.layers:
            raise fail(path, "network has no layers")
        n_pre = self.n_inputs
        for i, layer in enumerate(self.layers):
            layer.validate(n_pre, f"layers/{i}", path)
            if layer.psp_tap_ms is not None and whole_steps(layer.psp_tap_ms, self.dt_ms, rtol=1e-9) is None:
                raise fail(path, f"layers/{i}: psp_tap_ms {layer.psp_tap_ms:g} is not a whole number of steps "
                                 f"of dt_ms {self.dt_ms:g}")
            last = i == len(self.layers) - 1
            want = ("li",) if last and self.readout not in SPIKING_READOUTS else SPIKING_KINDS
            if layer.kind not in want:
                raise fail(path, f"layers/{i}: kind is {layer.kind!r}, expected {' or '.join(map(repr, want))} "
                                 + ("(readout 'count' counts the spikes of a spiking 'lif' or 'srm' output layer)"
                                    if self.readout in SPIKING_READOUTS else
                                    "(spiking 'lif'/'srm' layers followed by one 'li' readout)"))
            n_pre = layer.size
        return self

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].size

    def max_delay_ms(self) -> float:
        return max(l.max_delay_ms() for l in self.layers)

    @property
    def has_srm(self) -> bool:
        return any(L.kind == "srm" for L in self.layers)

    @property
    def has_learned_psp(self) -> bool:
        return any(L.psp_taps is not None for L in self.layers)

    @property
    def has_srm_dead_time(self) -> bool:
        return any(L.kind == "srm" and L.refractory_ms is not None for L in self.layers)

    @property
    def file_version(self) -> int:
        """The lowest network file version that holds this network."""
        if self.has_srm_dead_time:
            return SRM_DEAD_VERSION
        return PSP_VERSION if self.has_learned_psp else SRM_VERSION if self.has_srm else 1


def save_network(net: Network, path) -> None:
    """Validate and write ``net`` atomically."""
    import h5py

    net.validate(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = NETWORK_FORMAT
            f.attrs["version"] = net.file_version
            f.attrs["dt_ms"] = float(net.dt_ms)
            f.attrs["n_inputs"] = int(net.n_inputs)
            f.attrs["readout"] = net.readout
            f.attrs["order"] = ORDER
            for k, v in net.meta.items():
                f.attrs[f"meta_{k}"] = v
            for i, layer in enumerate(net.layers):
                g = f.create_group(f"layers/{i}")
                g.attrs["kind"] = layer.kind
                g.attrs["size"] = int(layer.size)
                g.attrs["reset"] = layer.reset
                g.attrs["ff_delay_learned"] = bool(layer.ff_delay_learned)
                if layer.psp_tap_ms is not None:
                    g.attrs["psp_tap_ms"] = float(layer.psp_tap_ms)
                for name in _ARRAYS:
                    v = getattr(layer, name)
                    if v is not None:
                        g.create_dataset(name, data=np.asarray(v, dtype=np.float64))


def load_network(path) -> Network:
    """Read and validate a network file; errors name the file and the problem."""
    f = open_h5(path, NETWORK_FORMAT)
    with f:
        version = int(f.attrs.get("version", -1))
        if version not in READABLE_VERSIONS:
            raise fail(path, f"unsupported network file version {version} (this eventsnn reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))})")
        try:
            dt_ms = float(f.attrs["dt_ms"])
            n_inputs = int(f.attrs["n_inputs"])
            readout = str(f.attrs.get("readout", "max"))
        except KeyError as e:
            raise fail(path, f"missing root attribute {e}") from None
        except (TypeError, ValueError):
            raise fail(path, "root attributes dt_ms/n_inputs are not numbers") from None
        order = str(f.attrs.get("order", ORDER))
        if order != ORDER:
            raise fail(path, f"step order {order!r} is not supported (expected {ORDER!r})")
        if "layers" not in f or len(f["layers"]) == 0:
            raise fail(path, "missing group 'layers'")
        n = len(f["layers"])
        layers = []
        for i in range(n):
            key = f"layers/{i}"
            if key not in f:
                raise fail(path, f"missing group '{key}' (layers must be numbered 0..{n - 1})")
            g = f[key]
            arrays = {}
            for name in _ARRAYS:
                if name in g:
                    try:
                        arrays[name] = np.asarray(g[name][()], dtype=np.float64)
                    except (TypeError, ValueError, AttributeError):
                        raise fail(path, f"{key}/{name}: not numbers (dtype {g[name].dtype})") from None
            try:
                kind, size = str(g.attrs["kind"]), int(g.attrs["size"])
            except (TypeError, ValueError):
                raise fail(path, f"{key}: attributes kind/size are malformed") from None
            except KeyError as e:
                raise fail(path, f"{key}: missing attribute {e}") from None
            if kind == "srm" and version < SRM_VERSION:
                raise fail(path, f"{key}: kind 'srm' in a version {version} file (srm layers need version "
                                 f"{SRM_VERSION})")
            for name in ("ff_weight",) + _NEEDS.get(kind, ())[:2]:
                if name not in arrays:
                    raise fail(path, f"{key}: missing dataset '{name}'")
            if kind == "srm" and "refractory_ms" in arrays and version < SRM_DEAD_VERSION:
                raise fail(path, f"{key}: refractory_ms on an 'srm' layer in a version {version} file (a dead time "
                                 f"on srm layers needs version {SRM_DEAD_VERSION})")
            if "psp_taps" in arrays and version < PSP_VERSION:
                raise fail(path, f"{key}: psp_taps in a version {version} file (learned PSP kernels need version "
                                 f"{PSP_VERSION})")
            arrays.setdefault("tau_mem_ms", None)
            arrays.setdefault("tau_syn_ms", None)
            reset = g.attrs.get("reset")
            tap_ms = g.attrs.get("psp_tap_ms")
            try:
                tap_ms = None if tap_ms is None else float(tap_ms)
            except (TypeError, ValueError):
                raise fail(path, f"{key}: attribute psp_tap_ms is not a number") from None
            layers.append(Layer(kind=kind, size=size, reset=None if reset is None else str(reset),
                                ff_delay_learned=bool(g.attrs.get("ff_delay_learned", False)), psp_tap_ms=tap_ms,
                                **arrays))
        meta = {k[5:]: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items() if k.startswith("meta_")}
    return Network(dt_ms, n_inputs, layers, readout, meta).validate(path)


DELAY_MODES = ("round", "exact")


def with_delay_mode(net: Network, delays: str) -> Network:
    """The network whose delays an engine should use for ``--delays``.

    ``round``: every delay rounded to the training grid (``D*train_dt``, what
    the trained model saw in evaluation). ``exact``: the real-valued delays
    (the simulation rounds them to its own, finer, grid).
    """


    if delays == "exact":
        return net
    if delays != "round":
        raise ValueError(f"unknown delay mode {delays!r}; choose one of {', '.join(DELAY_MODES)}")

    def q(d):
        return None if d is None else delay_steps(d, net.dt_ms) * net.dt_ms
    return replace(net, layers=[replace(L, ff_delay_ms=q(L.ff_delay_ms), rec_delay_ms=q(L.rec_delay_ms))
                                for L in net.layers])
