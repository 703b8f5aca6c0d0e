"""The torch engine: current-based LIF layers on the discrete-time contract.

One :class:`LIFLayer` per hidden layer and a non-spiking :class:`LIFLayer`
(``spiking=False``) as the leaky readout. The whole batch runs at once; the
only Python loop is over time steps (the recurrence needs it).

Delays act on the feed-forward input before the time scan (:mod:`eventsnn.model.delays`: ``round`` mode for
Brian2-identical integer steps, ``interp`` mode for learnable real-valued delays).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from eventsnn.model import contract
from eventsnn.model.delays import DELAY_MODES, delayed_current  # noqa: F401
from eventsnn.data.events import Events, bin_events, warn_merged
from eventsnn.model.scan import SCAN_BACKENDS, lif_scan, spike_fn, surrogate_derivative  # noqa: F401
from eventsnn.model.surrogates import SURROGATES  # noqa: F401

DELAY_KINDS = ("none", "axonal", "synaptic")


# ----------------------------------------------------------------------------- layers

class LIFLayer(nn.Module):
    """Current-based LIF layer (or leaky-integrator readout with ``spiking=False``).

    Parameters are per neuron: ``tau_mem_ms``, ``tau_syn_ms``, ``threshold``,
    ``refractory_ms``. Feed-forward weights ``ff_weight[N_pre, N]``, optional
    delays in ms (``[N_pre]`` axonal or ``[N_pre, N]`` synaptic), optional
    recurrent weights ``rec_weight[N, N]`` with optional delays.
    """

    def __init__(self, n_in: int, size: int, *, spiking: bool = True, reset: str = "zero",
                 tau_mem_ms=20.0, tau_syn_ms=5.0, threshold=1.0, refractory_ms=0.0,
                 delays: str = "none", max_delay_ms: float = 0.0, recurrent: bool = False,
                 rec_delays: str = "none", learn_taus: bool = False, weight_scale: float = 1.0,
                 dtype=torch.float32, generator: torch.Generator | None = None):
        super().__init__()
        if reset not in contract.RESETS:
            raise ValueError(f"unknown reset {reset!r}")
        if delays not in DELAY_KINDS or rec_delays not in DELAY_KINDS:
            raise ValueError(f"delays must be one of {DELAY_KINDS}")
        self.n_in, self.size, self.spiking, self.reset = n_in, size, spiking, reset
        self.max_delay_ms = float(max_delay_ms)
        self.delays_learned = False
        self.delay_method = "auto"  # per-synapse delays: "auto", "loop" or "taps" (eventsnn.model.delays; same result)

        def full(v):
            return torch.as_tensor(np.broadcast_to(np.asarray(v, dtype=np.float64), (size,)).copy(), dtype=dtype)
        tm, ts = full(tau_mem_ms), full(tau_syn_ms)
        if learn_taus:
            self.tau_mem_ms, self.tau_syn_ms = nn.Parameter(tm), nn.Parameter(ts)
        else:
            self.register_buffer("tau_mem_ms", tm)
            self.register_buffer("tau_syn_ms", ts)
        self.register_buffer("threshold", full(threshold))
        self.register_buffer("refractory_ms", full(refractory_ms))
        w = torch.randn(n_in, size, generator=generator, dtype=torch.float64) * (weight_scale / math.sqrt(n_in))
        self.ff_weight = nn.Parameter(w.to(dtype))
        self.ff_delay_ms = self._delay_param(delays, n_in, size, max_delay_ms, dtype, generator)
        self.rec_weight = None
        self.register_buffer("rec_delay_ms", None)
        if recurrent:
            wr = torch.randn(size, size, generator=generator, dtype=torch.float64) * (weight_scale / math.sqrt(size))
            self.rec_weight = nn.Parameter(wr.to(dtype))
            if rec_delays != "none":  # recurrent delays are fixed (not trained)
                shape = (size,) if rec_delays == "axonal" else (size, size)
                self.rec_delay_ms = (torch.rand(shape, generator=generator, dtype=torch.float64)
                                     .mul(max_delay_ms).to(dtype))

    @property
    def kind(self) -> str:
        """The network file's layer kind: ``lif`` (spiking) or ``li`` (readout); ``srm`` for
        :class:`eventsnn.model.srm_layer.SRMLayer`."""
        return "lif" if self.spiking else "li"

    @staticmethod
    def _delay_param(kind, n_in, size, max_delay_ms, dtype, generator):
        if kind == "none":
            return None
        shape = (n_in,) if kind == "axonal" else (n_in, size)
        d = torch.rand(shape, generator=generator, dtype=torch.float64) * max_delay_ms
        return nn.Parameter(d.to(dtype))

    def set_delays_trainable(self, flag: bool) -> None:
        if self.ff_delay_ms is not None:
            self.ff_delay_ms.requires_grad_(flag)
            self.delays_learned = flag

    def clamp_(self, cap_delays: bool = True) -> None:
        """Project parameters back into their valid range after an optimiser step: delays into
        ``[0, max_delay_ms]`` (only ``>= 0`` with ``cap_delays=False``), learned time constants ``>= 0.5`` ms."""
        with torch.no_grad():
            if self.ff_delay_ms is not None:
                self.ff_delay_ms.clamp_(0.0, self.max_delay_ms if cap_delays else None)
            if isinstance(self.tau_mem_ms, nn.Parameter):
                self.tau_mem_ms.clamp_(min=0.5)
                self.tau_syn_ms.clamp_(min=0.5)

    def _propagators(self, dt_ms: float):
        tm, ts = self.tau_mem_ms, self.tau_syn_ms
        if torch.is_grad_enabled() and (tm.requires_grad or ts.requires_grad):  # learned taus: differentiable
            return contract.propagators(tm, ts, dt_ms, xp=torch)
        a, b, k = contract.propagators(tm.detach().cpu().numpy(), ts.detach().cpu().numpy(), dt_ms)
        to = dict(dtype=tm.dtype, device=tm.device)
        return torch.as_tensor(a, **to), torch.as_tensor(b, **to), torch.as_tensor(k, **to)

    def forward(self, x: torch.Tensor, dt_ms: float, delay_mode: str = "round",
                surrogate: str | None = None, slope: float = 10.0, backend: str = "fused") -> torch.Tensor:
        """Run the layer over ``x`` ``[B, T, N_in]``; return spikes (or the trace) ``[B, T, N]``."""
        d_steps = None if self.ff_delay_ms is None else self.ff_delay_ms / dt_ms
        F = delayed_current(x, self.ff_weight, d_steps, delay_mode, self.delay_method)
        return self.scan(F, dt_ms, surrogate, slope, backend)

    def _rec_terms(self, dt_ms: float, n_steps: int):
        """Recurrent weights split by integer delay (at most ``n_steps``: later never delivers): list of (d, W_d)."""
        if self.rec_weight is None:
            return []
        if self.rec_delay_ms is None:
            return [(0, self.rec_weight)]
        D = torch.as_tensor(contract.delay_steps(self.rec_delay_ms.detach().cpu().numpy(), dt_ms),
                            device=self.rec_weight.device).clamp(max=n_steps)
        terms = []
        for d in torch.unique(D).tolist():
            mask = (D == d).to(self.rec_weight.dtype)
            w = self.rec_weight * (mask[:, None] if D.dim() == 1 else mask)
            terms.append((int(d), w))
        return terms

    def scan(self, F: torch.Tensor, dt_ms: float, surrogate: str | None = None, slope: float = 10.0,
             backend: str = "fused"):
        """The time scan of the contract (integrate, threshold, deliver, reset) over input current F."""
        a, b, k = self._propagators(dt_ms)
        R = torch.as_tensor(contract.refractory_steps(self.refractory_ms.detach().cpu().numpy(), dt_ms),
                            device=F.device)
        return lif_scan(F, a, b, k, self.threshold, R, self._rec_terms(dt_ms, F.shape[1]), spiking=self.spiking,
                        reset=self.reset, surrogate=surrogate, slope=slope, backend=backend)


class SNN(nn.Module):
    """Feed-forward stack of spiking layers (LIF, or SRM-alpha: :class:`eventsnn.model.srm_layer.SRMLayer`) and a
    readout layer; ``readout`` reduces its trace.

    The readout layer is a leaky integrator (its membrane potential is the trace), or for ``readout="count"``
    a spiking LIF layer (the trace is its cumulative spike count; the class score is the total count)."""

    def __init__(self, layers: list[LIFLayer], dt_ms: float, readout: str = "max"):
        super().__init__()
        if readout not in contract.READOUTS:
            raise ValueError(f"unknown readout {readout!r}; choose one of {', '.join(contract.READOUTS)}")
        if any(not l.spiking for l in layers[:-1]):
            raise ValueError("an SNN is spiking layers followed by one readout layer")
        if layers[-1].spiking != (readout in contract.SPIKING_READOUTS):
            raise ValueError(f"readout {readout!r} needs a {'spiking' if readout in contract.SPIKING_READOUTS else 'non-spiking'} "
                             "output layer")
        self.layers = nn.ModuleList(layers)
        self.dt_ms = float(dt_ms)
        self.readout = readout
        self.scan_backend = "fused"

    @property
    def n_inputs(self) -> int:
        return self.layers[0].n_in

    def forward(self, x: torch.Tensor, delay_mode: str = "round", surrogate: str | None = None,
                slope: float = 10.0, backend: str | None = None):
        """Return ``(scores [B, N_out], trace [B, T, N_out], hidden spikes list)``.

        ``backend``: the time scan's implementation (:data:`eventsnn.model.scan.SCAN_BACKENDS`), by default
        ``self.scan_backend`` (``"fused"``).
        """
        backend = backend or self.scan_backend
        spikes = []
        h = x
        for layer in self.layers[:-1]:
            h = layer(h, self.dt_ms, delay_mode, surrogate, slope, backend)
            spikes.append(h)
        trace = self.layers[-1](h, self.dt_ms, delay_mode, surrogate, slope, backend)
        if self.layers[-1].spiking:  # count readout: cumulative output spikes
            trace = trace.cumsum(dim=1)
        return readout_scores(trace, self.readout), trace, spikes

    def clamp_(self, cap_delays: bool = True):
        for l in self.layers:
            l.clamp_(cap_delays)


def readout_scores(trace: torch.Tensor, readout: str) -> torch.Tensor:
    """Torch twin of :func:`eventsnn.model.contract.readout_scores` (scores from the trace)."""
    if readout == "max":
        return trace.max(dim=1).values
    if readout == "mean":
        return trace.mean(dim=1)
    if readout in ("last", "count"):  # count: the trace is the cumulative spike count
        return trace[:, -1]
    if readout == "softmax-sum":
        return torch.softmax(trace, dim=2).sum(dim=1)
    raise ValueError(f"unknown readout {readout!r}")


def log_probs(scores: torch.Tensor, readout: str) -> torch.Tensor:
    """Log class probabilities for the cross-entropy loss (for ``count``: a softmax over the spike counts)."""
    if readout == "softmax-sum":  # scores are sums of probabilities over time
        return torch.log(scores / scores.sum(dim=1, keepdim=True) + 1e-12)
    return torch.log_softmax(scores, dim=1)


def rate_loss(scores: torch.Tensor, y: torch.Tensor, n_steps: int, rate_true: float, rate_false: float):
    """The spike-count loss of SLAYER's ``NumSpikes`` as the paper uses it: per sample, half the summed squared
    difference between each output neuron's spike rate (count / steps) and its target rate (``rate_true`` for
    the label's neuron, ``rate_false`` for the others), times the number of steps; summed over the batch.
    (SLAYER also filters the per-step error through its SRM kernel; our neurons are not SRM, so we don't.)"""
    target = torch.full_like(scores, rate_false)
    target.scatter_(1, y[:, None], rate_true)
    return 0.5 * n_steps * ((scores / n_steps - target) ** 2).sum()


def prob_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SLAYER's ``probSpikes`` loss (the global form, the one the authors' synthetic-task scripts call), summed
    over the batch. With ``n_c`` the spike count of output neuron ``c`` taken as at least 1,
    ``p_c = n_c / sum_k n_k`` and the label ``y``::

        loss = -log p_y            d loss / d n_c = 1/sum_k n_k - [c == y]/n_c

    The floor at one spike keeps the logarithm finite; as in SLAYER, the gradient passes through it unchanged
    (SLAYER's backward is ``(p_c - [c == y]) / n_c`` with the floored counts: the same expression). Each output
    spike of neuron c gets that gradient (a count is the sum of the spikes over time)."""
    floored = scores + (scores.clamp(min=1.0) - scores).detach()  # the floor, with a straight-through gradient
    logp = torch.log(floored) - torch.log(floored.sum(dim=1, keepdim=True))
    return -logp.gather(1, y[:, None]).sum()


def summed_loss(scores: torch.Tensor, trace: torch.Tensor, y: torch.Tensor, readout: str, loss: str = "ce",
                rate_true: float = 0.2, rate_false: float = 0.02) -> torch.Tensor:
    """The training loss summed over the batch: ``ce`` (cross-entropy of :func:`log_probs`), ``rate``
    (:func:`rate_loss`) or ``prob`` (:func:`prob_loss`), the last two on the spike counts of a ``count``
    readout."""
    if loss == "rate":
        return rate_loss(scores, y, trace.shape[1], rate_true, rate_false)
    if loss == "prob":
        return prob_loss(scores, y)
    if loss != "ce":
        raise ValueError(f"unknown loss {loss!r}; choose ce, rate or prob")
    return torch.nn.functional.nll_loss(log_probs(scores, readout), y, reduction="sum")


def dense_input(events: Events, dt_ms: float, indices=None, *, dtype=torch.float32, device="cpu",
                binary: bool = True, warn: bool = True) -> torch.Tensor:
    """Input raster ``[B, T, n_units]`` from events, via the one binning rule.

    ``binary=True`` (training's convention, as in the paper): 1 where a unit fired in a step, with a
    warning (:class:`~eventsnn.data.events.EventsnnWarning`, unless ``warn=False``) when that merges spikes;
    ``binary=False``: the spike count.
    """
    b = bin_events(events, dt_ms, indices)
    if binary:
        b = b.binary()
        if warn:
            warn_merged(b.merged, b.n_spikes, dt_ms)
    return raster(b, events.n_units, dtype=dtype, device=device)


def raster(b, n_units: int, *, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Dense ``[B, T, n_units]`` tensor of the counts of a :class:`~eventsnn.data.events.Binned`."""
    x = torch.zeros(b.n_samples, b.n_steps, n_units, dtype=dtype, device=device)
    x[torch.as_tensor(b.sample, device=device), torch.as_tensor(b.step, device=device),
      torch.as_tensor(b.unit, device=device)] = torch.as_tensor(b.count, dtype=dtype, device=device)
    return x
