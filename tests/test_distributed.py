"""Data-parallel training with torchrun (2 CPU processes, gloo) equals one process up to reduction order."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from eventsnn.datasets import make_polychrony
from eventsnn.events import save_events
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
