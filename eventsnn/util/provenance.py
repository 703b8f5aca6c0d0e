"""What produced a file: package versions, Python, platform, the source commit, seeds.

Recorded in every run file, checkpoint, training summary, network file and
verification report, so a number can always be traced to the software that
made it. No timestamps: the same inputs and seed still give identical files.
"""
from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("eventsnn", "torch", "brian2", "numpy", "scipy", "h5py")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def git_commit() -> str | None:
    """The commit of the eventsnn source tree (``+dirty`` when it has local changes), if it is a git checkout."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def _static() -> dict:
    out = {name: _version(name) for name in PACKAGES}
    out["python"] = sys.version.split()[0]
    out["platform"] = platform.platform()
    out["git_commit"] = git_commit()
    return out


def provenance(**seeds) -> dict:
    """Versions, platform and commit, plus any seeds given (``provenance(seed=0)``)."""
    out = dict(_static())
    for k, v in seeds.items():
        if v is not None:
            out[k] = v
    return out


def versions_line() -> str:
    """One line for ``eventsnn --version``."""
    s = _static()
    parts = [f"eventsnn {s['eventsnn']}"] + [f"{k} {s[k]}" for k in PACKAGES[1:] if s[k]]
    parts.append(f"python {s['python']}")
    if s["git_commit"]:
        parts.append(f"commit {s['git_commit'][:12]}")
    return ", ".join(parts)
