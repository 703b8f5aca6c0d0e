"""The training settings: one schema (:class:`TrainConfig`) for the ``eventsnn train`` flags, config files and
the API, with its type and range checks. Imports neither torch nor the model, so building the command line is
cheap."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eventsnn.model.contract import whole_steps
from eventsnn.util.errors import EventsnnError, fail


# Settings whose command-line flag is not simply ``--`` + the key with dashes (the vocabulary of docs/design.md).
FLAGS = {"dt_ms": "--dt"}
RENAMED_FLAGS = {"--dt-ms": "--dt"}  # old spellings, accepted for one release with a warning


def flag_for(key: str) -> str:
    """The ``eventsnn train`` flag of a setting."""
    return FLAGS.get(key, "--" + key.replace("_", "-"))


Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]

PRESET_DIR = Path(__file__).with_name("presets")  # package data: one readable YAML file per named preset


def preset_names() -> list[str]:
    """The named presets shipped with eventsnn (``eventsnn train --preset NAME``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The YAML file of preset ``name``; an unknown name is an error naming ``--preset`` and the choices."""
    names = preset_names()
    if name not in names:
        raise EventsnnError(f"--preset: unknown preset {name!r} (choose from {', '.join(names)})")
    return PRESET_DIR / f"{name}.yaml"


class TrainConfig(BaseModel):
    """Every training setting, in one schema: it gives the ``eventsnn train`` flags (``--max-delay-ms``
    for ``max_delay_ms``), the keys of a YAML/TOML/JSON ``--config`` file, the defaults shown in
    ``--help``, and the type and range errors (which name the flag or the config file)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data: str = Field("", description="training events file (the validation split is carved from it)")
    test_data: str | None = Field(None, description="held-out test events file, evaluated once at the end")
    val_fraction: float = Field(0.15, ge=0, lt=1, description="fraction of --data held out for model selection")
    val_data: str | None = Field(None, description="validation events file (used instead of carving --val-fraction "
                                                   "from --data)")
    dt_ms: Positive = Field(1.0, description="training time step (ms)")
    hidden: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(
        default_factory=lambda: [64], min_length=1, description="hidden layer sizes, comma-separated (e.g. 128,128)")
    delays: Literal["none", "axonal", "synaptic"] = Field(
        "axonal", description="learnable feed-forward delays: one per presynaptic neuron (axonal) or per synapse")
    max_delay_ms: float = Field(20.0, ge=0, allow_inf_nan=False,
                                description="delays are initialised in and clamped to [0, this] ms (see "
                                            "--delay-clamp-until)")
    delay_placement: Literal["before", "after", "both"] = Field(
        "before", description="which layers get learnable feed-forward delays (each on its input): before, every "
                              "hidden layer (on the network input too); after, the output of every hidden layer "
                              "(the inputs of hidden layers 2.. and of the readout; none on the network input: "
                              "the authors' SHD and coincidence networks); both, the two (their ISI networks)")
    delay_clamp_until: int | None = Field(
        None, ge=0, description="delays are clamped to [0, --max-delay-ms] after every step up to and including "
                                "this epoch (0-based; the authors' SHD: 250), afterwards only kept >= 0; default: "
                                "clamped always")
    recurrent: bool = Field(False, description="recurrent weights in the last hidden layer")
    readout: Literal["max", "mean", "last", "softmax-sum", "count"] = Field(
        "max", description="class score from the readout trace; count: a spiking output layer's spike count "
                           "(the paper's readout)")
    reset: Literal["zero", "subtract"] = Field("zero", description="after a spike v -> 0 or v -> v - threshold")
    refractory_ms: float = Field(
        0.0, ge=0, allow_inf_nan=False,
        description="refractory period of hidden and counted output neurons (ms): no spike comes for this long "
                    "after one (lif: v is held meanwhile; srm: a dead time on top of the refractory kernel, "
                    "nothing held). Up to one training step it changes nothing at the training dt (the clock "
                    "already allows one spike per step) but caps the rate of the exported network at fine steps "
                    "and in continuous time: give the training dt so the clocked and the continuous network share "
                    "the ceiling")
    tau_mem_ms: Positive = Field(20.0, description="membrane time constant of hidden neurons (ms)")
    tau_syn_ms: Positive = Field(5.0, description="synaptic time constant (ms)")
    tau_out_ms: Positive = Field(20.0, description="membrane time constant of the readout (ms)")
    loss: Literal["ce", "rate", "prob"] = Field(
        "ce", description="ce: cross-entropy of the class scores; rate: the paper's spike-count loss (readout "
                          "count): squared distance of each output neuron's rate to --rate-true / --rate-false; "
                          "prob: SLAYER's probSpikes (readout count, the authors' synthetic tasks): -log of the "
                          "label's share of the output spikes, each count taken as at least 1")
    rate_true: float = Field(0.2, ge=0, allow_inf_nan=False,
                             description="loss rate: target spikes per step of the label's output neuron")
    rate_false: float = Field(0.02, ge=0, allow_inf_nan=False,
                              description="loss rate: target spikes per step of the other output neurons")
    threshold: Positive = Field(1.0, description="firing threshold (dimensionless)")
    learn_taus: bool = Field(False, description="learn per-neuron time constants")
    surrogate: Literal["fast-sigmoid", "atan", "multi-gaussian"] = Field(
        "fast-sigmoid", description="pseudo-derivative of the spike in the backward pass")
    slope: Positive = Field(10.0, description="surrogate steepness, per unit of (v - threshold)")
    weight_scale: Positive = Field(15.0, description="hidden weights start as N(0, (this/sqrt(fan-in))^2)")
    epochs: int = Field(40, ge=1, le=1_000_000, description="maximum number of epochs")
    batch_size: int = Field(64, ge=1, le=1_000_000, description="samples per optimiser step")
    lr: Positive = Field(1e-2, description="Adam learning rate of weights")
    lr_delay: float = Field(0.5, ge=0, allow_inf_nan=False, description="Adam learning rate of delays (ms per step)")
    lr_tau: float = Field(0.05, ge=0, allow_inf_nan=False, description="Adam learning rate of time constants")
    spike_reg: float = Field(0.0, ge=0, allow_inf_nan=False,
                             description="weight of the mean squared hidden spike count penalty")
    patience: int = Field(15, ge=1, description="stop after this many epochs without a better validation score")
    seed: int = Field(0, ge=0, description="seed of initialisation, split and shuffling")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1 ...")
    neuron: Literal["lif", "srm"] = Field(
        "lif", description="hidden (and counted output) neurons: lif, current-based LIF with reset; srm, SLAYER's "
                           "SRM-alpha (alpha PSP, refractory kernel, no reset; the paper's speech setting is "
                           "--threshold 10 --tau-sr-ms 1 --tau-ref-ms 2 --scale-ref 2 at 1 ms bins)")
    tau_sr_ms: Positive = Field(1.0, description="srm: time constant of the alpha PSP kernel (ms)")
    tau_ref_ms: Positive = Field(2.0, description="srm: time constant of the refractory kernel (ms)")
    scale_ref: float = Field(2.0, ge=0, allow_inf_nan=False,
                             description="srm: depth of the refractory kernel, in units of the threshold")
    weight_norm: bool = Field(False, description="weight-normalised feed-forward weights (w = g v/|v| per neuron, "
                                                 "as the authors' SLAYER dense layers)")
    optimizer: Literal["adam", "nadam"] = Field("adam", description="adam or nadam (Adam with Nesterov momentum, "
                                                                    "the authors' choice)")
    lr_milestones: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, description="epochs at which every learning rate is multiplied by --lr-gamma "
                                          "(MultiStepLR), comma-separated; none by default")
    lr_gamma: Positive = Field(0.1, description="learning-rate factor at each of --lr-milestones")
    delay_init_ms: float | None = Field(None, ge=0, allow_inf_nan=False,
                                        description="delays start uniform in [0, this] ms (default: --max-delay-ms)")
    psp_taps: int = Field(0, ge=0, le=100_000,
                          description="srm: the first hidden layer learns its PSP kernel, piecewise linear through "
                                      "this many taps (the authors' ISI networks: 50); 0: the fixed alpha kernel")
    psp_tap_ms: float | None = Field(None, gt=0, allow_inf_nan=False,
                                     description="srm: spacing of the learned PSP kernel's taps, a whole number of "
                                                 "steps (ms; default --dt-ms)")
    psp_init: Literal["alpha", "exponential"] = Field(
        "alpha", description="srm: the learned PSP kernel's start, sampled at its taps: alpha, t/tau e^(1 - t/tau); "
                             "exponential, e^(-t/tau) (tau = --psp-init-tau-ms)")
    psp_init_tau_ms: Positive = Field(50.0, description="srm: time constant of the learned PSP kernel's start")
    psp_init_peak: Positive = Field(1.0, description="srm: the learned PSP kernel's start is scaled to this peak")
    lr_psp: float = Field(0.01, ge=0, allow_inf_nan=False,
                          description="learning rate of the learned PSP kernel's taps")

    @field_validator("loss")
    @classmethod
    def _loss_needs_counts(cls, v: str, info) -> str:
        if v in ("rate", "prob") and info.data.get("readout") != "count":
            raise ValueError(f"the {v} loss compares spike counts: use it with --readout count")
        return v

    @field_validator("neuron")
    @classmethod
    def _srm_is_feed_forward(cls, v: str, info) -> str:
        if v == "srm" and info.data.get("recurrent"):
            raise ValueError("srm layers are feed-forward: drop --recurrent")
        if v == "srm" and info.data.get("learn_taus"):
            raise ValueError("srm time constants are fixed: drop --learn-taus")
        return v

    @field_validator("delay_init_ms")
    @classmethod
    def _init_within_cap(cls, v, info):
        cap = info.data.get("max_delay_ms")
        if v is not None and cap is not None and v > cap:
            raise ValueError(f"delays are clamped to --max-delay-ms {cap:g}: initialise them within it")
        return v

    @field_validator("psp_taps")
    @classmethod
    def _psp_taps_need_srm(cls, v: int, info) -> int:
        if v and info.data.get("neuron") != "srm":
            raise ValueError("a learned PSP kernel is an srm setting: add --neuron srm")
        return v

    @field_validator("psp_tap_ms")
    @classmethod
    def _taps_on_the_grid(cls, v, info):
        dt = info.data.get("dt_ms")
        if v is not None and dt is not None and whole_steps(v, dt, rtol=1e-9) is None:
            raise ValueError(f"the taps must be a whole number of steps of --dt-ms {dt:g} apart")
        return v

    @field_validator("lr_milestones")
    @classmethod
    def _increasing(cls, v):
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("milestones must increase")
        return v

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        if v == "auto":
            return v
        import torch  # only when a device is named

        try:
            torch.device(v)
        except (RuntimeError, ValueError):
            raise ValueError(f"{v!r} is not a torch device (use auto, cpu, cuda, cuda:1 ...)") from None
        return v

    @classmethod
    def read(cls, values: dict, source=None) -> "TrainConfig":
        """Validate ``values``; errors name ``source`` (a config file) or the flag of the bad setting.

        ``source`` may be a path (every key from that file) or a dict mapping keys to where each came from.
        """
        try:
            return cls(**values)
        except ValidationError as e:
            err = e.errors()[0]
            key = str(err["loc"][0]) if err["loc"] else ""
            where = source.get(key) if isinstance(source, dict) else source
            got = values.get(key, err.get("input"))
            if where is None or where == "flag":
                label = flag_for(key)
                raise EventsnnError(f"{label}: {err['msg']} (got {got!r})") from None
            raise fail(where, f"{key}: {err['msg']} (got {got!r})") from None

    @classmethod
    def from_preset(cls, name: str) -> dict:
        """The settings of a named preset (a config file shipped with eventsnn; :func:`preset_names`)."""
        return cls.from_file(preset_path(name))

    @classmethod
    def from_file(cls, path) -> dict:
        """Read a YAML, TOML or JSON config file (by its suffix) into a dict of known keys."""
        p = Path(path)
        if not p.exists():
            raise fail(path, "no such config file")
        if p.is_dir():
            raise fail(path, "is a directory, expected a config file")
        parsers = {".toml": tomllib.loads, ".json": json.loads, ".yaml": yaml.safe_load, ".yml": yaml.safe_load}
        if p.suffix not in parsers:
            raise fail(path, f"unknown config format {p.suffix!r} (use .yaml, .yml, .toml or .json)")
        try:
            data = parsers[p.suffix](p.read_text())
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
            raise fail(path, f"cannot parse config ({' '.join(str(e).split())})") from None
        if not isinstance(data, dict):
            raise fail(path, "a config file must hold a mapping of setting names to values")
        unknown = set(data) - set(cls.model_fields)
        if unknown:
            raise fail(path, f"unknown config key(s): {', '.join(sorted(map(str, unknown)))}")
        return data
