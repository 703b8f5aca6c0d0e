"""What a new user meets in their first hour: defaults that do not alarm, and no silent acceptance of data or
settings that do not fit (a one-line error or notice instead)."""
import json

import numpy as np

from eventsnn.bridge import save_network
from eventsnn.data.events import Events, save_events
from eventsnn.bridge.runfile import LayerSpikes, RunResult
from eventsnn.validation.compare import compare_runs, format_comparison
from eventsnn.validation.verify import convergence_orders
from tests.conftest import random_events, random_network, run_cli


def _run(engine, dt, times):
    layer = LayerSpikes(np.zeros(len(times), np.int64), np.zeros(len(times), np.int64),
                        np.zeros(len(times), np.int64), np.asarray(times, float))
    return RunResult(engine, dt, 1.0, "exact", "exact", "cpu", "max", [layer], np.ones((1, 2, 2)),
                     np.array([0]), np.array([0]), np.arange(1))


def test_compare_default_tolerance_is_the_coarser_dt_but_at_least_a_tenth_of_a_ms():
    """Against the exact run (dt 0) a 0.01 ms run is matched within 0.1 ms, not 0.01 ms (spikes one or two
    steps apart are not "missing" and "extra"); the tolerance is printed."""
    exact, fine = _run("event", 0.0, [10.0, 20.0, 30.0]), _run("brian2", 0.01, [10.03, 20.0, 30.08])
    c = compare_runs(exact, fine)
    assert c["tolerance_ms"] == 0.1 and c["tolerance_default"]
    assert c["layers"][0]["matched"] == 3 and c["layers"][0]["missing"] == 0
    assert "spike matching tolerance: 0.1 ms (default" in format_comparison(c)
    assert compare_runs(_run("torch", 1.0, [10.0]), _run("brian2", 1.0, [10.0]))["tolerance_ms"] == 1.0
    c = compare_runs(exact, fine, 0.01)  # an explicit tolerance is used as given
    assert c["tolerance_ms"] == 0.01 and not c["tolerance_default"] and c["layers"][0]["matched"] == 1


def _conv_run(dt, median):
    return {"engine": "brian2", "transform": None, "dt_ms": dt,
            "vs_exact": {"layers": [{"median_abs_shift_ms": median}]}}


def test_convergence_order_is_fitted_only_over_two_dts_finer_than_the_training_dt():
    one_fine = convergence_orders([_conv_run(1.0, 0.9), _conv_run(0.1, 0.05)], 1.0)
    assert one_fine[0]["order"] is None and not one_fine[0]["fitted"]  # no two-point line through the train dt
    assert len(one_fine[0]["points"]) == 2  # still plotted
    two_fine = convergence_orders([_conv_run(1.0, 5.0), _conv_run(0.1, 0.1), _conv_run(0.01, 0.01)], 1.0)
    assert two_fine[0]["fitted"] and two_fine[0]["fit_dts_ms"] == [0.01, 0.1]
    assert abs(two_fine[0]["order"] - 1.0) < 1e-9  # the training-dt point (far off the line) is left out


def _four_class_events(n=5):
    ev = random_events(5, n_samples=n)
    labels = np.array([0, 1, 2, 3, 3][:n])
    return Events(ev.times, ev.units, ev.offsets, labels, ev.n_units, ev.duration_s, 4).validate()


def test_simulate_and_verify_refuse_labels_the_network_cannot_output(tmp_path):
    net = random_network(5)  # 3 outputs
    save_network(net, tmp_path / "net.h5")
    save_events(_four_class_events(), tmp_path / "ev4.h5")
    p = run_cli("simulate", tmp_path / "net.h5", "--data", tmp_path / "ev4.h5", "--engine", "torch", "--out",
                tmp_path / "r.h5")
    assert p.returncode == 2 and "ev4.h5: labels go up to 3 but the network has 3 outputs" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.h5").exists()
    p = run_cli("verify", tmp_path / "net.h5", "--data", tmp_path / "ev4.h5", "--dt", "1", "--out", tmp_path / "v")
    assert p.returncode == 2 and "labels go up to 3" in p.stderr and not (tmp_path / "v" / "runs").exists()


