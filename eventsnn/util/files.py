"""Safe file handling: inputs that must exist, outputs that must not touch them, atomic writes, locks.

Writers go through :func:`atomic_path` (a temporary file next to the
target, renamed on success, removed on any error), so a crash never leaves a
half-written file. Temporary files and build directories carry the writer's
PID in their name (``.NAME.PID.XXXX.tmp``, ``.eventsnn_build_PID``); those of
processes that no longer exist (a ``kill -9``) are removed by the next writer
in the same place. Outputs get the permissions the user's umask gives a new
file (``mkstemp`` alone would make them 0600). :func:`check_output` refuses,
before any work, an output that would overwrite or lie inside an input, and
outputs that cannot be written; :func:`dir_lock` stops two processes from
sharing one output directory.
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from eventsnn.util.errors import EventsnnError, fail

# ----------------------------------------------------------------------------- processes and stale leftovers

def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_STALE = re.compile(r"^(?:\..+\.(?P<pid>\d+)\.[^.]+\.tmp|\.eventsnn_build_(?P<bpid>\d+))$")


def remove_stale(directory) -> int:
    """Remove temporary files and build directories left in ``directory`` by processes that are gone.

    Returns how many were removed. Only names this module creates are touched.
    """
    d = Path(directory)
    removed = 0
    if not d.is_dir():
        return 0
    for entry in d.iterdir():
        m = _STALE.match(entry.name)
        if not m:
            continue
        pid = int(m.group("pid") or m.group("bpid"))
        if pid == os.getpid() or pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
    return removed


def build_dir_for(parent) -> Path:
    """A build directory for this process under ``parent`` (stale ones of dead processes removed first)."""
    parent = Path(parent)
    remove_stale(parent)
    return parent / f".eventsnn_build_{os.getpid()}"


@contextlib.contextmanager
def process_tempdir():
    """Point :mod:`tempfile` at this process's own directory (``.eventsnn_build_PID`` in the system temporary
    directory) for the block. Brian2 writes ``brian_debug_*.log`` and ``brian_script_*.py`` there when it is
    imported and deletes them when the process ends normally; a killed process leaves them behind, and the next
    eventsnn process removes the directory of the dead one (:func:`remove_stale`). An empty directory is removed
    at exit."""

    real = tempfile.gettempdir()
    d = build_dir_for(real)
    d.mkdir(exist_ok=True)
    atexit.register(_rmdir_quietly, d)
    before = tempfile.tempdir
    tempfile.tempdir = str(d)
    try:
        yield d
    finally:
        tempfile.tempdir = before


def _rmdir_quietly(d: Path) -> None:
    try:
        d.rmdir()
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    The result has the permissions of a new file under the current umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
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


# ----------------------------------------------------------------------------- inputs and outputs

_GUARDED = None


def _guarded_file_class():
    """``h5py.File`` whose ``with`` block turns h5py's own errors on damaged content (``OSError`` "bad heap free
    list", ``KeyError`` "Unable to synchronously open attribute ...", ``RuntimeError``) into one clean
    :class:`EventsnnError` naming the file -- whatever reader is inside the block."""
    global _GUARDED
    if _GUARDED is None:
        import h5py

        class GuardedFile(h5py.File):
            eventsnn_path = None

            def __exit__(self, etype, value, tb):
                super().__exit__(etype, value, tb)
                if etype is not None and issubclass(etype, (OSError, RuntimeError, KeyError)) \
                        and not issubclass(etype, EventsnnError):
                    what = "an expected item is missing or unreadable" if issubclass(etype, KeyError) else \
                        "its contents cannot be read"
                    raise fail(self.eventsnn_path, f"damaged HDF5 file: {what}") from None
                return False

        _GUARDED = GuardedFile
    return _GUARDED


def open_h5(path, expected_format: str | None = None):
    """Open an HDF5 file for reading, with a clear error if missing or corrupt (also for damage found while
    reading inside its ``with`` block).

    If ``expected_format`` is given, the root attribute ``format`` must equal it.
    """
    p = Path(path)
    if not p.exists():
        raise fail(path, "no such file")
    if p.is_dir():
        raise fail(path, "is a directory, expected an HDF5 file")
    try:
        f = _guarded_file_class()(p, "r")
    except OSError:
        raise fail(path, "not a readable HDF5 file (damaged, truncated or another format)") from None
    f.eventsnn_path = str(path)
    if expected_format is not None:
        try:
            fmt = f.attrs.get("format")
        except (OSError, RuntimeError, KeyError):
            f.close()
            raise fail(path, "damaged HDF5 file: its attributes cannot be read") from None
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != expected_format:
            f.close()
            raise fail(path, f"format attribute is {fmt!r}, expected {expected_format!r}")
    return f


def check_input(path, flag: str, kind: str = "file") -> Path:
    """An input that must exist: a ``file`` or a ``dir``; error names the flag and the path."""
    p = Path(path)
    if not p.exists():
        raise fail(p, f"no such {'directory' if kind == 'dir' else 'file'} ({flag})")
    if kind == "file" and p.is_dir():
        raise fail(p, f"is a directory, expected a file ({flag})")
    if kind == "dir" and not p.is_dir():
        raise fail(p, f"is not a directory ({flag})")
    return p


def _inside(p: Path, parent: Path) -> bool:
    return p == parent or parent in p.parents


def check_output(path, flag: str = "--out", inputs=(), kind: str = "file") -> Path:
    """Refuse an output that cannot be written or would touch an input, before any work is done.

    ``kind="file"``: the output is one file (it may exist and is then replaced, unless it is an input);
    ``kind="dir"``: a directory that is created if needed. ``inputs``: paths (files or directories) this
    command reads; the output may neither equal nor lie inside one of them, and a directory output may
    not contain an input file it would overwrite.
    """
    p = Path(path)
    if str(path) == "":
        raise fail(flag, "empty path")
    rp = p.resolve()
    for i in inputs:
        if i is None:
            continue
        ri = Path(i).resolve()
        if _inside(rp, ri):
            what = "is" if rp == ri else "lies inside"
            raise fail(flag, f"{p} {what} the input {i}; choose an output outside the inputs")
    if kind == "file":
        if p.is_dir():
            raise fail(flag, f"{p} is a directory; give a file name")
    elif p.exists() and not p.is_dir():
        raise fail(flag, f"{p} exists and is not a directory")
    # the nearest existing ancestor must be a writable directory
    anc = rp if kind == "dir" and rp.exists() else rp.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise fail(flag, f"cannot create {p}: {anc} is a file, not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise fail(flag, f"cannot write {p}: directory {anc} is not writable")
    return p


@contextlib.contextmanager
def dir_lock(directory, what: str = "this output directory"):
    """Hold an exclusive lock on ``directory`` (created if needed) for the duration of the block.

    A second process asking for the same directory fails at once with a clear error instead of
    interleaving its files with the first one's.
    """

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    lock = d / ".eventsnn.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise fail(d, f"{what} is in use by another running eventsnn process (pid {other}); wait for it "
                          "to finish or choose another --out") from None
        try:  # the holder before us removes the file when it finishes: lock the file that is there now
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield d
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still holding it: no lock file is left behind
        os.close(fd)
