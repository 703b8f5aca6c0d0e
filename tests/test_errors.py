"""The error contract, over every command and every file kind (issue: no input crashes the tool or destroys a file).

Each bad input must give: exit code 2, exactly one line on stderr that names the culprit (the flag or the file),
no traceback, nothing new on disk, and every input byte for byte unchanged. With ``--json`` the error is also a
JSON object on stdout. The matrix runs ``eventsnn.cli.main`` in-process (fast); a few cases also run as real
subprocesses, and the kill -9 tests interrupt real training, verification and simulation.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from eventsnn.bridge import save_network
from eventsnn.cli import main
from eventsnn.data.datasets import make_polychrony
from eventsnn.data.events import Events, save_events
from tests.conftest import random_events, random_network, run_cli

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the world of inputs

def _events_file(path, mutate=None, **kw):
    ev = kw.pop("events", None) or Events.from_lists([[0.001, 0.002], [0.003]], [[0, 1], [1]], [0, 1], 2, 0.01, 2)
    save_events(ev, path)
    if mutate:
        with h5py.File(path, "a") as h:
            mutate(h)
    return path


def _replace(h, key, data, dtype=None):
    del h[key]
    if dtype is not None:
        ds = h.create_dataset(key, (len(data),), dtype=dtype)
        for i, x in enumerate(data):
            ds[i] = x
    else:
        h.create_dataset(key, data=data)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Valid and broken inputs of every kind, built once; the tests check nothing in here ever changes."""
    w = tmp_path_factory.mktemp("world")
    W = {"dir": w}
    # valid files
    W["ev"] = w / "ev.h5"
    save_events(random_events(0, n_samples=4), W["ev"])
    net = random_network(0)
    W["net"] = w / "net.h5"
    save_network(net, W["net"])
    W["poly"] = w / "poly.h5"
    save_events(make_polychrony(samples=60, seed=1), W["poly"])
    W["poly_test"] = w / "poly_test.h5"
    save_events(make_polychrony(samples=20, seed=2), W["poly_test"])
    assert main(["train", "--data", str(W["poly"]), "--epochs", "1", "--hidden", "4", "--out", str(w / "run")]) == 0
    W["run"] = w / "run"
    assert main(["simulate", str(W["net"]), "--data", str(W["ev"]), "--engine", "torch", "--out",
                 str(w / "run.h5")]) == 0
    W["runfile"] = w / "run.h5"
    # broken files of every kind
    (w / "text.h5").write_text("this is not an HDF5 file\n")
    W["text"] = w / "text.h5"
    (w / "empty.h5").write_bytes(b"")
    W["empty"] = w / "empty.h5"
    W["truncated"] = w / "truncated.h5"
    W["truncated"].write_bytes(W["poly"].read_bytes()[:2000])
    (w / "adir").mkdir()
    W["adir"] = w / "adir"
    W["ev_labels"] = _events_file(w / "ev_labels.h5", lambda h: _replace(h, "labels", np.array([0.5, 3.5])))
    W["ev_nan"] = _events_file(w / "ev_nan.h5", lambda h: h["spikes/times"].__setitem__(0, np.array([np.nan, 0.001])))
    W["ev_neg"] = _events_file(w / "ev_neg.h5", lambda h: h["spikes/times"].__setitem__(0, np.array([-0.1, 0.001])))
    W["ev_unit"] = _events_file(w / "ev_unit.h5", lambda h: h["spikes/units"].__setitem__(0, np.array([0, 9], np.int32)))
    W["ev_nolabels"] = _events_file(w / "ev_nolabels.h5", lambda h: h.__delitem__("labels"))
    W["ev_len"] = _events_file(w / "ev_len.h5", lambda h: h["spikes/units"].__setitem__(0, np.array([0], np.int32)))
    W["ev_late"] = _events_file(w / "ev_late.h5", lambda h: h["spikes/times"].__setitem__(0, np.array([0.001, 0.5])))
    W["ev_nounits"] = _events_file(w / "ev_nounits.h5", lambda h: h.attrs.__delitem__("n_units"))
    W["ev_format"] = _events_file(w / "ev_format.h5", lambda h: h.attrs.__setitem__("format", "eventsnn.network"))
    W["ev_zero"] = _events_file(w / "ev_zero.h5", lambda h: (
        _replace(h, "spikes/times", [], h5py.vlen_dtype(np.float64)),
        _replace(h, "spikes/units", [], h5py.vlen_dtype(np.int32)), _replace(h, "labels", np.zeros(0, np.int64))))
    W["ev_oneclass"] = _events_file(w / "ev_oneclass.h5", events=Events.from_lists(
        [[0.001]] * 4, [[0]] * 4, [0] * 4, 2, 0.01, 1))
    W["ev3"] = w / "ev3.h5"  # 3 units: does not fit the 8-input network
    save_events(random_events(0, n_units=3), W["ev3"])
    W["ev4"] = w / "ev4.h5"  # 8 units but 4 classes: labels beyond the 3-output network
    save_events(random_events(0, n_classes=4, n_samples=12), W["ev4"])
    W["ev_damaged"] = _damaged(W["poly"], w / "ev_damaged.h5")
    W["run_nandt"] = w / "run_nandt.h5"
    shutil.copy(W["runfile"], W["run_nandt"])
    with h5py.File(W["run_nandt"], "a") as h:
        h.attrs["dt_ms"] = np.nan
    W["run_2layers"] = w / "run_2layers.h5"  # a run of another network (two hidden layers less one)
    net1 = random_network(1, sizes=(6,))
    save_network(net1, w / "net1.h5")
    assert main(["simulate", str(w / "net1.h5"), "--data", str(W["ev"]), "--engine", "torch", "--out",
                 str(W["run_2layers"])]) == 0

    def bad_net(name, mutate):
        f = w / f"net_{name}.h5"
        shutil.copy(W["net"], f)
        with h5py.File(f, "a") as h:
            mutate(h)
        return f
    W["net_str"] = bad_net("str", lambda h: _replace(h, "layers/1/ff_weight",
                                                      np.array([["a"] * 5] * 6, dtype=h5py.string_dtype())))
    W["net_nan"] = bad_net("nan", lambda h: h["layers/1/ff_weight"].__setitem__((0, 0), np.nan))
    W["net_tau"] = bad_net("tau", lambda h: h["layers/2/tau_mem_ms"].__setitem__(0, -5.0))
    W["net_shape"] = bad_net("shape", lambda h: _replace(h, "layers/2/ff_weight", np.ones((4, 3))))
    W["net_nolayers"] = bad_net("nolayers", lambda h: h.__delitem__("layers"))
    W["net_version"] = bad_net("version", lambda h: h.attrs.__setitem__("version", 99))
    W["net_order"] = bad_net("order", lambda h: h.attrs.__setitem__("order", "custom"))
    W["net_dt"] = bad_net("dt", lambda h: h.attrs.__setitem__("dt_ms", -1.0))
    W["net_kind"] = bad_net("kind", lambda h: h["layers/0"].attrs.__setitem__("kind", "izhikevich"))
    # a run directory whose checkpoint is corrupt, one without a checkpoint
    (w / "run_corrupt").mkdir()
    (w / "run_corrupt" / "checkpoint.pt").write_bytes(b"garbage")
    (w / "run_empty").mkdir()
    W["run_corrupt"], W["run_empty"] = w / "run_corrupt", w / "run_empty"
    # configs
    for name, text in {"ten.yaml": "epochs: ten\n", "abc.yaml": "hidden: abc\n", "key.yaml": "learning_rate: 3\n",
                       "parse.yaml": "epochs: [1\n", "list.yaml": "- 1\n- 2\n", "cfg.ini": "epochs=1\n",
                       "neg.toml": "lr = -1.0\n", "delays.json": '{"delays": "sideways"}'}.items():
        (w / name).write_text(text)
        W[name] = w / name
    return W


