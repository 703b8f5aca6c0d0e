"""The error contract: one exception for every problem with a user's input, one warning class.

Every problem with a user's input (a file, a flag, a value) is raised as
:class:`EventsnnError`; the CLI prints its message on one line (and, with
``--json``, ``{"error": ...}`` on stdout) and exits with code 2. Messages name
the file or flag and say what to do. Safe file handling (atomic writes, locks,
input/output checks) is in :mod:`eventsnn.util.files`.
"""
from __future__ import annotations

import functools
import warnings


class EventsnnError(ValueError):
    """A problem with user input; the message names the file or flag and the problem."""


class EventsnnWarning(UserWarning):
    """Something the user should know about their data or run (merged spikes, unfinished training, ...)."""


_SHOWN_WARNINGS: set = set()


def _format_warning(message, category, filename, lineno, line=None, _python_format=None):
    """Python's warning format, except for :class:`EventsnnWarning`: one clean line, without the file and line
    of the library code that raised it (which says nothing to a user of the Python API), and each message once
    (training, torch and Brian2 each report the same binning of the same data)."""
    if isinstance(category, type) and issubclass(category, EventsnnWarning):
        text = " ".join(str(message).split())
        if text in _SHOWN_WARNINGS:
            return ""
        _SHOWN_WARNINGS.add(text)
        return f"eventsnn: warning: {text}\n"
    return _python_format(message, category, filename, lineno, line)


def _install_warning_format() -> None:
    if getattr(warnings.formatwarning, "_eventsnn", False):
        return
    fmt = functools.partial(_format_warning, _python_format=warnings.formatwarning)
    fmt._eventsnn = True
    warnings.formatwarning = fmt


_install_warning_format()


class MergedSpikesWarning(EventsnnWarning):
    """Binning to a binary raster merged spikes of one unit in one step; carries the counts, so that the parts of
    a run computed in several processes can be reported as one warning with the totals."""

    def __init__(self, merged: int, n_spikes: int, dt_ms: float, what: str = "input"):
        self.merged, self.n_spikes, self.dt_ms, self.what = int(merged), int(n_spikes), float(dt_ms), what
        super().__init__(f"binning {what} spikes at dt = {dt_ms:g} ms merged {merged} of {n_spikes} spikes "
                         f"({100 * merged / max(n_spikes, 1):.2f}%) that share a unit and a step; the binary raster "
                         "keeps one of each")

    def __reduce__(self):  # pickles (it travels back from Dask workers)
        return type(self), (self.merged, self.n_spikes, self.dt_ms, self.what)


def fail(path, problem: str) -> EventsnnError:
    """Build an error that names the file or flag (if any) and the problem."""
    if path is None:
        return EventsnnError(problem)
    return EventsnnError(f"{path}: {problem}")
