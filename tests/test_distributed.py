"""Beyond one process: data-parallel training with torchrun (2 CPU processes, gloo) equals one process up to
reduction order; verification on a real Dask cluster (scheduler + 2 workers on localhost) equals one process."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eventsnn.data.datasets import make_polychrony
from eventsnn.data.events import save_events
from tests.conftest import run_cli


def torchrun(*args, nproc=2):
    env = dict(os.environ, EVENTSNN_PROGRESS="0", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(nproc), "-m", "eventsnn", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def _params(run):
    return torch.load(run / "checkpoint.pt", weights_only=False)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_process_training_equals_one_process_and_resumes(tmp_path):
    tr = tmp_path / "tr.h5"
    save_events(make_polychrony(samples=150, seed=1), tr)
    # 150 samples -> 128 training: batches of 48 leave a last batch of 32 (unequal shards are exact too)
    args = ["--data", tr, "--hidden", "8", "--batch-size", "48", "--learn-taus", "--seed", "4"]
    p = run_cli("train", *args, "--epochs", "3", "--out", tmp_path / "one", "--json")
    assert p.returncode == 0, p.stderr
    p = torchrun("train", *args, "--epochs", "2", "--out", tmp_path / "two", "--json")
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.strip().splitlines()) == 1, "only rank 0 reports"
    p = torchrun("train", "--resume", tmp_path / "two", "--epochs", "3", "--json")
    assert p.returncode == 0, p.stderr
    one, two = _params(tmp_path / "one"), _params(tmp_path / "two")
    assert two["provenance"]["world_size"] == 2 and two["epoch"] == one["epoch"] == 2
    for k, a in one["model"].items():  # learnable delays and taus included
        np.testing.assert_allclose(two["model"][k].numpy(), a.numpy(), rtol=1e-4, atol=1e-4, err_msg=k)
    for ha, hb in zip(one["history"], two["history"], strict=True):
        assert ha["val_acc"] == hb["val_acc"]
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-5)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["provenance"]["world_size"] == 2


@pytest.fixture
def dask_cluster(tmp_path):
    """A real Dask cluster on localhost: ``dask scheduler`` and two ``dask worker`` processes (one thread each)."""
    import shutil as _shutil
    import time as _time

    dask_cli = Path(sys.executable).with_name("dask")
    dask_cli = str(dask_cli) if dask_cli.exists() else _shutil.which("dask")
    assert dask_cli, "the dask command (distributed) is a dependency"
    sched_file = tmp_path / "scheduler.json"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched_file)], **quiet)]
    try:
        deadline = _time.time() + 60
        while not sched_file.exists() and _time.time() < deadline:
            _time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            procs.append(subprocess.Popen([dask_cli, "worker", address, "--nthreads", "1", "--no-dashboard",
                                           "--local-directory", str(tmp_path / f"worker{i}")], **quiet))
        from distributed import Client
        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=120)
            workers = set(c.scheduler_info()["workers"])
        yield address, workers
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_verify_on_a_dask_cluster_equals_one_process(dask_cluster, tmp_path):
    """verify --scheduler: every run is a task of the cluster's workers; the runs equal a one-process verify."""
    from eventsnn.bridge import save_network
    from eventsnn.data.events import save_events
    from eventsnn.bridge.runfile import load_run
    from tests.conftest import assert_runs_identical, random_events, random_network

    address, workers = dask_cluster
    save_network(random_network(11), tmp_path / "net.h5")
    save_events(random_events(11, n_samples=6), tmp_path / "ev.h5")
    args = [tmp_path / "net.h5", "--data", tmp_path / "ev.h5", "--dt", "1,0.5", "--probes", "reverse", "--json",
            "--keep-runs"]
    p = run_cli("verify", *args, "--scheduler", address, "--out", tmp_path / "cluster")
    assert p.returncode == 0, p.stderr
    p = run_cli("verify", *args, "--out", tmp_path / "local")
    assert p.returncode == 0, p.stderr
    names = sorted(f.name for f in (tmp_path / "local" / "runs").glob("*.h5"))
    assert len(names) >= 6 and names == sorted(f.name for f in (tmp_path / "cluster" / "runs").glob("*.h5"))
    ran_on = set()
    for name in names:
        a, b = load_run(tmp_path / "cluster" / "runs" / name), load_run(tmp_path / "local" / "runs" / name)
        assert_runs_identical(a, b)
        assert a.attrs["worker"] in workers and b.attrs["worker"] == ""
        ran_on.add(a.attrs["worker"])
    assert ran_on <= workers and len(ran_on) >= 1
    rep_c = json.loads((tmp_path / "cluster" / "report.json").read_text())
    rep_l = json.loads((tmp_path / "local" / "report.json").read_text())
    assert [r["accuracy"] for r in rep_c["runs"]] == [r["accuracy"] for r in rep_l["runs"]]


def test_scheduler_flag_errors_name_the_flag(tmp_path):
    for bad, msg in (("localhost:8786", "expected tcp://HOST:PORT"), ("tcp://127.0.0.1:9", "cannot connect")):
        p = run_cli("sweep", "examples/paper/coincidence_overlap.yaml", "--scheduler", bad, "--out", tmp_path / "o",
                    cwd=Path(__file__).resolve().parents[1], timeout=120)
        assert p.returncode == 2 and "--scheduler" in p.stderr and msg in p.stderr, p.stderr
        assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or shutil.which("taskset") is None,
                    reason="no CPU affinity or no taskset on this machine")
def test_workers_share_out_the_cores_the_process_was_given_not_the_machines():
    """Under taskset (or a Slurm allocation, a container's cpuset) threads are shared out over the cores given:
    two sweeps pinned to a core each must not each start a thread per core of the machine."""
    code = "from eventsnn.util.dask_pool import usable_cores; print(usable_cores())"
    core = sorted(os.sched_getaffinity(0))[0]
    p = subprocess.run(["taskset", "-c", str(core), sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "1"
