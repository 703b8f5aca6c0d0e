"""User-facing errors and atomic file writing.

Every problem with a user's input (a file, a flag, a value) is raised as
:class:`EventsnnError`; the CLI prints its message on one line and exits with
code 2. Writers go through :func:`atomic_path` so that a crash never leaves a
half-written file behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


class EventsnnError(ValueError):
    """A problem with user input; the message names the file and the problem."""


def fail(path, problem: str) -> EventsnnError:
    """Build an error that names the file (if any) and the problem."""
    if path is None:
        return EventsnnError(problem)
    return EventsnnError(f"{path}: {problem}")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def open_h5(path, expected_format: str | None = None):
    """Open an HDF5 file for reading, with a clear error if missing or corrupt.

    If ``expected_format`` is given, the root attribute ``format`` must equal it.
    """
    import h5py

    p = Path(path)
    if not p.exists():
        raise fail(path, "no such file")
    if p.is_dir():
        raise fail(path, "is a directory, expected an HDF5 file")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise fail(path, f"not a readable HDF5 file ({str(e).splitlines()[0]})") from None
    if expected_format is not None:
        fmt = f.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != expected_format:
            f.close()
            raise fail(path, f"format attribute is {fmt!r}, expected {expected_format!r}")
    return f
