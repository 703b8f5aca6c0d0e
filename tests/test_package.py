"""The install is one import package: nothing lands at the top level of site-packages but ``eventsnn``."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_only_the_eventsnn_package(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    if p.returncode != 0 and "No module named" in p.stderr:
        pytest.skip(f"cannot build a wheel here: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr
    (wheel,) = tmp_path.glob("eventsnn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"eventsnn", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    for sub in ("eventsnn/bridge/network.py", "eventsnn/bridge/event_engine.py", "eventsnn/validation/verify.py"):
        assert sub in names


def test_subpackages_import_under_eventsnn_and_no_top_level_bridge_or_validation_is_provided():
    import importlib.util

    import eventsnn.bridge
    import eventsnn.validation.verify  # noqa: F401
    assert Path(eventsnn.bridge.__file__).parent.name == "bridge"
    # run from outside the source tree, the names "bridge" and "validation" are not ours
    code = ("import importlib.util as u, eventsnn.bridge; "
            "print(all(s is None or 'site-packages' in str(s.origin) for s in map(u.find_spec, ['bridge', 'validation'])))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "True", p.stderr
    assert importlib.util.find_spec("eventsnn.validation") is not None