def _damaged(good: Path, out: Path) -> Path:
    """A copy of ``good`` with 64 bytes overwritten where h5py opens the file but fails while reading it (the
    "bad heap free list" / "Can't synchronously read data" kind of damage)."""
    from eventsnn.data.events import load_events
    from eventsnn.util.errors import EventsnnError
    data = good.read_bytes()
    for frac in np.linspace(0.1, 0.9, 33):
        o = int(frac * len(data))
        out.write_bytes(data[:o] + b"\xff" * 64 + data[o + 64:])
        try:
            load_events(out)
        except EventsnnError as e:
            if "damaged HDF5 file" in str(e):
                return out
    raise AssertionError("no offset gave a file that opens but cannot be read")


def _snapshot(d: Path) -> dict:
    out = {}
    for p in sorted(d.rglob("*")):
        rel = str(p.relative_to(d))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# (argv with {name} placeholders for world paths and {out} for a fresh output path, culprit substring)
CASES = [
    # --- data make
    ("data make isi --samples 0 --out {out}", "--samples"),
    ("data make isi --samples -5 --out {out}", "--samples"),
    ("data make isi --samples abc --out {out}", "--samples"),
    ("data make isi --duration-ms 5 --out {out}", "--duration-ms"),
    ("data make isi --duration-ms -10 --out {out}", "--duration-ms"),
    ("data make isi --duration-ms nan --out {out}", "--duration-ms"),
    ("data make isi --units 0 --out {out}", "--units"),
    ("data make isi --classes 0 --out {out}", "--classes"),
    ("data make isi --classes 1 --out {out}", "--classes"),
    ("data make isi --jitter-ms -1 --out {out}", "--jitter-ms"),
    ("data make isi --seed -1 --out {out}", "--seed"),
    ("data make isi --overlap 0.5 --out {out}", "--overlap"),
    ("data make coincidence --units 20 --out {out}", "--units"),
    ("data make coincidence --classes 5 --out {out}", "--classes"),
    ("data make coincidence --duration-ms 50 --out {out}", "--duration-ms"),
    ("data make coincidence --overlap 2 --out {out}", "--overlap"),
    ("data make polychrony --units 7 --out {out}", "--units"),
    ("data make polychrony --units 4 --classes 5 --out {out}", "--classes"),
    ("data make polychrony --duration-ms 8 --out {out}", "--duration-ms"),
    ("data make sideways --out {out}", "task"),
    ("data make isi --out {adir}", "--out"),
    ("data make isi --out {ev}/x.h5", "--out"),
    # --- data info: every kind of broken events file
    ("data info {missing}", "{missing}"),
    ("data info {adir}", "{adir}"),
    ("data info {text}", "{text}"),
    ("data info {empty}", "{empty}"),
    ("data info {truncated}", "{truncated}"),
    ("data info {net}", "{net}"),
    ("data info {ev_format}", "{ev_format}"),
    ("data info {ev_labels}", "{ev_labels}"),
    ("data info {ev_nan}", "{ev_nan}"),
    ("data info {ev_neg}", "{ev_neg}"),
    ("data info {ev_unit}", "{ev_unit}"),
    ("data info {ev_nolabels}", "{ev_nolabels}"),
    ("data info {ev_len}", "{ev_len}"),
    ("data info {ev_late}", "{ev_late}"),
    ("data info {ev_nounits}", "{ev_nounits}"),
    ("data info {ev_zero}", "{ev_zero}"),
    # --- data transform
    ("data transform {ev} --reverse --out {ev}", "--out"),
    ("data transform {ev} --out {out}", "--reverse"),
    ("data transform {ev} --jitter -1 --out {out}", "--jitter"),
    ("data transform {ev} --jitter-neuron nan --out {out}", "--jitter-neuron"),
    ("data transform {ev} --delete 1.5 --out {out}", "--delete"),
    ("data transform {ev} --randomize -0.1 --out {out}", "--randomize"),
    ("data transform {ev} --reverse sideways --out {out}", "--reverse"),
    ("data transform {truncated} --reverse --out {out}", "{truncated}"),
    ("data transform {ev} --reverse --out {adir}", "--out"),
    ("data transform {missing} --reverse --out {out}", "{missing}"),
    # --- train: flags
    ("train --out {outdir}", "--data"),
    ("train --data {poly}", "--out"),
    ("train --data {missing} --out {outdir}", "{missing}"),
    ("train --data {truncated} --out {outdir}", "{truncated}"),
    ("train --data {ev_oneclass} --out {outdir}", "{ev_oneclass}"),
    ("train --data {poly} --epochs 0 --out {outdir}", "--epochs"),
    ("train --data {poly} --epochs ten --out {outdir}", "--epochs"),
    ("train --data {poly} --patience -1 --out {outdir}", "--patience"),
    ("train --data {poly} --max-delay-ms 1e9 --out {outdir}", "--max-delay-ms"),
    ("train --data {poly} --max-delay-ms -1 --out {outdir}", "--max-delay-ms"),
    ("train --data {poly} --hidden abc --out {outdir}", "--hidden"),
    ("train --data {poly} --hidden 0 --out {outdir}", "--hidden"),
    ("train --data {poly} --lr -1 --out {outdir}", "--lr"),
    ("train --data {poly} --lr nan --out {outdir}", "--lr"),
    ("train --data {poly} --val-fraction 1 --out {outdir}", "--val-fraction"),
    ("train --data {poly} --device bogus --out {outdir}", "--device"),
    ("train --data {poly} --delays sideways --out {outdir}", "--delays"),
    ("train --data {poly} --batch-size 0 --out {outdir}", "--batch-size"),
    ("train --data {poly} --dt 0 --out {outdir}", "--dt"),
    ("train --data {poly} --hidden 100000,100000,100000,100000,100000 --batch-size 100000 --out {outdir}",
     "--batch-size"),
    ("train --data {poly} --test-data {ev} --out {outdir}", "{ev}"),
    ("train --data {poly} --out {poly}", "--out"),
    ("train --data {poly} --out {poly}/run", "--out"),
    ("train --data {poly} --out {run}", "--resume"),
    ("train --data {poly} --preset paper-nope --out {outdir}", "--preset"),
    ("train --data {poly} --delay-placement sideways --out {outdir}", "--delay-placement"),
    ("train --data {poly} --delay-clamp-until -1 --out {outdir}", "--delay-clamp-until"),
    ("train --data {poly} --delay-clamp-until 2.5 --out {outdir}", "--delay-clamp-until"),
    ("train --data {poly} --loss prob --out {outdir}", "--loss"),
    # --- train: config files
    ("train --config {ten.yaml} --data {poly} --out {outdir}", "{ten.yaml}"),
    ("train --config {abc.yaml} --data {poly} --out {outdir}", "{abc.yaml}"),
    ("train --config {key.yaml} --data {poly} --out {outdir}", "{key.yaml}"),
    ("train --config {parse.yaml} --data {poly} --out {outdir}", "{parse.yaml}"),
    ("train --config {list.yaml} --data {poly} --out {outdir}", "{list.yaml}"),
    ("train --config {cfg.ini} --data {poly} --out {outdir}", "{cfg.ini}"),
    ("train --config {neg.toml} --data {poly} --out {outdir}", "{neg.toml}"),
    ("train --config {delays.json} --data {poly} --out {outdir}", "{delays.json}"),
    ("train --config {missing} --data {poly} --out {outdir}", "{missing}"),
    # --- train: resume
    ("train --resume {missing}", "{missing}"),
    ("train --resume {run} --lr 0.1", "--lr"),
    ("train --resume {run} --out {outdir}", "--out"),
    ("train --resume {run_corrupt}", "{run_corrupt}"),
    ("train --resume {run_empty}", "{run_empty}"),
    ("train --resume {run} --epochs 0", "--epochs"),
    # --- export
    ("export {missing} --out {out}", "{missing}"),
    ("export {run_empty} --out {out}", "{run_empty}"),
    ("export {run_corrupt} --out {out}", "{run_corrupt}"),
    ("export {run} --out {run}/checkpoint.pt", "--out"),
    ("export {run} --out {run}/net.h5", "--out"),
    ("export {run} --out {adir}", "--out"),
    # --- simulate: network files of every kind of damage, and flags
    ("simulate {missing} --data {ev} --engine torch --out {out}", "{missing}"),
    ("simulate {text} --data {ev} --engine torch --out {out}", "{text}"),
    ("simulate {ev} --data {ev} --engine torch --out {out}", "{ev}"),
    ("simulate {net_str} --data {ev} --engine torch --out {out}", "{net_str}"),
    ("simulate {net_nan} --data {ev} --engine torch --out {out}", "{net_nan}"),
    ("simulate {net_tau} --data {ev} --engine torch --out {out}", "{net_tau}"),
    ("simulate {net_shape} --data {ev} --engine torch --out {out}", "{net_shape}"),
    ("simulate {net_nolayers} --data {ev} --engine torch --out {out}", "{net_nolayers}"),
    ("simulate {net_version} --data {ev} --engine torch --out {out}", "{net_version}"),
    ("simulate {net_order} --data {ev} --engine torch --out {out}", "{net_order}"),
    ("simulate {net_dt} --data {ev} --engine torch --out {out}", "{net_dt}"),
    ("simulate {net_kind} --data {ev} --engine brian2 --out {out}", "{net_kind}"),
    ("simulate {net} --data {ev3} --engine torch --out {out}", "{ev3}"),
    ("simulate {net} --data {ev_nan} --engine brian2 --out {out}", "{ev_nan}"),
    ("simulate {net} --data {ev} --engine torch --out {ev}", "--out"),
    ("simulate {net} --data {ev} --engine torch --out {net}", "--out"),
    ("simulate {net} --data {ev} --engine torch --dt 0 --out {out}", "--dt"),
    ("simulate {net} --data {ev} --engine torch --dt nan --out {out}", "--dt"),
    ("simulate {net} --data {ev} --engine brian2 --dt 0.3 --out {out}", "--dt"),
    ("simulate {net} --data {ev} --engine torch --samples 0 --out {out}", "--samples"),
    ("simulate {net} --data {ev} --engine torch --first 0 --out {out}", "--first"),
    ("simulate {net} --data {ev} --engine event --dt 0.5 --out {out}", "--dt"),
    ("simulate {net} --data {ev} --engine event --target cython --out {out}", "--target"),
    ("simulate {net} --data {ev} --engine quantum --out {out}", "--engine"),
    ("simulate {net} --data {ev} --engine torch --device bogus --out {out}", "--device"),
    ("simulate {net} --data {ev} --engine brian2 --build-dir {ev} --out {out}", "--build-dir"),
    ("simulate {net} --data {ev} --engine brian2 --workers 0 --out {out}", "--workers"),
    ("simulate {net} --data {ev} --engine brian2 --target fpga --out {out}", "--target"),
    ("simulate {net} --data {ev} --engine torch --delays sideways --out {out}", "--delays"),
    # --- damaged HDF5 content, labels beyond the network's outputs
    ("data info {ev_damaged}", "{ev_damaged}"),
    ("data transform {ev_damaged} --reverse --out {out}", "{ev_damaged}"),
    ("train --data {ev_damaged} --out {outdir}", "{ev_damaged}"),
    ("simulate {net} --data {ev_damaged} --engine torch --out {out}", "{ev_damaged}"),
    ("simulate {net} --data {ev4} --engine torch --out {out}", "{ev4}"),
    ("simulate {net} --data {ev4} --engine event --out {out}", "{ev4}"),
    ("verify {net} --data {ev4} --out {outdir}", "{ev4}"),
    # --- compare
    ("compare {runfile} {run_nandt}", "{run_nandt}"),
    ("compare {runfile} {run_2layers}", "{run_2layers}"),
    ("compare {runfile} {runfile} --tolerance -1", "--tolerance"),
    ("compare {runfile} {runfile} --tolerance nan", "--tolerance"),
    ("compare {runfile} {missing}", "{missing}"),
    ("compare {ev} {runfile}", "{ev}"),
    ("compare {runfile} {truncated}", "{truncated}"),
    # --- verify
    ("verify {net} --data {ev} --dt 0 --out {outdir}", "--dt"),
    ("verify {net} --data {ev} --dt 0.3 --out {outdir}", "--dt"),
    ("verify {net} --data {ev} --dt 2 --out {outdir}", "--dt"),
    ("verify {net} --data {ev} --dt , --out {outdir}", "--dt"),
    ("verify {net} --data {ev} --probes bogus --out {outdir}", "--probes"),
    ("verify {net} --data {ev} --probes jitter:-1 --out {outdir}", "--probes"),
    ("verify {net} --data {ev} --probes delete:2 --out {outdir}", "--probes"),
    ("verify {net} --data {ev} --probes jitter:abc --out {outdir}", "--probes"),
    ("verify {net} --data {ev} --out {ev}", "--out"),
    ("verify {net} --data {ev} --samples 0 --out {outdir}", "--samples"),
    ("verify {net} --data {ev} --first 0 --out {outdir}", "--first"),
    ("verify {net} --data {ev} --workers 0 --out {outdir}", "--workers"),
    ("verify {missing} --data {ev} --out {outdir}", "{missing}"),
    ("verify {net} --data {ev3} --out {outdir}", "{ev3}"),
    ("verify {net_nan} --data {ev} --out {outdir}", "{net_nan}"),
    # --- demo and the parser itself
    ("demo --out {ev}", "--out"),
    ("demo --workers 0 --out {outdir}", "--workers"),
    ("teleport", "teleport"),
    ("", "required"),
    ("data", "required"),
    ("simulate {net} --engine torch --out {out}", "--data"),
]


