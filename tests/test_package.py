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
    for sub in ("eventsnn/bridge/network.py", "eventsnn/bridge/engines/event.py", "eventsnn/validation/verify.py",
                "eventsnn/training/presets/paper-shd.yaml", "eventsnn/training/presets/paper-isi.yaml",
                "eventsnn/training/presets/paper-coincidence.yaml"):
        assert sub in names, sub


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


def test_installs_next_to_pypi_validation_and_both_keep_working(tmp_path):
    """PyPI's ``validation`` (a runtime value-validation library) and eventsnn install into one environment in
    either order; each keeps its files, and uninstalling one leaves the other intact."""
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path / "wheel"), str(ROOT)], capture_output=True, text=True, timeout=600)
    if p.returncode != 0 and "No module named" in p.stderr:
        pytest.skip(f"cannot build a wheel here: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr
    (wheel,) = (tmp_path / "wheel").glob("eventsnn-*.whl")
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    py = str(env / "bin" / "python")

    def pip(*args):
        return subprocess.run([py, "-m", "pip", "-q", "--disable-pip-version-check", *args], capture_output=True,
                              text=True, timeout=600)

    got = pip("install", "validation==0.8.3")
    if got.returncode != 0:
        pytest.skip(f"PyPI not reachable: {got.stderr.strip().splitlines()[-1] if got.stderr.strip() else ''}")
    theirs = "import validation; validation.validate_int(3); print(validation.__file__)"
    ours = ("import importlib.util as u, pathlib; s = u.find_spec('eventsnn'); "
            "d = pathlib.Path(s.origin).parent; print(all((d / f).exists() for f in "
            "['validation/verify.py', 'validation/__init__.py', 'bridge/network.py', 'cli.py']))")

    def check(code, expect=None):
        r = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert r.returncode == 0, r.stderr
        if expect is not None:
            assert r.stdout.strip() == expect
        return r.stdout.strip()

    for first, second in (("validation", "eventsnn"), ("eventsnn", "validation")):
        for pkg in (first, second):
            assert pip("install", "--no-deps", str(wheel) if pkg == "eventsnn" else "validation==0.8.3"
                       ).returncode == 0
        assert "eventsnn" not in check(theirs)  # theirs is theirs
        check(ours, "True")
        assert pip("uninstall", "-y", first).returncode == 0
        if first == "validation":
            check(ours, "True")  # removing PyPI's validation leaves eventsnn whole
        else:
            check(theirs)  # removing eventsnn leaves PyPI's validation working
        assert pip("uninstall", "-y", second).returncode == 0
