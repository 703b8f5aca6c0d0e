"""Strict JSON out: every JSON file and ``--json`` line eventsnn writes goes through :func:`dumps`.

Python's ``json`` writes ``NaN`` and ``Infinity``, which strict readers (``jq``, JavaScript, Go, Rust's serde)
reject. Here a non-finite number becomes ``null``; numpy scalars and arrays become numbers and lists, paths
become strings."""
from __future__ import annotations

import json
import math
from pathlib import PurePath


def _clean(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k) if not isinstance(k, (str, int, float, bool)) and k is not None else k: _clean(v)
                for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, PurePath):
        return str(o)
    if hasattr(o, "tolist") and callable(o.tolist):  # numpy scalars and arrays
        return _clean(o.tolist())
    return o


def _default(o):
    try:
        return _clean(float(o))
    except (TypeError, ValueError):
        return str(o)


def dumps(obj, **kw) -> str:
    """``json.dumps`` that never writes NaN or Infinity (they become ``null``)."""
    return json.dumps(_clean(obj), allow_nan=False, default=_default, **kw)