def _expand(text: str, W: dict, out: Path) -> str:
    mapping = {k: str(v) for k, v in W.items() if isinstance(v, Path)}
    mapping.update(out=str(out / "o.h5"), outdir=str(out / "odir"), missing=str(W["dir"] / "missing.h5"))
    import re
    return re.sub(r"\{([^{}]+)\}", lambda m: mapping[m.group(1)], text)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0][:60] for c in CASES])
def test_bad_input_matrix(world, case, capsys, tmp_path):
    argv_t, culprit_t = CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    argv = _expand(argv_t, world, out).split()
    before = _snapshot(world["dir"])
    code = main(argv + ["--json"])
    cap = capsys.readouterr()
    assert code == 2, (argv, cap.err)
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert "Traceback" not in cap.err and "Traceback" not in cap.out
    culprit = _expand(culprit_t, world, out)
    assert culprit in lines[0], (culprit, lines[0])
    err = json.loads(cap.out.strip().splitlines()[-1])
    assert set(err) == {"error"} and err["error"] in lines[0]
    assert _snapshot(world["dir"]) == before, "an input changed or a file was written next to the inputs"
    assert list(out.iterdir()) == [], f"left behind: {list(out.iterdir())}"


def test_matrix_is_large_and_covers_every_command():
    assert len([c for c in CASES if c[1]]) >= 80
    commands = {c[0].split()[0] + (" " + c[0].split()[1] if c[0].startswith("data ") else "")
                for c in CASES if c[0]}
    assert {"data make", "data info", "data transform", "train", "export", "simulate", "compare", "verify",
            "demo"} <= commands


