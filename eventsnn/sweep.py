"""Sweeps: a grid of datasets x transforms x models x seeds, one validation-selected model per cell.

``eventsnn sweep CONFIG.yaml --out DIR [--workers N] [--quick]`` reads a :class:`SweepConfig` (YAML), and for
every cell: makes (or reads) the data, applies the cell's transforms to the training, validation and test
samples ("retrain at each level"), trains with validation-based selection, tests on an independent file,
evaluates the test-time probes (time reversal, jitter, ...) and optionally verifies the selected model in
Brian2 and the exact event engine. Each finished cell is one line of ``DIR/results.jsonl``; a rerun skips
the cells already there (resumable cell by cell). ``DIR/table.md`` (mean +- std over seeds) and the
figure (accuracy vs the swept quantity, one line per model, the chance level, the paper's points) are
rebuilt after every cell.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import textwrap
import time
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eventsnn.util.errors import EventsnnError, fail
from eventsnn.util.files import atomic_path
from eventsnn.bridge.engines import TARGETS
from eventsnn.util import jsonio

def _transform(name: str, level: float, seed: int):
    """A retrain-at-each-level transform: ``name`` is a transform spelling with ``*`` for the level
    (:func:`eventsnn.data.transforms.level_transform`: ``randomize``, ``randomize-each:*``, ``jitter:*bins``,
    ``jitter-neuron:*bins+20bins``, ``delete``, ...)."""
    from eventsnn.data.transforms import level_transform

    return level_transform(name, level, seed)


class DataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str | None = Field(None, description="a task of `eventsnn data make` (paper-isi, coincidence, ...)")
    options: dict = Field(default_factory=dict, description="options of the task (as in data make, snake_case)")
    grid: dict[str, list] = Field(default_factory=dict, description="task options swept, e.g. overlap: [0, 0.5, 1]")
    train_samples: int | None = Field(None, ge=3, description="training-file samples (default: the task's)")
    test_samples: int | None = Field(None, ge=1, description="test-file samples (default: the task's)")
    prepared: str | None = Field(None, description="a directory of `eventsnn data prepare` (train/val/test.h5)")


class VerifySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dt: list[float] = Field(default_factory=lambda: [0.01], description="fine dts (ms), besides the training dt")
    samples: int | Literal["all"] = Field(20, description="the first N test samples, or all of them")
    fine_samples: int | None = Field(None, ge=0, description="of those, how many Brian2 and the runs at the fine "
                                     "dts take (as verify --fine-samples, 0 = all; default here: all)")
    probes: str = Field("reverse", description="probes verified too (verify --probes syntax)")
    target: Literal[TARGETS] = "numpy"

    @field_validator("samples")
    @classmethod
    def _positive(cls, v):
        if v != "all" and v < 1:
            raise ValueError("samples must be a positive count or 'all'")
        return v

    def same_as(self, stored: dict | None) -> bool:
        """Whether a cell verified with the ``stored`` spec (its record's ``verify_spec``, perhaps written before a
        field was added) was verified as this spec asks -- a new field at its default re-verifies nothing."""
        try:
            return stored is not None and VerifySpec.model_validate(stored) == self
        except ValidationError:
            return False


class FigureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: str = Field(..., description="the swept quantity on the x axis: a grid/transform key or probe:<name>")
    xlabel: str | None = None
    title: str | None = None
    paper: dict[str, dict[float, float]] = Field(
        default_factory=dict, description="the paper's accuracy (0..1) per model name and x value, drawn as markers")


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    data: DataSpec
    transforms: dict[str, list[float]] = Field(
        default_factory=dict, description="applied to train, validation and test (retrain at each level); keys: a "
                                          "transform with * for the level, e.g. jitter:*bins, randomize-each:*")
    models: dict[str, dict] = Field(default_factory=lambda: {"none": {"delays": "none"},
                                                             "axonal": {"delays": "axonal"}})
    train: dict = Field(default_factory=dict, description="training settings shared by all cells (TrainConfig)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    probes: list[str] = Field(default_factory=list, description="test-time probes (verify --probes syntax)")
    verify: VerifySpec | None = None
    figure: FigureSpec | None = None
    quick: dict = Field(default_factory=dict, description="overrides applied with --quick")


# where a null in a config that ``extends:`` another removes the key (the other keys' defaults are null or empty);
# anywhere else (train:, a model's settings, quick:, verify:) a null is the value null
_NULL_REMOVES = {(), ("models",), ("transforms",), ("data",), ("data", "grid"), ("data", "options"),
                 ("figure", "paper")}


def _merge(base: dict, over: dict, extending: bool = False, at: tuple = ()) -> dict:
    """``base`` overridden by ``over`` key by key: mappings merged, anything else (lists too) replaced. When
    ``extending`` (a config over the one it extends), a null removes the key where :data:`_NULL_REMOVES` says so,
    and a model given with its own ``preset:`` replaces the base's model of that name instead of merging into it."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None and extending and at in _NULL_REMOVES:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict) and not (
                extending and at == ("models",) and "preset" in v):
            out[k] = _merge(out[k], v, extending, at + (k,))
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise fail(path, f"cannot parse YAML ({' '.join(str(e).split())})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise fail(path, f"cannot read ({e})") from None
    if not isinstance(raw, dict):
        raise fail(path, "a sweep config must be a mapping (name, data, models, ...)")
    return raw


def _extended(path: Path, raw: dict, chain: tuple = ()) -> dict:
    """``raw`` with its ``extends: BASE.yaml`` resolved: the base config (a path relative to this file, itself
    perhaps extending another) overridden key by key by this one (:func:`_merge`). A relative ``data.prepared`` of
    the base keeps pointing where it pointed, and the base's ``quick:`` overrides of a model this file removes go
    with it."""
    if "extends" not in raw:
        return raw
    raw = dict(raw)
    ext = raw.pop("extends")
    if not isinstance(ext, str) or not ext:
        raise fail(path, "extends: give the path of a sweep config (relative to this file)")
    bp = path.parent / ext
    here = chain + (path.resolve(),)
    if bp.resolve() in here:
        loop = " -> ".join(str(c) for c in here[here.index(bp.resolve()):] + (bp.resolve(),))
        raise fail(path, f"extends: {ext} makes a cycle ({loop})")
    if not bp.exists():
        raise fail(path, f"extends: {bp} does not exist")
    if not bp.is_file():
        raise fail(path, f"extends: {bp} is not a file")
    base = _extended(bp, _read_yaml(bp), here)
    bq = base["quick"] if isinstance(base.get("quick"), dict) else {}
    for d in (base.get("data"), bq.get("data")):
        if isinstance(d, dict) and isinstance(d.get("prepared"), str) and not Path(d["prepared"]).is_absolute():
            d["prepared"] = os.path.relpath(bp.parent / d["prepared"], path.parent)
    models, qm = raw.get("models"), bq.get("models")
    if isinstance(models, dict) and isinstance(qm, dict):
        for name, m in models.items():
            if m is None or (isinstance(m, dict) and "preset" in m):
                qm.pop(name, None)  # the base's quick settings of a model removed or replaced here
    return _merge(base, raw, extending=True)


def load_config(path, quick: bool = False) -> SweepConfig:
    """Read and check a sweep config; every problem names the file and the key, before any work."""
    from eventsnn.training.config import TrainConfig
    from eventsnn.data.transforms import parse_probes

    p = Path(path)
    raw = _extended(p, _read_yaml(p))
    for key in ("quick", "train"):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise fail(path, f"{key}: give a mapping of settings, not {type(raw[key]).__name__}")
    models = raw.get("models") if isinstance(raw.get("models"), dict) else {}
    for key, m in [("train", raw.get("train")), *((f"models.{k}", v) for k, v in models.items())]:
        bad = [k for k in m if not isinstance(k, str)] if isinstance(m, dict) else []
        if bad:
            raise fail(path, f"{key}: {bad[0]!r} is not a setting name")
    qmodels = (raw.get("quick") or {}).get("models")
    if isinstance(qmodels, dict):
        names = set(models) if "models" in raw else set(SweepConfig.model_fields["models"].default_factory())
        for name in qmodels:
            if name not in names:
                raise fail(path, f"quick.models.{name}: not a model of this sweep ({', '.join(sorted(names))})")
    if quick:
        raw = _merge(raw, raw.get("quick") or {})
    try:
        cfg = SweepConfig(**raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise fail(path, f"{loc}: {err['msg']}") from None
    d = cfg.data
    if (d.task is None) == (d.prepared is None):
        raise fail(path, "data: give exactly one of task (a data make task) or prepared (a data prepare directory)")
    if d.task is not None:
        from eventsnn.data.datasets import TASK_NAMES, make_task
        import inspect
        if d.task not in TASK_NAMES:
            raise fail(path, f"data.task: unknown task {d.task!r}; choose from {', '.join(TASK_NAMES)}")
        known = set(inspect.signature(make_task).parameters) - {"task", "seed", "samples"}
        for k in list(d.options) + list(d.grid):
            if k not in known:
                raise fail(path, f"data: unknown task option {k!r}; choose from {', '.join(sorted(known))}")
        for k, v in d.grid.items():
            if not v:
                raise fail(path, f"data.grid.{k}: empty list")
    else:
        pd = Path(d.prepared) if Path(d.prepared).is_absolute() else p.parent / d.prepared
        for f in ("train.h5", "val.h5", "test.h5"):
            if not (pd / f).exists():
                raise fail(path, f"data.prepared: {pd / f} does not exist (make it with eventsnn data prepare)")
    for k, v in cfg.transforms.items():
        if not v:
            raise fail(path, f"transforms.{k}: empty list")
        try:
            ts = [_transform(k, level, 0) for level in v]
        except EventsnnError as e:
            raise fail(path, f"transforms.{k}: {e}") from None
        if d.task is not None and getattr(ts[0], "unit", "ms") == "bins":
            raise fail(path, f"transforms.{k}: in bins, but data.task {d.task} makes events on a 1 ms grid without "
                             "bins; give it in ms, or use data.prepared (eventsnn data prepare)")
    if not cfg.models:
        raise fail(path, "models: at least one model")
    for name in cfg.models:
        try:
            settings = model_settings(cfg, name)
        except EventsnnError as e:
            raise fail(path, f"models.{name}.preset: {str(e).removeprefix('--preset: ')}") from None
        try:
            TrainConfig(**settings)
        except ValidationError as e:
            err = e.errors()[0]
            raise fail(path, f"models.{name} / train: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        for key in ("data", "test_data", "val_data", "seed"):
            if key in settings:
                raise fail(path, f"models.{name} / train: {key} is set by the sweep, not the config")
    try:
        for pr in cfg.probes:
            parse_probes(pr)
    except EventsnnError as e:
        raise fail(path, f"probes: {e}") from None
    if cfg.figure is not None:
        x = cfg.figure.x
        axes = set(d.grid) | set(cfg.transforms) | {f"probe:{p.split(':')[0]}" for p in cfg.probes}
        if x not in axes:
            raise fail(path, f"figure.x: {x!r} is not swept; choose from {', '.join(sorted(axes)) or '(nothing swept)'}")
    return cfg


def model_settings(cfg: SweepConfig, name: str) -> dict:
    """The training settings of model ``name``: its ``preset:`` (a named recipe of ``eventsnn train --preset``,
    e.g. the authors' SRM network), overridden by the sweep's shared ``train:``, then by the model's own keys --
    the order of ``eventsnn train --preset NAME --config FILE --flag``."""
    from eventsnn.training.config import TrainConfig

    m = dict(cfg.models[name])
    preset = m.pop("preset", None)
    return {**(TrainConfig.from_preset(preset) if preset is not None else {}), **cfg.train, **m}


# ----------------------------------------------------------------------------- cells

def cells(cfg: SweepConfig) -> list[dict]:
    """Every cell of the grid, in a stable order: data grid x transforms x models x seeds."""
    gk, tk = sorted(cfg.data.grid), sorted(cfg.transforms)
    out = []
    for gv in itertools.product(*(cfg.data.grid[k] for k in gk)):
        for tv in itertools.product(*(cfg.transforms[k] for k in tk)):
            for model in cfg.models:
                for seed in cfg.seeds:
                    out.append({"data": dict(zip(gk, gv)), "transforms": dict(zip(tk, tv)), "model": model,
                                "seed": int(seed)})
    return out


def cell_key(cell: dict) -> str:
    return json.dumps(cell, sort_keys=True)


def cell_dir(out: Path, cell: dict) -> Path:
    """Where a sweep writes a cell's run and verification: ``OUT/cells/<digest of the cell>``."""
    return Path(out) / "cells" / _digest(cell)


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _cell_data(cfg: SweepConfig, cell: dict, datadir: Path, base: Path):
    """(train, val or None, test) Events of a cell; generated files are cached in DATADIR and shared by models."""
    from eventsnn.data.datasets import load_any, make_task
    from eventsnn.data.events import save_events

    d = cfg.data
    if d.prepared is not None:
        pd = Path(d.prepared) if Path(d.prepared).is_absolute() else base / d.prepared
        return load_any(pd / "train.h5"), load_any(pd / "val.h5"), load_any(pd / "test.h5")
    opts = {**d.options, **cell["data"]}
    out = []
    for split, samples, offset in (("train", d.train_samples, 0), ("test", d.test_samples, 1)):
        spec = {"task": d.task, "options": opts, "samples": samples, "seed": 2 * cell["seed"] + offset}
        f = datadir / f"{d.task}-{split}-{_digest(spec)}.h5"
        if f.exists():
            out.append(load_any(f))
            continue
        ev = make_task(d.task, samples=samples, seed=spec["seed"], **opts)
        save_events(ev, f)
        out.append(ev)
    return out[0], None, out[1]


def run_cell(job: dict) -> dict:
    """Train and evaluate one cell (runs in a worker process); returns its results.jsonl record (the data
    warnings of the cell are kept in it instead of being printed from every worker)."""
    import torch

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    import warnings

    from eventsnn.util.errors import EventsnnWarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EventsnnWarning)
        rec = _run_cell(job)
    from eventsnn.util.errors import MergedSpikesWarning

    # a worker's merge counts are reported even when 0 (for totals across workers); a cell keeps real merges only
    msgs = sorted({str(w.message) for w in caught if issubclass(w.category, EventsnnWarning)
                   and not (isinstance(w.message, MergedSpikesWarning) and w.message.merged == 0)})
    if msgs:
        rec["warnings"] = sorted(set(rec.get("warnings", [])) | set(msgs))
    return rec


def _cell_events(cfg: "SweepConfig", cell: dict, job: dict):
    """The cell's (train, val or None, test) events, transforms applied: the same every time (seeded)."""
    train_ev, val_ev, test_ev = _cell_data(cfg, cell, Path(job["datadir"]), Path(job["base"]))
    for i, (name, level) in enumerate(sorted(cell["transforms"].items())):
        s = 7919 * cell["seed"] + 31 * i
        train_ev = _transform(name, level, s)(train_ev)
        val_ev = None if val_ev is None else _transform(name, level, s + 1)(val_ev)
        test_ev = _transform(name, level, s + 2)(test_ev)
    return train_ev, val_ev, test_ev


def _verify_cell(cfg: "SweepConfig", network, dt: float, test_ev, celldir: Path) -> dict:
    """Brian2 and the exact engine on the cell's selected model (``cfg.verify``): the record's verify fields."""
    from eventsnn import api
    from eventsnn.util.errors import EventsnnError
    v = cfg.verify
    n = len(test_ev) if v.samples == "all" else min(v.samples, len(test_ev))
    dts = sorted({dt, *[x for x in v.dt if x < dt]}, reverse=True)
    try:
        rep = api.verify(network, test_ev.subset(np.arange(n)), out=celldir / "verify", dt=dts, probes=v.probes,
                         target=v.target, fine_samples=v.fine_samples or None)  # None: every one of the n
    except EventsnnError as e:  # e.g. a model that fires without bound in continuous time: say so in its record
        return {"verify_error": str(e), "verify_samples": n, "verify_spec": v.model_dump(mode="json")}
    return {"verify": {r["name"]: {"accuracy": r["accuracy"], "agreement_with_torch": r["agreement_with_torch"],
                                   "samples": r["samples"],
                                   **({"spike_mismatch": r["spike_mismatch"]} if r["spike_mismatch"] is not None
                                      else {})}
                       for r in rep["runs"]},
            "verify_samples": n, "verify_spec": v.model_dump(mode="json")}


def _run_cell(job: dict) -> dict:
    from eventsnn import api
    from eventsnn.training.loop import Batcher, evaluate
    from eventsnn.data.transforms import parse_probes

    cfg = SweepConfig(**job["config"])
    cell, celldir = job["cell"], Path(job["celldir"])
    t0 = time.perf_counter()
    train_ev, val_ev, test_ev = _cell_events(cfg, cell, job)
    if job.get("verify_only"):  # trained earlier; the config's verification was added or changed since
        import shutil
        shutil.rmtree(celldir / "verify", ignore_errors=True)
        from eventsnn.training.loop import load_checkpoint
        dt = float(load_checkpoint(celldir / "run" / "checkpoint.pt")["config"]["dt_ms"])
        rec = {k: v for k, v in job["record"].items() if not k.startswith("verify")}
        rec.update(_verify_cell(cfg, api.export(celldir / "run"), dt, test_ev, celldir))
        rec["verify_seconds"] = time.perf_counter() - t0
        return rec
    # the settings resolved where the sweep started (a cluster's worker may have another eventsnn's presets)
    settings = {**job["settings"], "seed": cell["seed"], "device": job.get("device", "cpu")}
    import shutil
    shutil.rmtree(celldir, ignore_errors=True)  # a cell interrupted earlier starts again
    model = api.train(train_ev, settings, test=test_ev, val=val_ev, rundir=celldir / "run")
    rec = {"cell": cell, "test_acc": model.summary.get("test_acc"), "val_acc": model.summary.get("val_acc"),
           "best_epoch": model.summary.get("best_epoch"), "epochs_run": model.summary.get("epochs_run"),
           "n_train": model.summary.get("n_train"), "n_val": model.summary.get("n_val"), "n_test": len(test_ev),
           "n_classes": int(test_ev.n_classes), "chance": float(np.bincount(test_ev.labels).max() / len(test_ev)),
           "train_seconds": model.summary.get("seconds"),
           # the epoch cap reached while validation still improved (the warning says so too): train longer
           "still_improving": bool(model.summary.get("still_improving", False))}
    dt = model.config.dt_ms
    probes = {}
    net = model.model.eval()
    for spec in cfg.probes:
        for tr in parse_probes(spec):
            ev = tr(test_ev)
            acc, _ = evaluate(net, Batcher(ev, dt, "cpu", what="probe"), np.arange(len(ev)))
            probes[tr.name] = acc
    rec["probes"] = probes
    if cfg.verify is not None:
        rec.update(_verify_cell(cfg, model, dt, test_ev, celldir))
    rec["seconds"] = time.perf_counter() - t0
    return rec


# ----------------------------------------------------------------------------- the sweep

def read_results(path: Path) -> list[dict]:
    """The records of ``results.jsonl``, one per cell: a later line for the same cell (its verification added
    afterwards) replaces the earlier one; a line cut by a kill is skipped (that cell runs again)."""
    if not path.exists():
        return []
    out = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[cell_key(rec["cell"])] = rec
    return list(out.values())


def _incompatible(old: dict, new: dict) -> str | None:
    """What changed between two sweep configs (``model_dump`` form) that makes the cells already trained under
    ``old`` invalid under ``new``, or None. A cell is its (grid values, transform levels, model, seed): adding or
    removing seeds, grid or transform values, or whole models leaves every other cell as it was, and so do
    ``verify``, ``figure``, ``description``, ``name`` and ``quick`` (the --quick flag is checked apart); anything
    else (the task, its options and sizes, the training settings, a kept model's settings, the probes, the grid's
    or transforms' keys) would mix cells of two different experiments in one table."""
    free = {"verify", "figure", "description", "name", "quick", "seeds", "models", "transforms", "data"}
    for k in sorted(set(old) | set(new)):
        if k not in free and old.get(k) != new.get(k):
            return k
    od, nd = old.get("data", {}), new.get("data", {})
    for k in sorted(set(od) | set(nd)):
        if k != "grid" and od.get(k) != nd.get(k):
            return f"data.{k}"
    if set(od.get("grid", {})) != set(nd.get("grid", {})):
        return "the keys of data.grid"
    if set(old.get("transforms", {})) != set(new.get("transforms", {})):
        return "the keys of transforms"
    om, nm = old.get("models", {}), new.get("models", {})
    for k in sorted(set(om) & set(nm)):
        if om[k] != nm[k]:
            return f"models.{k}"
    return None


def _current(results: list[dict], wanted: set[str]) -> list[dict]:
    """The records of the cells in the config's grid (a record of a seed or level since removed stays in
    results.jsonl, out of the table)."""
    return [r for r in results if cell_key(r["cell"]) in wanted]


def run_sweep(config_path, out, workers: int = 1, quick: bool = False, progress: bool = True,
              device: str = "cpu", scheduler: str | None = None) -> dict:
    """Run (or resume) a sweep; returns ``{"cells", "done", "ran", "table", "figure"}``.

    Cells run ``workers`` at a time on a Dask ``LocalCluster``, or on the cluster at ``scheduler``
    (``tcp://HOST:PORT``; its workers must see ``out`` and the config's files at the same paths). Each finished
    cell is appended to ``results.jsonl`` as it arrives, so a killed sweep resumes where it stopped."""
    from eventsnn.util.files import dir_lock
    from eventsnn.util.dask_pool import Pool, usable_cores
    from eventsnn.util.progress import progress_bar
    from eventsnn.util.provenance import provenance

    cfg = load_config(config_path, quick=quick)
    out = Path(out)
    all_cells = cells(cfg)
    with dir_lock(out, "this sweep directory"):
        # each model's settings with its preset expanded: a preset changed since (another eventsnn) is a change
        settings = {name: model_settings(cfg, name) for name in cfg.models}
        meta = {"config": cfg.model_dump(mode="json"), "quick": quick, "model_settings": settings}
        mf = out / "sweep.json"
        if mf.exists():
            old = json.loads(mf.read_text())
            why = "the --quick setting" if old.get("quick") != quick else \
                _incompatible(old.get("config", {}), meta["config"])
            for name in sorted(set(old.get("model_settings") or {}) & set(settings)):
                if why is None and old["model_settings"][name] != json.loads(jsonio.dumps(settings[name])):
                    why = f"models.{name}: the settings of its preset"
            if why:
                raise fail(out, f"holds a sweep with a different config ({why} changed); use another --out, or "
                                "change only what keeps the trained cells valid: seeds, grid and transform values, "
                                "models added or removed, verify, figure, description")
            if old.get("config") != meta["config"] or "model_settings" not in old:
                with atomic_path(mf) as tmp:
                    tmp.write_text(jsonio.dumps({**old, **meta}, indent=2))
        else:
            with atomic_path(mf) as tmp:
                tmp.write_text(jsonio.dumps({**meta, "config_file": str(config_path), "provenance": provenance()},
                                          indent=2))
        results_f = out / "results.jsonl"
        wanted = {cell_key(c) for c in all_cells}
        done = {cell_key(r["cell"]): r for r in _current(read_results(results_f), wanted)}
        todo = [c for c in all_cells if cell_key(c) not in done]
        # trained cells whose verification is missing or was asked with other settings: verify only
        reverify = [done[cell_key(c)] for c in all_cells if cell_key(c) in done and cfg.verify is not None
                    and not cfg.verify.same_as(done[cell_key(c)].get("verify_spec"))
                    and (cell_dir(out, c) / "run" / "checkpoint.pt").exists()]
        # a cluster's workers choose their own threads (dask worker --nthreads); locally the cores are shared out
        threads = max(1, usable_cores() // max(1, workers)) if scheduler is None else 0
        common = {"config": meta["config"], "datadir": str(out / "data"), "threads": threads, "device": device,
                  "base": str(Path(config_path).absolute().parent)}
        jobs = [{**common, "cell": c, "celldir": str(cell_dir(out, c)), "settings": settings[c["model"]]}
                for c in todo]
        jobs += [{**common, "cell": r["cell"], "celldir": str(cell_dir(out, r["cell"])),
                  "verify_only": True, "record": r} for r in reverify]
        (out / "data").mkdir(parents=True, exist_ok=True)
        bar = progress_bar(total=len(all_cells) + len(reverify), desc=f"sweep {cfg.name}", disable=not progress,
                           initial=len(all_cells) - len(todo))

        def record(rec):
            if results_f.exists() and results_f.stat().st_size:
                with open(results_f, "rb") as f:  # a line cut by a kill must not swallow the next record
                    f.seek(-1, os.SEEK_END)
                    cut = f.read(1) != b"\n"
                if cut:
                    with open(results_f, "a") as f:
                        f.write("\n")
            with open(results_f, "a") as f:
                f.write(jsonio.dumps(rec) + "\n")
                f.flush()
                os.fsync(f.fileno())
            summarize(cfg, _current(read_results(results_f), wanted), out)
            bar.update(1)

        if jobs:
            with Pool(min(workers, len(jobs)), scheduler) as pool:
                for _, rec in pool.as_completed(run_cell, jobs):
                    record(rec)
        bar.close()
        results = _current(read_results(results_f), wanted)
        paths = summarize(cfg, results, out)
    return {"cells": len(all_cells), "done": len({cell_key(r["cell"]) for r in results}), "ran": len(todo),
            "verified": len(reverify), **paths}


# ----------------------------------------------------------------------------- table and figure

def _axes(cfg: SweepConfig) -> list[str]:
    return sorted(cfg.data.grid) + sorted(cfg.transforms)


def _row_params(cell: dict) -> dict:
    return {**cell["data"], **cell["transforms"]}


def _fmt(values) -> str:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return "—"
    m = 100 * float(np.mean(v))
    return f"{m:.1f} ± {100 * _sd(v):.1f}" if len(v) > 1 else f"{m:.1f}"


def _sd(v) -> float:
    """The spread over seeds: the sample standard deviation (n - 1), 0 for a single seed."""
    return float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def _probe_level(name: str) -> tuple[str, float] | None:
    """(kind, level) of a probe's name (``jitter-5ms`` -> ("jitter", 5.0), ``jitter-5bins`` -> ("jitter", 5.0)), or
    None for a probe without a level."""
    import re
    m = re.fullmatch(r"(.+)-([0-9.e+-]+?)(ms|bins)?(\+.*)?", name)
    try:
        return (m.group(1), float(m.group(2))) if m else None
    except ValueError:
        return None


def _probe_order(name: str):
    got = _probe_level(name)
    return (got[0], got[1], "") if got else (name, 0.0, name)


def summarize(cfg: SweepConfig, results: list[dict], out: Path) -> dict:
    """Write table.md (mean ± sample standard deviation over seeds, accuracy in %) and the figure; return their
    paths."""
    axes = _axes(cfg)
    probe_names = sorted({k for r in results for k in r.get("probes", {})}, key=_probe_order)
    # the table shows the verified accuracy on the original inputs (all probes are in results.jsonl and each
    # cell's verify/report.md)
    verify_names = sorted({k for r in results for k in r.get("verify", {})
                           if k.startswith(("brian2", "event")) and k.endswith("-none")})
    groups: dict = {}
    for r in results:
        p = _row_params(r["cell"])
        key = (tuple(p.get(a) for a in axes), r["cell"]["model"])
        groups.setdefault(key, []).append(r)
    model_order = list(cfg.models)
    rows = sorted(groups, key=lambda k: (tuple((v is None, v) for v in k[0]),
                                         model_order.index(k[1]) if k[1] in model_order else 99))
    head = axes + ["model", "seeds", "test accuracy (%)"] + [f"{p} (%)" for p in probe_names] \
        + [f"verify {v} (%)" for v in verify_names]
    lines = [f"# {cfg.name}", "", cfg.description.strip(), "",
             "Accuracy on the independent test file, mean ± standard deviation over seeds (n − 1); chance "
             f"{_fmt([r['chance'] for r in results])} %." if results else "No cell finished yet.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in rows:
        rs = groups[key]
        cols = [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in key[0]]
        cols += [key[1], str(len(rs)), _fmt([r["test_acc"] for r in rs])]
        cols += [_fmt([r.get("probes", {}).get(p) for r in rs]) for p in probe_names]
        cols += [_fmt([r.get("verify", {}).get(v, {}).get("accuracy") for r in rs]) for v in verify_names]
        lines.append("| " + " | ".join(cols) + " |")
    if verify_names:  # how many test samples each verified column ran on (a record before "samples": the cell's)
        counts = {v: sorted({r["verify"][v].get("samples", r.get("verify_samples")) for r in results
                             if v in r.get("verify", {})}) for v in verify_names}
        lines += ["", "Verified columns, on the first N test samples of each cell: " + "; ".join(
            f"{v} N = {'/'.join(map(str, c))}" for v, c in counts.items()) + "."]
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    paths = {"table": str(out / "table.md")}
    if cfg.figure is not None and results:
        paths["figure"] = str(_figure(cfg, results, out))
    return paths


def _figure(cfg: SweepConfig, results: list[dict], out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_cfg = cfg.figure
    x = fig_cfg.x
    fig, ax = plt.subplots(figsize=(5.5, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    others = [a for a in _axes(cfg) if a != x]
    for mi, model in enumerate(cfg.models):
        series: dict = {}
        for r in results:
            if r["cell"]["model"] != model:
                continue
            p = _row_params(r["cell"])
            label = model + "".join(f", {a}={p[a]:g}" for a in others if a in p)
            if x.startswith("probe:"):
                kind = x.split(":", 1)[1]
                pts = [(_probe_level(k)[1], v) for k, v in r.get("probes", {}).items()
                       if _probe_level(k) and _probe_level(k)[0] == kind]
                pts.append((0.0, r["test_acc"]))
            else:
                pts = [(float(p[x]), r["test_acc"])]
            for xv, acc in pts:
                series.setdefault(label, {}).setdefault(xv, []).append(acc)
        for si, (label, pts) in enumerate(sorted(series.items())):
            xs = sorted(pts)
            m = [100 * np.mean(pts[v]) for v in xs]
            s = [100 * _sd(pts[v]) for v in xs]
            n = max(len(pts[v]) for v in xs)
            ax.errorbar(xs, m, yerr=s, marker="o", capsize=3,
                        label=f"{label} (eventsnn, " + (f"mean ± sd of {n} seeds)" if n > 1 else "1 seed)"),
                        color=colors[(mi + si) % len(colors)])
        if model in fig_cfg.paper:
            pp = sorted(fig_cfg.paper[model].items())
            # the paper's points only: a line between them would claim values it does not report
            ax.plot([a for a, _ in pp], [100 * b for _, b in pp], marker="x", ls="none", ms=9, mew=2,
                    color=colors[mi % len(colors)], alpha=0.7, label=f"{model} (paper)")
    chance = 100 * float(np.mean([r["chance"] for r in results]))
    ax.axhline(chance, color="gray", ls=":", label="chance")
    ax.set_xlabel(fig_cfg.xlabel or x)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 102)
    ax.set_title("\n".join(textwrap.wrap(fig_cfg.title or cfg.name, 66)), fontsize=10)  # long titles wrap
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "figure.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
