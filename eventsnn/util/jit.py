"""numba's ``njit`` as eventsnn compiles its CPU kernels: cached (in the user cache directory that
``eventsnn/__init__.py`` sets as ``NUMBA_CACHE_DIR``) and releasing the GIL, so threads can run kernels side by
side. One decorator for the exact event engine, the spike matcher and any future kernel."""
from __future__ import annotations

import numba

jit = numba.njit(cache=True, nogil=True)
