"""Progress bars on stderr (tqdm), silenced when not on a terminal unless forced."""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_bar(total=None, desc=None, disable=False, **kw):
    """A tqdm bar on stderr. ``EVENTSNN_PROGRESS=0`` turns all bars off."""
    if os.environ.get("EVENTSNN_PROGRESS", "1") == "0":
        disable = True
    return tqdm(total=total, desc=desc, disable=disable, file=sys.stderr, leave=False, dynamic_ncols=True, **kw)
