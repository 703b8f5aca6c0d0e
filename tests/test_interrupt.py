"""Ctrl-C: at any moment of ``train`` and ``verify`` the command ends with exit code 130 and one line saying how
to resume, and resuming finishes the work. SIGINT is sent to a real CLI process at deterministic points (when a
file the command writes appears), including in the middle of a Brian2 run (Brian2 installs its own Ctrl-C
handler, which used to end the run early and crash, or exit 0)."""
import os
import signal
import subprocess
import sys
import time

import pytest

from eventsnn.data.datasets import make_polychrony
from eventsnn.data.events import save_events
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _start(*args):
    env = dict(os.environ, EVENTSNN_PROGRESS="0")
    return subprocess.Popen([sys.executable, "-m", "eventsnn", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _interrupt_when(p, path, delay_s=0.0, timeout=300):
    """SIGINT to ``p`` once ``path`` exists (plus ``delay_s``); returns (returncode, stderr)."""
    t0 = time.monotonic()
    while not os.path.exists(path):
        assert p.poll() is None, f"finished before {path} appeared: {p.communicate()[1]}"
        assert time.monotonic() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.01)
    time.sleep(delay_s)
    assert p.poll() is None, f"finished before it could be interrupted: {p.communicate()[1]}"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    return p.returncode, err


def _last_line(err: str) -> str:
    return err.strip().splitlines()[-1] if err.strip() else ""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("interrupt")
    tr, te = d / "tr.h5", d / "te.h5"
    save_events(make_polychrony(samples=160, seed=1), tr)
    save_events(make_polychrony(samples=30, seed=2), te)
    p = run_cli("train", "--data", tr, "--epochs", "1", "--hidden", "16", "--out", d / "run")
    assert p.returncode == 0, p.stderr
    assert run_cli("export", d / "run", "--out", d / "net.h5").returncode == 0
    return {"dir": d, "tr": tr, "te": te, "net": d / "net.h5"}


def test_train_interrupted_before_its_first_epoch_leaves_nothing_and_after_one_resumes(world, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", world["tr"], "--epochs", "4", "--hidden", "16", "--batch-size", "8", "--out", out]
    # during the first epoch: config.json is written just before the epoch loop (10x the samples in batches of 1
    # make that epoch ~2 s, not 0.2 s, so that a loaded machine cannot finish it before the signal lands)
    long = tmp_path / "long.h5"
    save_events(make_polychrony(samples=1600, seed=1), long)
    first = [{world["tr"]: long, "8": "1"}.get(a, a) for a in args]
    rc, err = _interrupt_when(_start(*first), out / "config.json")
    assert rc == 130, err
    assert _last_line(err).startswith("eventsnn: interrupted; resume with: the same command again"), err
    assert "no epoch had finished" in err and "Traceback" not in err
    assert not out.exists()  # no half-started run to block a rerun
    # after the first checkpoint: the hint is --resume, and resuming finishes the run
    rc, err = _interrupt_when(_start(*args), out / "checkpoint.pt")
    assert rc == 130, err
    assert _last_line(err) == f"eventsnn: interrupted; resume with: eventsnn train --resume {out}", err
    p = run_cli("train", "--resume", out)
    assert p.returncode == 0, p.stderr
    assert "4 epochs" in p.stdout


def test_train_interrupted_while_writing_its_first_files_leaves_nothing(world, tmp_path, monkeypatch):
    """The moment between config.json and the epoch loop (the run's log being written): an interrupt there
    also leaves no half-started run (a loaded machine once delivered the test above's SIGINT just then)."""
    from eventsnn.training import loop
    from eventsnn.training.config import TrainConfig

    def interrupted(path):
        assert (path.parent / "config.json").exists()
        raise KeyboardInterrupt
    monkeypatch.setattr(loop, "_logged_seconds", interrupted)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        loop.train(TrainConfig(data=str(world["tr"]), epochs=1, hidden=[16]), out, progress=False)
    assert not out.exists()


def test_verify_interrupted_anywhere_exits_130_with_the_resume_line_and_the_rerun_finishes(world, tmp_path):
    out = tmp_path / "v"
    args = ["verify", world["net"], "--data", world["te"], "--dt", "1,0.1,0.01", "--first", "20",
            "--probes", "reverse", "--out", out]
    hint = "eventsnn: interrupted; resume with: the same command again ("
    runs = out / "runs"
    # a torch run, just started; then in the middle of Brian2 runs at dt 0.1 and 0.01 ms (the torch run at that
    # dt has just been written; Brian2's run follows it)
    for marker, delay in ((runs / "event-none.h5", 0.0), (runs / "torch-dt0.1-none.h5", 0.3),
                          (runs / "torch-dt0.01-none.h5", 0.5)):
        rc, err = _interrupt_when(_start(*args), marker, delay)
        assert rc == 130, err
        assert _last_line(err).startswith(hint), err
        assert "Traceback" not in err and "IndexError" not in err and "Simulation stop" not in err, err
        assert not (out / "build").exists(), "the Brian2 build directories were left behind"
    p = run_cli(*args)
    assert p.returncode == 0, p.stderr
    assert (out / "report.md").exists() and "Verification report" in p.stdout


def test_an_interrupt_swallowed_by_a_finaliser_still_ends_the_command_with_130(monkeypatch, capsys):
    """SIGINT landing in a ``__del__`` or weakref callback is swallowed by Python (it prints a traceback and
    goes on): the CLI raises it again, so the command stops and reports the interrupt instead of exiting 0."""
    from eventsnn import cli

    class Finaliser:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)  # the handler runs here, inside __del__

    ran_on = []

    def command(a):
        a.resume_hint = "X"
        Finaliser()
        for i in range(2_000_000):  # the re-raised interrupt lands here
            ran_on.append(i) if i % 500_000 == 0 else None

    monkeypatch.setattr(cli, "cmd_data_info", command)
    before = signal.getsignal(signal.SIGINT), sys.unraisablehook
    assert cli.main(["data", "info", "x.h5"]) == 130
    assert "eventsnn: interrupted; resume with: X" in capsys.readouterr().err
    assert len(ran_on) < 4  # stopped in the loop, not after it
    assert (signal.getsignal(signal.SIGINT), sys.unraisablehook) == before  # the caller's handlers are back


def test_an_interrupt_that_compiled_code_wraps_still_ends_the_command_with_130(monkeypatch, capsys):
    """Ctrl-C landing while numba's dispatcher (or another C extension) returns comes back as a SystemError
    ("... returned a result with an exception set") caused by the KeyboardInterrupt: still the interrupt, exit 130,
    not an internal error."""
    from eventsnn import cli

    def command(a):
        a.resume_hint = "X"
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as k:
            raise SystemError("CPUDispatcher(<function f>) returned a result with an exception set") from k

    monkeypatch.setattr(cli, "cmd_data_info", command)
    assert cli.main(["data", "info", "x.h5"]) == 130
    err = capsys.readouterr().err
    assert "eventsnn: interrupted; resume with: X" in err and "internal error" not in err

    def bug(a):
        raise SystemError("a real bug")

    monkeypatch.setattr(cli, "cmd_data_info", bug)
    assert cli.main(["data", "info", "x.h5"]) == 1
    assert "internal error SystemError: a real bug" in capsys.readouterr().err


def test_importing_brian2_through_eventsnn_leaves_ctrl_c_to_python():
    """Brian2's import replaces the SIGINT handler with one that makes Ctrl-C stop ``Network.run`` early (the run
    then looks finished); eventsnn takes it out again."""
    # the handler before Brian2's import is put back: Python's default, or SIG_IGN where the shell that started
    # the tests ignores SIGINT (a background job)
    code = ("import signal\n"
            "before = signal.getsignal(signal.SIGINT)\n"
            "import brian2\n"
            "assert signal.getsignal(signal.SIGINT) is not before\n"
            "from eventsnn.bridge.engines.brian2 import import_brian2\n"
            "b2 = import_brian2()\n"
            "assert signal.getsignal(signal.SIGINT) == before, signal.getsignal(signal.SIGINT)\n"
            "assert b2.prefs.core.stop_on_keyboard_interrupt is False\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
