"""numba's ``njit`` with compiled code cached in the user's cache directory, not in the installed package.

numba's ``cache=True`` writes next to the source file (``__pycache__`` inside site-packages), which fails or
litters on a read-only or shared install. Kernels decorated with :func:`njit` cache under
:func:`cache_dir` instead: ``$EVENTSNN_CACHE_DIR/numba`` when set (tests point it at a temporary directory),
else ``$NUMBA_CACHE_DIR`` when set (numba's own setting), else ``$XDG_CACHE_HOME/eventsnn/numba`` (default
``~/.cache/eventsnn/numba``). A first run compiles (seconds); every later process loads the machine code.
"""
from __future__ import annotations

import os
from pathlib import Path

import numba
from numba.core import config


def cache_dir() -> Path:
    """Where eventsnn's numba kernels are cached (see the module docstring for the order of precedence)."""
    if os.environ.get("EVENTSNN_CACHE_DIR"):
        return Path(os.environ["EVENTSNN_CACHE_DIR"]) / "numba"
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "eventsnn" / "numba"


def njit(*args, **kwargs):
    """``numba.njit(cache=True, ...)`` caching under :func:`cache_dir`; usable bare (``@njit``) or with options.

    numba picks a function's cache location when it is decorated, from ``numba.config.CACHE_DIR``; that setting
    is pointed at :func:`cache_dir` for the decoration only, so other libraries' numba caches are left alone.
    Where the directory cannot be created, numba falls back to its own locations.
    """
    def decorate(f):
        before = config.CACHE_DIR
        d = cache_dir()
        try:
            d.mkdir(parents=True, exist_ok=True)
            config.CACHE_DIR = str(d)
        except OSError:
            pass
        try:
            return numba.njit(cache=True, **kwargs)(f)
        finally:
            config.CACHE_DIR = before

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return decorate(args[0])
    return decorate


jit = njit(nogil=True)  # the default for eventsnn's kernels: cached, and releasing the GIL for threads
