import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

os.environ.setdefault("EVENTSNN_PROGRESS", "0")
if "EVENTSNN_CACHE_DIR" not in os.environ:  # numba kernels compile into a per-run cache (subprocesses share it)
    os.environ["EVENTSNN_CACHE_DIR"] = tempfile.mkdtemp(prefix="eventsnn-test-cache-")
    atexit.register(shutil.rmtree, os.environ["EVENTSNN_CACHE_DIR"], True)

from eventsnn.bridge.network import Layer, Network  # noqa: E402
from eventsnn.data.events import Events  # noqa: E402


def random_network(seed=0, n_in=8, sizes=(6, 5), n_out=3, dt_ms=1.0, readout="max", max_delay=5.0,
                   refractory=True, equal_taus=True):
    """A random network exercising everything: axonal, synaptic and recurrent delays, both resets,
    per-neuron taus (some equal), thresholds and refractory periods, a readout."""
    rng = np.random.default_rng(seed)
    layers, n_pre = [], n_in
    for li, n in enumerate(sizes):
        tm = rng.uniform(5, 20, n)
        ts = rng.uniform(2, 10, n)
        if equal_taus:
            ts[0] = tm[0]  # the equal-tau limit
        layers.append(Layer(
            "lif", n, tm, ts, rng.normal(0.9, 0.7, (n_pre, n)), reset="zero" if li % 2 == 0 else "subtract",
            threshold=rng.uniform(0.8, 1.2, n),
            refractory_ms=rng.choice([0.0, 0.0, 2.0, 3.0], n) if refractory else None,
            ff_delay_ms=rng.uniform(0, max_delay, n_pre) if li % 2 == 0 else rng.uniform(0, max_delay, (n_pre, n)),
            rec_weight=rng.normal(0, 0.4, (n, n)) if li == 0 else None,
            rec_delay_ms=rng.uniform(0, max_delay, (n, n)) if li == 0 else None))
        n_pre = n
    layers.append(Layer("li", n_out, rng.uniform(5, 20, n_out), rng.uniform(2, 10, n_out),
                        rng.normal(0, 1, (n_pre, n_out))))
    return Network(dt_ms, n_in, layers, readout).validate()


def random_events(seed=0, n_samples=5, n_units=8, duration_s=0.05, spikes=60, n_classes=3):
    rng = np.random.default_rng(seed + 1000)
    tl = [rng.uniform(0, duration_s, spikes) for _ in range(n_samples)]
    ul = [rng.integers(0, n_units, spikes) for _ in range(n_samples)]
    return Events.from_lists(tl, ul, rng.integers(0, n_classes, n_samples), n_units, duration_s, n_classes).validate()


def run_cli(*args, cwd=None, timeout=900):
    """Run the eventsnn CLI in a subprocess; return CompletedProcess."""
    env = dict(os.environ, EVENTSNN_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", "eventsnn", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def assert_runs_identical(a, b, trace_rtol=1e-9):
    assert len(a.layers) == len(b.layers)
    for La, Lb in zip(a.layers, b.layers):
        assert len(La.step) > 0, "test network too quiet to be a test"
        np.testing.assert_array_equal(La.sample, Lb.sample)
        np.testing.assert_array_equal(La.unit, Lb.unit)
        np.testing.assert_array_equal(La.step, Lb.step)
    scale = np.abs(a.trace).max()
    assert np.abs(a.trace - b.trace).max() <= trace_rtol * scale
    np.testing.assert_array_equal(a.prediction, b.prediction)


def write_mini_shd(path, times, units, labels):
    """A file in the official SHD layout: float16 times, uint16 units, uint8 labels, no format attribute."""
    import h5py

    with h5py.File(path, "w") as h:
        t = h.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float16))
        u = h.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (ti, ui) in enumerate(zip(times, units)):
            t[i] = np.asarray(ti, np.float16)
            u[i] = np.asarray(ui, np.uint16)
        h.create_dataset("labels", data=np.asarray(labels, np.uint8))
        h.create_dataset("extra/speaker", data=np.arange(len(labels)))
    return path


@pytest.fixture
def build_dir(tmp_path):
    d = tmp_path / "brian2_build"
    d.mkdir()
    return d


# The quick tier: `pytest -m quick` -- every command touched at least once (data make/info/transform/prepare,
# train, export h5/nir/brian2, import-nir, simulate torch/brian2/event, compare, verify, demo, sweep), the
# bridge's spike-for-spike proof, Ctrl-C, reproducibility across threads; minutes on 2 cores. The full suite
# (`pytest`) stays the reference. Listed here by name so that the test files keep their own markers.
QUICK = {
    "test_data.py::test_cli_data_make_and_info[polychrony]",
    "test_data.py::test_cli_transform_reverse_roundtrip",
    "test_data.py::test_reverse_window_and_full_hand_computed",
    "test_paper.py::test_data_prepare_cli_writes_three_files_and_refuses_bad_input",
    "test_paper.py::test_sweep_config_errors_are_one_line_and_write_nothing[<lambda>-data.task",
    "test_core.py::test_hand_computed_single_neuron",
    "test_core.py::test_binning_rule_floor_shift_dedup_and_duration",
    "test_core.py::test_torch_equals_brian2_numpy_every_spike",
    "test_core.py::test_fine_dt_exact_delays_and_inputs_via_cli",
    "test_event.py::test_one_spike_hand_computed",
    "test_event.py::test_cli_simulate_event_and_its_errors",
    "test_nir.py::test_cli_export_nir_and_import_nir",
    "test_brian2_model.py::test_exported_script_readout_trace_and_prediction_equal_simulate",
    "test_train.py::test_train_bad_inputs",
    "test_train.py::test_delay_gradient_matches_finite_differences",
    "test_validation.py::test_cli_compare_json",
    "test_validation.py::test_match_spikes_hand_made",
    "test_validation.py::test_verify_report_schema_and_accuracy_recomputed",
    "test_errors.py::test_subprocess_errors_one_line_and_flags_anywhere",
    "test_api.py::test_import_is_light_and_help_lists_the_api",
    "test_first_hour.py::*",
    "test_reproducible.py::*",
    "test_interrupt.py::test_an_interrupt_swallowed_by_a_finaliser_still_ends_the_command_with_130",
    "test_interrupt.py::test_importing_brian2_through_eventsnn_leaves_ctrl_c_to_python",
}
# (an entry with "[" is a prefix of parametrized test ids: only those cases)
# cases of the in-process bad-input matrix in the quick tier: the ones whose command line starts with these
QUICK_MATRIX_COMMANDS = ("demo", "sweep", "export")


def pytest_collection_modifyitems(config, items):
    for item in items:
        file_, _, name = item.nodeid.rpartition("/")[2].partition("::")
        base = name.split("[")[0]
        if f"{file_}::{base}" in QUICK or f"{file_}::*" in QUICK or \
                any("[" in q and f"{file_}::{name}".startswith(q) for q in QUICK):
            item.add_marker(pytest.mark.quick)
        elif base == "test_bad_input_matrix" and "[" in name and \
                name.split("[", 1)[1].startswith(QUICK_MATRIX_COMMANDS):
            item.add_marker(pytest.mark.quick)