# ----------------------------------------------------------------------------- real processes

def test_json_output_is_strict_even_with_undefined_numbers(world, tmp_path, capsys):
    """``--json`` never prints NaN or Infinity (strict JSON readers reject them): an undefined value is null."""
    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert main(["compare", str(world["runfile"]), str(world["runfile"]), "--json"]) == 0
    strict(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["data", "info", str(world["ev_oneclass"]), "--rate-baseline", "--json"]) in (0, 2)
    out = capsys.readouterr().out.strip()
    if out:
        strict(out.splitlines()[-1])
    assert main(["train", "--data", str(world["poly"]), "--epochs", "1", "--hidden", "4", "--val-fraction", "0",
                 "--out", str(tmp_path / "r"), "--json"]) == 0
    strict(capsys.readouterr().out.strip().splitlines()[-1])
    for f in (tmp_path / "r").glob("*.json*"):
        for line in f.read_text().splitlines() if f.suffix == ".jsonl" else [f.read_text()]:
            strict(line)


def test_renamed_flags_still_work_with_one_warning(world, tmp_path, capsys):
    """Old spellings keep working for one release, hidden from --help, with one warning line naming the new."""
    assert main(["simulate", str(world["net"]), "--data", str(world["ev"]), "--engine", "torch", "--samples", "2",
                 "--delays", "exact", "--out", str(tmp_path / "r.h5")]) == 0
    err = capsys.readouterr().err
    assert "--samples is deprecated" in err and "use --first" in err and "use --delay-mode" in err
    from eventsnn.bridge.runfile import load_run
    r = load_run(tmp_path / "r.h5")
    assert r.n_samples == 2 and r.delays == "exact"
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "--samples" not in capsys.readouterr().out


