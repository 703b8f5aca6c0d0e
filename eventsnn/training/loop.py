"""Surrogate-gradient training with learnable delays: the loop a reader can hold in their head.

``train(config, rundir)`` writes into RUNDIR: ``config.json``, ``metrics.jsonl``
(one line per epoch), ``checkpoint.pt`` (every epoch, atomically: model,
optimiser, best model so far, history) and ``summary.json``. Model selection
and early stopping use a validation split carved from the training file; a
separate test file, if given, is only evaluated at the end.
Resuming continues exactly: each epoch's shuffle comes from ``seed + epoch``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from eventsnn.data.events import Events, bin_events, n_steps, warn_merged
from eventsnn.model.contract import SPIKING_READOUTS
from eventsnn.model.layers import SNN, LIFLayer, dense_input, raster, summed_loss
from eventsnn.training.config import TrainConfig
from eventsnn.training.ddp import Dist
from eventsnn.util import jsonio
from eventsnn.util.errors import EventsnnError, fail
from eventsnn.util.files import atomic_path
from eventsnn.util.progress import progress_bar
from eventsnn.util.provenance import provenance


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise EventsnnError(f"--device {name}: not a torch device (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EventsnnError(f"--device {name}: no CUDA device is available (use --device cpu or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise EventsnnError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    if dev.type not in ("cpu", "cuda"):
        raise EventsnnError(f"--device {name}: unsupported device type (use auto, cpu or cuda[:N])")
    return dev


def _physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_fits(cfg: "TrainConfig", events: Events, source=None) -> None:
    """Refuse, before any work, settings that cannot run on these data or this machine.

    Delays longer than a sample never deliver a spike (and would make the delay buffers huge); a batch whose
    activations (inputs, currents, states and spikes of every layer, kept for the backward pass) exceed the
    machine's memory would fail after minutes.
    """

    if cfg.delays != "none" and cfg.max_delay_ms > events.duration_ms:
        raise EventsnnError(f"--max-delay-ms {cfg.max_delay_ms:g}: longer than the samples of {source or 'the data'} "
                            f"({events.duration_ms:g} ms); a delay that long never delivers a spike")
    T = n_steps(events.duration_ms, cfg.dt_ms)
    if T > 10_000_000:
        raise EventsnnError(f"--dt {cfg.dt_ms:g}: {T} steps per sample is too many (samples last "
                            f"{events.duration_ms:g} ms)")
    per_sample = 4 * T * (2 * events.n_units + 6 * sum(cfg.hidden) + 4 * events.n_classes)
    need = per_sample * min(cfg.batch_size, len(events))
    have = _physical_memory_bytes()
    if need > 0.8 * have:
        raise EventsnnError(f"--batch-size {cfg.batch_size} with --hidden {','.join(map(str, cfg.hidden))}: about "
                            f"{need / 2**30:.1f} GiB of activations per batch, more than this machine's "
                            f"{have / 2**30:.1f} GiB; use a smaller --batch-size or fewer hidden units")


def layer_delays(cfg: TrainConfig) -> list[str]:
    """The feed-forward delay kind (``none``, ``axonal``, ``synaptic``) of each layer, hidden layers then the
    readout, from ``delays`` and ``delay_placement``: a layer's delays act on its input, so a delay *after*
    hidden layer i is a delay on the input of layer i + 1 (the next hidden layer, or the readout)."""
    n = len(cfg.hidden)
    before = cfg.delay_placement in ("before", "both")
    after = cfg.delay_placement in ("after", "both")
    return [cfg.delays if (before and i < n) or (after and i > 0) else "none" for i in range(n + 1)]


def build_model(cfg: TrainConfig, n_inputs: int, n_classes: int, device) -> SNN:
    g = torch.Generator().manual_seed(cfg.seed)
    build = _build_srm_model if cfg.neuron == "srm" else _build_lif_model
    model = build(cfg, n_inputs, n_classes, device, g)
    for layer in model.layers:
        if cfg.delay_init_ms is not None and layer.ff_delay_ms is not None and cfg.max_delay_ms > 0:
            with torch.no_grad():  # U(0, max) -> U(0, init): the same draws, scaled
                layer.ff_delay_ms.mul_(cfg.delay_init_ms / cfg.max_delay_ms)
        if cfg.weight_norm:  # per neuron: the norm over its inputs (column of ff_weight [N_pre, N])
            torch.nn.utils.parametrizations.weight_norm(layer, "ff_weight", dim=1)
    return model


def _build_lif_model(cfg: TrainConfig, n_inputs: int, n_classes: int, device, g) -> SNN:
    kinds = layer_delays(cfg)
    delay_kw = [dict(delays=k, max_delay_ms=cfg.max_delay_ms) if k != "none" else {} for k in kinds]
    layers, n_pre = [], n_inputs
    for i, h in enumerate(cfg.hidden):
        layers.append(LIFLayer(n_pre, h, reset=cfg.reset, tau_mem_ms=cfg.tau_mem_ms, tau_syn_ms=cfg.tau_syn_ms,
                               threshold=cfg.threshold, refractory_ms=cfg.refractory_ms,
                               recurrent=cfg.recurrent and i == len(cfg.hidden) - 1, learn_taus=cfg.learn_taus,
                               weight_scale=cfg.weight_scale, generator=g, **delay_kw[i]))
        n_pre = h
    if cfg.readout in SPIKING_READOUTS:  # a spiking output layer whose spikes are counted
        layers.append(LIFLayer(n_pre, n_classes, reset=cfg.reset, tau_mem_ms=cfg.tau_out_ms,
                               tau_syn_ms=cfg.tau_syn_ms, threshold=cfg.threshold, refractory_ms=cfg.refractory_ms,
                               learn_taus=cfg.learn_taus, weight_scale=cfg.weight_scale, generator=g, **delay_kw[-1]))
    else:
        layers.append(LIFLayer(n_pre, n_classes, spiking=False, tau_mem_ms=cfg.tau_out_ms,
                               tau_syn_ms=cfg.tau_syn_ms, learn_taus=cfg.learn_taus, weight_scale=1.0, generator=g,
                               **delay_kw[-1]))
    for layer in layers:
        layer.set_delays_trainable(True)  # (a layer without delays has nothing to set)
    return SNN(layers, cfg.dt_ms, cfg.readout).to(device)


def _build_srm_model(cfg: TrainConfig, n_inputs: int, n_classes: int, device, g) -> SNN:
    """SRM-alpha hidden layers (and output layer, for a count readout; else the leaky readout)."""
    from eventsnn.model import srm
    from eventsnn.model.srm_layer import SRMLayer

    srm_kw = dict(tau_sr_ms=cfg.tau_sr_ms, tau_ref_ms=cfg.tau_ref_ms, scale_ref=cfg.scale_ref,
                  threshold=cfg.threshold, refractory_ms=cfg.refractory_ms, weight_scale=cfg.weight_scale,
                  generator=g)
    kinds = layer_delays(cfg)
    delay_kw = [dict(delays=k, max_delay_ms=cfg.max_delay_ms) if k != "none" else {} for k in kinds]
    layers, n_pre = [], n_inputs
    for i, h in enumerate(cfg.hidden):
        psp = {}
        if i == 0 and cfg.psp_taps:  # the authors' learned input PSP (SLAYER's pspFilter) on the first layer
            tap_ms = cfg.psp_tap_ms or cfg.dt_ms
            psp = dict(psp_taps=srm.start_taps(cfg.psp_taps, cfg.psp_init_tau_ms, tap_ms, cfg.psp_init,
                                               cfg.psp_init_peak), psp_tap_ms=tap_ms)
        layers.append(SRMLayer(n_pre, h, **delay_kw[i], **srm_kw, **psp))
        n_pre = h
    if cfg.readout in SPIKING_READOUTS:
        layers.append(SRMLayer(n_pre, n_classes, **delay_kw[-1], **srm_kw))
    else:
        layers.append(LIFLayer(n_pre, n_classes, spiking=False, tau_mem_ms=cfg.tau_out_ms,
                               tau_syn_ms=cfg.tau_syn_ms, weight_scale=1.0, generator=g, **delay_kw[-1]))
    for layer in layers:
        layer.set_delays_trainable(True)
    return SNN(layers, cfg.dt_ms, cfg.readout).to(device)


def make_optimizer(model: SNN, cfg: TrainConfig) -> torch.optim.Optimizer:
    delays, taus, psp, rest = [], [], [], []
    for name, p in model.named_parameters():
        (delays if "delay" in name else psp if "psp_taps" in name else taus if "tau" in name else rest).append(p)
    groups = [{"params": rest, "lr": cfg.lr}]
    if psp:
        groups.append({"params": psp, "lr": cfg.lr_psp})
    if delays:
        groups.append({"params": delays, "lr": cfg.lr_delay})
    if taus:
        groups.append({"params": taus, "lr": cfg.lr_tau})
    return torch.optim.NAdam(groups) if cfg.optimizer == "nadam" else torch.optim.Adam(groups)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    """MultiStepLR over epochs when ``lr_milestones`` are given (else None)."""
    if not cfg.lr_milestones:
        return None
    return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.lr_milestones), gamma=cfg.lr_gamma)


class Batcher:
    """Dense binary inputs and labels for index batches: ``batcher(idx) -> (x [B, T, units], y [B])``.

    From :class:`Events`: the whole set is binned once (and kept dense when it is small); binary, as in the
    paper: spikes of one unit in one step are merged, and the number merged over the whole set is reported once
    (:class:`~eventsnn.data.events.EventsnnWarning`). From a :class:`~eventsnn.data.datasets.DatasetSource`: each batch
    is read (and transformed) when it is needed.
    """

    def __init__(self, events, dt_ms: float, device, limit: int = 50_000_000, what: str = "training"):
        from eventsnn.data.datasets import DatasetSource
        self.events, self.dt_ms, self.device, self.cache = events, dt_ms, device, None
        self.streaming = isinstance(events, DatasetSource)
        if self.streaming:
            return
        b = bin_events(events, dt_ms).binary()
        warn_merged(b.merged, b.n_spikes, dt_ms, what)
        if len(events) * b.n_steps * events.n_units <= limit:
            self.cache = raster(b, events.n_units, device=device)

    def __call__(self, idx):
        if self.streaming:
            ev = self.events.events(idx)
            x = dense_input(ev, self.dt_ms, device=self.device, warn=False)
            return x, torch.as_tensor(ev.labels, device=self.device)
        y = torch.as_tensor(self.events.labels[idx], device=self.device)
        if self.cache is not None:
            return self.cache[torch.as_tensor(idx, device=self.device)], y
        return dense_input(self.events, self.dt_ms, idx, device=self.device, warn=False), y


def evaluate(model: SNN, batcher: Batcher, idx: np.ndarray, batch_size: int = 256, dist=None,
             loss: tuple = ("ce", 0.2, 0.02)):
    """(accuracy, mean loss) in ``round`` delay mode, no gradients; with ``dist`` each rank evaluates its share
    of ``idx`` and the sums are combined, so every rank gets the same numbers. ``loss``: (kind, rate_true,
    rate_false) of :func:`~eventsnn.model.layers.summed_loss`."""
    if len(idx) == 0:
        return float("nan"), float("nan")
    mine = idx if dist is None else dist.shard(idx)
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for s in range(0, len(mine), batch_size):
            x, y = batcher(mine[s:s + batch_size])
            scores, trace, _ = model(x, delay_mode="round")
            loss_sum += float(summed_loss(scores, trace, y, model.readout, *loss))
            correct += int((scores.argmax(1) == y).sum())
    if dist is not None:
        correct, loss_sum = dist.sum_floats(correct, loss_sum)
    return correct / len(idx), loss_sum / len(idx)


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)  # to a file object: the archive's inner name does not take the temporary file's name


def load_checkpoint(path) -> dict:
    p = Path(path)
    if not p.exists():
        raise fail(path, "no checkpoint (was training started in this directory?)")
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for corrupt files
        raise fail(path, f"corrupt checkpoint ({type(e).__name__})") from None


def _load_data(cfg: TrainConfig, events: Events | None = None, test: Events | None = None,
               val: Events | None = None):
    """Training and test events (from the config's files unless given), checked against each other and
    against the settings, before any work. A validation file (``val_data``) is appended to the training
    events and its samples are the validation split."""
    from eventsnn.data.datasets import DatasetSource, load_any, split_indices

    if events is None:
        if not cfg.data:
            raise EventsnnError("--data: required (the training events file)")
        events = load_any(cfg.data)
    if events.n_classes < 2:
        raise fail(cfg.data or "training events", f"needs at least 2 classes, found {events.n_classes}")
    if val is None and cfg.val_data:
        val = load_any(cfg.val_data)
    if val is not None:
        if val.n_units != events.n_units or val.n_classes > events.n_classes:
            raise fail(cfg.val_data or "validation events", f"validation data has {val.n_units} units/"
                       f"{val.n_classes} classes, training data {events.n_units}/{events.n_classes}")
        n = len(events)
        if isinstance(events, DatasetSource) or isinstance(val, DatasetSource):
            if not (isinstance(events, DatasetSource) and isinstance(val, DatasetSource)):
                raise EventsnnError("val: give training and validation data both as datasets or both as events")
            events = events.concat(val)
        else:
            events = Events.concat([events, val])
        tr_idx, val_idx = np.arange(n), np.arange(n, len(events))
    else:
        tr_idx, val_idx = split_indices(len(events), cfg.val_fraction, cfg.seed)
    if len(tr_idx) == 0:
        raise fail(cfg.data, "no training samples left after the validation split")
    if test is None and cfg.test_data:
        test = load_any(cfg.test_data)
    if test is not None and (test.n_units != events.n_units or test.n_classes > events.n_classes):
        raise fail(cfg.test_data or "test events", f"test data has {test.n_units} units/{test.n_classes} classes, "
                                                   f"training data {events.n_units}/{events.n_classes}")
    check_fits(cfg, events, cfg.data or "the training events")
    return events, tr_idx, val_idx, test


def _logged_seconds(metrics) -> dict:
    """Wall time per epoch from a run's log (``metrics.jsonl``); the checkpoint does not keep it."""
    out = {}
    try:
        for line in Path(metrics).read_text().splitlines():
            rec = json.loads(line)
            out[rec["epoch"]] = rec.get("seconds")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return out


def _resume_config(ckpt: dict, ckpt_path, epochs: int | None, device: str | None) -> TrainConfig:
    """The saved configuration of a run, with the only two settings a resume may change."""
    values = dict(ckpt["config"])
    if epochs is not None:
        values["epochs"] = epochs
    if device is not None:
        values["device"] = device
    try:
        return TrainConfig.read(values, {"epochs": "flag", "device": "flag"})
    except EventsnnError as e:
        if epochs is not None or device is not None:
            raise
        raise fail(ckpt_path, f"corrupt checkpoint config ({e})") from None


def train(cfg: TrainConfig, rundir, resume: bool = False, progress: bool = True, max_epochs_this_call=None,
          epochs: int | None = None, device: str | None = None, events: Events | None = None,
          test_events: Events | None = None, val_events: Events | None = None,
          rundir_is_temporary: bool = False) -> dict:
    """Train (or resume) into ``rundir``; return the summary dict.

    Parameters
    ----------
    cfg : TrainConfig
        All settings (ignored when ``resume``: the run's saved configuration is used).
    rundir : path
        Run directory: ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` (every epoch, atomically),
        ``summary.json``.
    resume : bool
        Continue the run in ``rundir`` exactly where its last checkpoint left it. ``epochs`` (a new
        maximum) and ``device`` may be changed on resume; nothing else.
    max_epochs_this_call : int, optional
        Stop after this many epochs in this call (the run stays resumable).
    events, test_events : Events, optional
        In-memory training / test samples, used instead of the config's ``data`` / ``test_data`` files.
    rundir_is_temporary : bool
        ``rundir`` is removed after this call (the Python API's default): messages then do not offer to resume it.

    Raises
    ------
    EventsnnError
        Bad data or settings, an existing run in ``rundir`` (without ``resume``), a corrupt checkpoint.
    """

    # -- setup: configuration, data, model, optimiser (everything checked before anything is written)
    rundir = Path(rundir)
    ckpt_path = rundir / "checkpoint.pt"
    ckpt = load_checkpoint(ckpt_path) if resume else None
    if ckpt is not None:
        cfg = _resume_config(ckpt, ckpt_path, epochs, device)
        done = int(ckpt.get("epoch", -1)) + 1
        if epochs is not None and done >= cfg.epochs:
            raise EventsnnError(f"--epochs {epochs}: the run in {rundir} has already run {done} epochs; give a "
                                f"larger --epochs to train it further")
        if ckpt.get("bad_epochs", 0) >= cfg.patience or done >= cfg.epochs:
            import warnings

            from eventsnn.util.errors import EventsnnWarning
            why = (f"stopped early after {done} epochs (validation not improving for {cfg.patience})"
                   if ckpt.get("bad_epochs", 0) >= cfg.patience else f"ran all its {done} epochs")
            warnings.warn(f"the run in {rundir} is finished ({why}); nothing to train"
                          + ("" if ckpt.get("bad_epochs", 0) >= cfg.patience else
                             f" (continue it with --epochs {2 * cfg.epochs})"), EventsnnWarning, stacklevel=2)
    elif ckpt_path.exists():
        raise fail(rundir, "already holds a training run; use --resume to continue it or choose another --out")
    torch.manual_seed(cfg.seed)
    dist = Dist.from_env(cfg.device)
    if not dist.main:  # rank 0 speaks for all
        import warnings

        from eventsnn.util.errors import EventsnnWarning
        warnings.filterwarnings("ignore", category=EventsnnWarning)
    dev = torch.device(dist.device) if dist.enabled and dist.device != "cpu" else pick_device(cfg.device)
    events, tr_idx, val_idx, test = _load_data(cfg, events, test_events, val_events)
    model = build_model(cfg, events.n_units, events.n_classes, dev)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg)
    loss_spec = (cfg.loss, cfg.rate_true, cfg.rate_false)
    history, best, start_epoch, bad_epochs, seconds = [], None, 0, 0, {}
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            if sched is not None:
                sched.load_state_dict(ckpt["scheduler"])
            history, best, start_epoch, bad_epochs = (ckpt["history"], ckpt["best"], ckpt["epoch"] + 1,
                                                      ckpt["bad_epochs"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise fail(ckpt_path, f"checkpoint does not match its config ({str(e).splitlines()[0]})") from None
    prov = provenance(seed=cfg.seed, world_size=dist.world)
    created = not rundir.exists()
    try:  # from the first file written: an interrupt before the first checkpoint leaves nothing behind
        if dist.main:  # rank 0 writes every file
            rundir.mkdir(parents=True, exist_ok=True)
            if ckpt is None:
                with atomic_path(rundir / "config.json") as tmp:
                    tmp.write_text(jsonio.dumps(cfg.model_dump(), indent=2))
            seconds = _logged_seconds(rundir / "metrics.jsonl")
            with atomic_path(rundir / "metrics.jsonl") as tmp:  # exactly the checkpoint's history (no duplicates)
                tmp.write_text("".join(jsonio.dumps({**h, "seconds": seconds.get(h["epoch"])}) + "\n"
                                       for h in history))
        return _train_epochs(cfg, rundir, ckpt_path, dist, dev, events, tr_idx, val_idx, test, model, opt, sched,
                             loss_spec, history, best, start_epoch, bad_epochs, prov, progress, max_epochs_this_call,
                             seconds, rundir_is_temporary)
    except KeyboardInterrupt:
        if dist.main and ckpt is None and not ckpt_path.exists():
            # interrupted before the first checkpoint: nothing to resume, so leave no half-started run behind
            for name in ("config.json", "metrics.jsonl"):
                (rundir / name).unlink(missing_ok=True)
            if created:
                try:
                    rundir.rmdir()
                except OSError:
                    pass
        raise


def _train_epochs(cfg, rundir, ckpt_path, dist, dev, events, tr_idx, val_idx, test, model, opt, sched, loss_spec,
                  history, best, start_epoch, bad_epochs, prov, progress, max_epochs_this_call, seconds,
                  rundir_is_temporary=False) -> dict:
    """The epochs of :func:`train` from ``start_epoch``, then the summary (and the test set, once)."""
    batcher = Batcher(events, cfg.dt_ms, dev)
    stop_at = cfg.epochs if max_epochs_this_call is None else min(cfg.epochs, start_epoch + max_epochs_this_call)
    stopped_early = bad_epochs >= cfg.patience
    bar = progress_bar(total=cfg.epochs, desc="train", disable=not (progress and dist.main),
                       initial=min(start_epoch, cfg.epochs))
    for epoch in range(start_epoch, stop_at):
        if stopped_early:
            break
        t0 = time.perf_counter()
        # -- one pass over the training split: forward, loss, backward, update, project parameters
        model.train()
        perm = tr_idx[torch.randperm(len(tr_idx), generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch)).numpy()]
        loss_sum, correct, rate_sum = 0.0, 0, 0.0
        for s in range(0, len(perm), cfg.batch_size):
            batch = perm[s:s + cfg.batch_size]
            b = dist.shard(batch)  # this rank's samples (all of them in one process)
            opt.zero_grad(set_to_none=True)
            if len(b):
                x, y = batcher(b)
                scores, trace, spikes = model(x, delay_mode="interp", surrogate=cfg.surrogate, slope=cfg.slope)
                # this rank's share of the global batch mean: summed over ranks it is the one-process loss
                loss = summed_loss(scores, trace, y, cfg.readout, *loss_spec) / len(batch)
                if cfg.spike_reg > 0:
                    loss = loss + cfg.spike_reg * sum((sp.sum(1) ** 2).mean(1).sum() for sp in spikes) / len(batch)
                loss.backward()
                loss_sum += float(loss.detach()) * len(batch)
                correct += int((scores.argmax(1) == y).sum())
                rate_sum += float(sum(sp.detach().sum() for sp in spikes)) / max(1, sum(sp.shape[2] for sp in spikes))
            dist.sum_grads(model.parameters())
            opt.step()
            model.clamp_(cap_delays=cfg.delay_clamp_until is None or epoch <= cfg.delay_clamp_until)
        if sched is not None:
            sched.step()
        loss_sum, correct, rate_sum = dist.sum_floats(loss_sum, correct, rate_sum)
        # -- evaluate on the validation split; keep the best model (selection never sees the test set)
        model.eval()
        val_acc, val_loss = evaluate(model, batcher, val_idx, dist=dist, loss=loss_spec)
        rec = {"epoch": epoch, "train_loss": loss_sum / len(perm), "train_acc": correct / len(perm),
               "val_acc": val_acc, "val_loss": val_loss, "spikes_per_neuron": rate_sum / len(perm)}
        history.append(rec)  # the checkpoint keeps no wall-clock times: same seed, same bytes
        seconds[epoch] = time.perf_counter() - t0
        improved = best is None or (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"]) \
            if len(val_idx) else True
        if improved:
            best = {"epoch": epoch, "val_acc": val_acc, "val_loss": val_loss,
                    "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            bad_epochs = 0
        else:
            bad_epochs += 1
        stopped_early = bad_epochs >= cfg.patience
        # -- checkpoint (atomically) and log, on rank 0
        if dist.main:
            _save_checkpoint(ckpt_path, {"config": cfg.model_dump(), "model": model.state_dict(),
                                         "optimizer": opt.state_dict(), "epoch": epoch, "history": history,
                                         "scheduler": None if sched is None else sched.state_dict(),
                                         "best": best, "bad_epochs": bad_epochs, "n_inputs": events.n_units,
                                         "n_classes": events.n_classes, "provenance": prov})
            with open(rundir / "metrics.jsonl", "a") as f:  # the log: with the epoch's wall time
                f.write(jsonio.dumps({**rec, "seconds": seconds[epoch]}) + "\n")
        bar.set_postfix(loss=f"{rec['train_loss']:.3f}", train=f"{rec['train_acc']:.2f}", val=f"{val_acc:.2f}")
        bar.update(1)
    bar.close()

    # -- summary (and the test set, once, with the validation-selected model)
    finished = stopped_early or bool(history and history[-1]["epoch"] >= cfg.epochs - 1)
    summary = {"rundir": str(rundir), "epochs_run": len(history), "finished": bool(finished),
               "stopped_early": bool(stopped_early), "best_epoch": best["epoch"] if best else None,
               "val_acc": best["val_acc"] if best else None, "n_train": int(len(tr_idx)), "n_val": int(len(val_idx)),
               "delays": cfg.delays, "seed": cfg.seed, "device": str(dev),
               "seconds": float(sum(v for v in seconds.values() if v)), "provenance": prov}
    if finished and not stopped_early and best and len(history) > 1 and best["epoch"] == history[-1]["epoch"]:
        import warnings

        from eventsnn.util.errors import EventsnnWarning
        more = (f"eventsnn train --resume {rundir} --epochs {2 * cfg.epochs}" if not rundir_is_temporary else
                f"train again with epochs={2 * cfg.epochs} (and rundir=... to keep a run you can resume)")
        warnings.warn(f"training reached its cap of {cfg.epochs} epochs while validation was still improving (the "
                      f"best model is from the last epoch); more epochs may help: {more}", EventsnnWarning,
                      stacklevel=2)
        summary["still_improving"] = True
    if test is not None and finished:
        best_model = build_model(cfg, events.n_units, events.n_classes, dev)
        best_model.load_state_dict(best["model"])
        best_model.eval()
        tb = Batcher(test, cfg.dt_ms, dev, what="test")
        summary["test_acc"], summary["test_loss"] = evaluate(best_model, tb, np.arange(len(test)), dist=dist,
                                                               loss=loss_spec)
    if dist.main:
        with atomic_path(rundir / "summary.json") as tmp:
            tmp.write_text(jsonio.dumps(summary, indent=2))
        if history and not rundir_is_temporary:
            from eventsnn.training.curves import plot_curves

            plot_curves(rundir)
    dist.barrier()
    # leave the process group before the interpreter exits: gloo's threads torn down at exit can abort a rank
    # ("terminate called without an active exception", exit -6) after a successful run
    dist.close()
    return summary


def load_trained_model(rundir, device="cpu", dtype=torch.float32) -> SNN:
    """The best (validation-selected) model of a run directory."""
    ckpt = load_checkpoint(Path(rundir) / "checkpoint.pt")
    for key in ("config", "best", "n_inputs", "n_classes"):
        if key not in ckpt or (key == "best" and not ckpt["best"]):
            raise fail(Path(rundir) / "checkpoint.pt", f"corrupt checkpoint (no '{key}')")
    try:
        cfg = TrainConfig(**ckpt["config"])
    except ValidationError:
        raise fail(Path(rundir) / "checkpoint.pt", "corrupt checkpoint (invalid config)") from None
    model = build_model(cfg, ckpt["n_inputs"], ckpt["n_classes"], "cpu")
    try:
        model.load_state_dict(ckpt["best"]["model"])
    except RuntimeError as e:
        raise fail(Path(rundir) / "checkpoint.pt", f"checkpoint does not match its config ({str(e).splitlines()[0]})") from None
    for layer in model.layers:
        layer.delays_learned = layer.ff_delay_ms is not None
    model.requires_grad_(False)
    return model.to(device=device, dtype=dtype).eval()
