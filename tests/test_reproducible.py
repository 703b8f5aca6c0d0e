"""Same seed, same bits, on any machine: training does not depend on the number of threads (torch's, numba's) or
of cores. It did: numba's parallel weight gradient summed one partial sum per thread (so a 2-core and an 8-core
machine rounded differently), and numba's OpenMP layer reset torch's thread count to the number of cores."""
import json
import os
import subprocess
import sys

_RUN = r"""
import hashlib, json, sys
import torch
torch.set_num_threads(int(sys.argv[1]))
import numba
import eventsnn
from eventsnn.data.datasets import make_polychrony
m = eventsnn.train(make_polychrony(samples=120, seed=1), {"delays": "axonal", "recurrent": True, "epochs": 2,
                   "hidden": [16], "batch_size": 16, "seed": 0})
h = hashlib.sha256()
for k, v in sorted(m.model.state_dict().items()):
    h.update(k.encode() + v.detach().numpy().tobytes())
hist = [{k: v for k, v in r.items() if k != "seconds"} for r in m.history]
print(json.dumps({"weights": h.hexdigest(), "history": hist, "torch_threads_after": torch.get_num_threads(),
                  "numba_threads": numba.config.NUMBA_NUM_THREADS}))
"""


def _train(torch_threads: int, cores: int) -> dict:
    env = dict(os.environ, EVENTSNN_PROGRESS="0", NUMBA_NUM_THREADS=str(cores), OMP_NUM_THREADS=str(cores))
    p = subprocess.run([sys.executable, "-c", _RUN, str(torch_threads)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_training_gives_the_same_bits_with_1_and_2_threads_on_1_and_8_core_machines():
    one = _train(1, 1)           # one thread, a one-core machine
    two = _train(2, 8)           # two threads, numba sized for an 8-core machine
    assert two["numba_threads"] == 8
    assert one["history"] == two["history"]  # losses, accuracies, spike rates: every bit
    assert one["weights"] == two["weights"]
    assert (one["torch_threads_after"], two["torch_threads_after"]) == (1, 2)  # numba left torch's setting alone
