"""The error contract: one exception for every problem with a user's input, one warning class.

Every problem with a user's input (a file, a flag, a value) is raised as
:class:`EventsnnError`; the CLI prints its message on one line (and, with
``--json``, ``{"error": ...}`` on stdout) and exits with code 2. Messages name
the file or flag and say what to do. Safe file handling (atomic writes, locks,
input/output checks) is in :mod:`eventsnn.util.files`.
"""
from __future__ import annotations


class EventsnnError(ValueError):
    """A problem with user input; the message names the file or flag and the problem."""


class EventsnnWarning(UserWarning):
    """Something the user should know about their data or run (merged spikes, unfinished training, ...)."""


def fail(path, problem: str) -> EventsnnError:
    """Build an error that names the file or flag (if any) and the problem."""
    if path is None:
        return EventsnnError(problem)
    return EventsnnError(f"{path}: {problem}")