def test_verify_into_a_directory_of_another_verification_is_refused(tmp_path):
    net, ev = random_network(11), random_events(11, n_samples=4)
    save_network(net, tmp_path / "net.h5")
    save_events(ev, tmp_path / "ev.h5")
    args = ["verify", tmp_path / "net.h5", "--data", tmp_path / "ev.h5", "--dt", "1", "--probes", "", "--no-event",
            "--keep-runs", "--out", tmp_path / "v"]
    assert run_cli(*args, "--first", "3").returncode == 0
    report = (tmp_path / "v" / "report.json").read_text()
    p = run_cli(*args, "--first", "4")
    assert p.returncode == 2 and "--first (3 there, 4 now)" in p.stderr
    assert (tmp_path / "v" / "report.json").read_text() == report  # untouched
    p = run_cli(*args, "--first", "3", "--json")  # the same settings: resumed (every run reused)
    assert p.returncode == 0 and json.loads(p.stdout)["wall_s"]["runs_computed"] == 0


def test_resume_with_fewer_epochs_than_already_run_says_so(tmp_path):
    from eventsnn.data.datasets import make_polychrony
    save_events(make_polychrony(samples=60, seed=1), tmp_path / "tr.h5")
    assert run_cli("train", "--data", tmp_path / "tr.h5", "--epochs", "2", "--hidden", "4", "--out",
                   tmp_path / "run").returncode == 0
    p = run_cli("train", "--resume", tmp_path / "run", "--epochs", "2")
    assert p.returncode == 2 and "already run 2 epochs; give a larger --epochs" in p.stderr
    p = run_cli("train", "--resume", tmp_path / "run")
    assert p.returncode == 0 and "is finished (ran all its 2 epochs); nothing to train" in p.stderr


def test_api_warnings_are_one_clean_line_each_and_never_point_at_a_deleted_directory():
    """Through the Python API: warnings read ``eventsnn: warning: ...`` (no ``file:line: EventsnnWarning``),
    each message once, and the "still improving" hint of a run in a temporary directory does not offer to resume
    that directory (it is gone when train returns)."""
    import subprocess
    import sys
    code = ("import eventsnn\n"
            "from eventsnn.data.datasets import make_polychrony\n"
            "m = eventsnn.train(make_polychrony(samples=80, seed=1), epochs=2, hidden=[4],\n"
            "                   test=make_polychrony(samples=20, seed=2))\n"
            "print('summary', m.summary['epochs_run'], m.summary.get('still_improving'))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert lines and all(x.startswith("eventsnn: warning: ") for x in lines), p.stderr
    assert "EventsnnWarning" not in p.stderr and len(set(lines)) == len(lines)
    assert "--resume" not in p.stderr
    if "True" in p.stdout.split():  # the run ended while still improving: the hint says what to do instead
        assert "train again with epochs=4" in p.stderr


def _sub(parser, *names):
    for n in names:
        parser = next(a for a in parser._actions if getattr(a, "choices", None) and n in a.choices).choices[n]
    return parser


def test_help_shows_defaults_of_zero_valued_flags_and_names_every_engine_and_format():
    from eventsnn.cli import build_parser
    p = build_parser()
    flat = lambda *names: " ".join(_sub(p, *names).format_help().split())  # noqa: E731
    make = flat("data", "make")
    for flag, shown in (("--seed SEED", "(default: 0)"), ("--task-seed TASK_SEED", "(default: 0)"),
                        ("--jitter-ms JITTER_MS", "(default: 0.0)")):
        assert shown in make.rsplit(flag, 1)[1].split(" --")[0], flag
    assert "(default: 0)" in flat("data", "transform").rsplit("--seed SEED", 1)[1].split(" --")[0]
    assert "--format brian2: which sample (default: 0)" in flat("export")
    prepare = flat("data", "prepare")
    assert "(default: 0)" in prepare.rsplit("--seed SEED", 1)[1].split(" --")[0]
    assert "1%/2000" in prepare and "%%" not in prepare
    top = " ".join(p.format_help().split())
    assert "event-driven engine" in top and "NIR" in top and "Brian2 script" in top