def test_brian2_leftovers_of_a_killed_process_are_removed(tmp_path):
    """Brian2 writes brian_debug_*.log and brian_script_*.py into the temporary directory on import and removes
    them only at a normal exit: a killed eventsnn process's files sit in its own .eventsnn_build_PID directory,
    which the next eventsnn process removes."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    kill = ("from eventsnn.bridge.engines.brian2 import import_brian2; import os; import_brian2(); "
            "os.kill(os.getpid(), 9)")
    p = subprocess.run([sys.executable, "-c", kill], env=env, capture_output=True, timeout=300)
    assert p.returncode == -9
    left = list(tmp_path.glob(".eventsnn_build_*/brian_*"))
    assert left and not list(tmp_path.glob("brian_*")), list(tmp_path.iterdir())
    ok = "from eventsnn.bridge.engines.brian2 import import_brian2; import_brian2()"
    assert subprocess.run([sys.executable, "-c", ok], env=env, timeout=300).returncode == 0
    assert not list(tmp_path.rglob("brian_*")) and not list(tmp_path.glob(".eventsnn_build_*")), \
        list(tmp_path.rglob("*"))


def test_warnings_from_worker_processes_are_one_line_with_the_totals(world, tmp_path):
    """With --workers the samples run in Dask worker processes: what they warn comes back to the command and is
    printed once, as one eventsnn line, with the merged-spike counts summed over the workers (not each worker's
    share, not a raw Python warning with a source line)."""
    assert main(["export", str(world["run"]), "--out", str(tmp_path / "poly_net.h5")]) == 0

    def warned(workers):
        p = run_cli("simulate", tmp_path / "poly_net.h5", "--data", world["poly_test"], "--engine", "brian2", "--out",
                    tmp_path / f"w{workers}.h5", "--workers", str(workers))
        assert p.returncode == 0, p.stderr
        return [line for line in p.stderr.splitlines() if "warning" in line.lower()]
    from eventsnn.util.dask_pool import relay_warnings
    from eventsnn.util.errors import MergedSpikesWarning
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        relay_warnings([MergedSpikesWarning(2, 100, 1.0), UserWarning("x"), MergedSpikesWarning(3, 50, 1.0),
                        UserWarning("x"), MergedSpikesWarning(0, 70, 0.5)])
    texts = sorted(str(w.message) for w in caught)
    assert texts == sorted(["x", str(MergedSpikesWarning(5, 150, 1.0))])
    one, two = warned(1), warned(2)
    merged = [line for line in two if "merged" in line]
    assert len(merged) == 1 and merged == [line for line in one if "merged" in line]
    assert all(line.startswith("eventsnn: warning: ") for line in two)


def test_same_seed_same_bytes(world, tmp_path):
    """Run files, checkpoints and exported networks hold no wall-clock time: the same inputs and seed give
    byte-identical files (timings go to the log, metrics.jsonl, and to the command's output)."""
    d, got = tmp_path / "w", []
    for _ in range(2):
        shutil.rmtree(d, ignore_errors=True)
        assert main(["train", "--data", str(world["poly"]), "--epochs", "2", "--hidden", "4", "--seed", "3",
                     "--out", str(d / "run")]) == 0
        assert main(["export", str(d / "run"), "--out", str(d / "net.h5")]) == 0
        for engine in ("torch", "event"):
            assert main(["simulate", str(d / "net.h5"), "--data", str(world["poly_test"]), "--engine", engine,
                         "--out", str(d / f"{engine}.h5")]) == 0
        got.append({f: (d / f).read_bytes() for f in ("run/checkpoint.pt", "net.h5", "torch.h5", "event.h5")})
        assert not list(d.rglob(".eventsnn.lock"))
    for f in got[0]:
        assert got[0][f] == got[1][f], f


def test_subprocess_errors_one_line_and_flags_anywhere(world, tmp_path):
    p = run_cli("--json", "data", "info", world["truncated"])
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert json.loads(p.stdout)["error"].startswith(str(world["truncated"]))
    p = run_cli("data", "info", world["truncated"], "--debug")
    assert p.returncode == 2 and "Traceback" in p.stderr  # --debug after the subcommand shows it
    p = run_cli("--version")
    assert p.returncode == 0 and "eventsnn" in p.stdout and "torch" in p.stdout and "brian2" in p.stdout


def test_broken_pipe_is_quiet(world):
    p = subprocess.run(f"{shlex_quote(sys.executable)} -m eventsnn data info {shlex_quote(str(world['poly']))} | head -1",
                       shell=True, capture_output=True, text=True, env=dict(os.environ, EVENTSNN_PROGRESS="0"))
    assert p.stdout.startswith("file:") and p.stderr == "", p.stderr


def shlex_quote(s):
    import shlex
    return shlex.quote(s)


def test_outputs_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        f = tmp_path / "ev.h5"
        assert main(["data", "make", "isi", "--samples", "4", "--out", str(f)]) == 0
        assert f.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".ev.h5.{dead}.abcd1234.tmp"
    stale.write_bytes(b"x" * 100)
    build = tmp_path / f".eventsnn_build_{dead}"
    (build / "sub").mkdir(parents=True)
    mine = tmp_path / f".other.h5.{os.getpid()}.zz.tmp"  # a live process's temporary file is left alone
    mine.write_bytes(b"y")
    assert main(["data", "make", "isi", "--samples", "4", "--out", str(tmp_path / "ev.h5")]) == 0
    assert not stale.exists() and not build.exists() and mine.exists()


def test_delays_longer_than_the_sample_are_clamped_not_allocated(tmp_path):
    """A network file with 1e9 ms delays is valid: those spikes never arrive. Both engines run it cheaply."""
    from eventsnn.bridge.engines.brian2 import simulate_brian2
    from eventsnn.bridge.engines.torch import simulate_torch
    from tests.conftest import assert_runs_identical
    net = random_network(1)
    net.layers[0].ff_delay_ms[:2] = 1e9
    net.layers[0].rec_delay_ms[0, :] = 1e9
    ev = random_events(1, n_samples=3)
    rt = simulate_torch(net, ev)
    rb = simulate_brian2(net, ev, target="numpy", build_dir=tmp_path / "b")
    assert_runs_identical(rt, rb)


def test_resume_may_extend_epochs_and_says_so(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    ck = __import__("torch").load(run / "checkpoint.pt", weights_only=False)
    assert ck["config"]["epochs"] == 2 and ck["provenance"]["torch"]


def test_verify_directory_in_use_fails_cleanly(world, tmp_path):
    from eventsnn.util.errors import EventsnnError
    from eventsnn.util.files import dir_lock
    out = tmp_path / "rep"
    code = "import sys, time; from eventsnn.util.files import dir_lock\nwith dir_lock(sys.argv[1]):\n" \
           "    print('locked', flush=True); time.sleep(30)\n"
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        p = run_cli("verify", world["net"], "--data", world["ev"], "--dt", "1", "--probes", "", "--out", out)
        assert p.returncode == 2 and "in use by another running eventsnn process" in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
        assert not (out / "runs").exists()
    finally:
        holder.kill()
        holder.wait()
    with dir_lock(out):  # the lock died with its process
        pass
    assert EventsnnError


# ----------------------------------------------------------------------------- kill -9

def _kill_when(cmd, ready, timeout=300):
    """Start ``cmd``; SIGKILL it as soon as ``ready()`` is true (or it exits)."""
    env = dict(os.environ, EVENTSNN_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "eventsnn", *map(str, cmd)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while proc.poll() is None and not ready() and time.time() - t0 < timeout:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _stray(d: Path):
    return [p for p in d.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".eventsnn_build_")]


def test_kill9_train_then_resume_equals_uninterrupted(world, tmp_path):
    import torch
    args = ["--data", world["poly"], "--epochs", "4", "--hidden", "8", "--seed", "2"]
    assert run_cli("train", *args, "--out", tmp_path / "full").returncode == 0
    part = tmp_path / "part"
    _kill_when(["train", *args, "--out", part],
               lambda: (part / "metrics.jsonl").exists() and len((part / "metrics.jsonl").read_text().splitlines()) >= 2)
    p = run_cli("train", "--resume", part)
    assert p.returncode == 0, p.stderr
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(part / "checkpoint.pt", weights_only=False)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert not _stray(part)


def test_kill9_verify_then_rerun_equals_uninterrupted(world, tmp_path):
    args = [world["net"], "--data", world["ev"], "--dt", "1,0.1", "--probes", "reverse-window"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_cli("verify", *args, "--out", full).returncode == 0
    _kill_when(["verify", *args, "--out", part], lambda: len(list((part / "runs").glob("*.h5"))) >= 2)
    p = run_cli("verify", *args, "--out", part)
    assert p.returncode == 0, p.stderr
    ra = json.loads((full / "report.json").read_text())["runs"]
    rb = json.loads((part / "report.json").read_text())["runs"]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]  # noqa: E731
    assert strip(ra) == strip(rb)
    assert not _stray(part)


def test_kill9_simulate_leaves_nothing_and_rerun_works(world, tmp_path):
    out = tmp_path / "sim" / "run.h5"
    out.parent.mkdir()
    args = ["simulate", world["net"], "--data", world["ev"], "--engine", "brian2", "--dt", "0.01", "--delay-mode",
            "exact", "--inputs", "exact", "--out", out]
    _kill_when(args, lambda: any(out.parent.glob(".eventsnn_build_*")))
    p = run_cli(*args)  # the next run in the same place cleans up after the killed one
    assert p.returncode == 0, p.stderr
    assert out.exists() and not _stray(out.parent)
