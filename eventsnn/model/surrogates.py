"""The surrogate derivatives of the spike (names, integer ids, constants), in one place.

The torch reference (:func:`eventsnn.model.scan.surrogate_derivative`), the numba kernels
(:mod:`eventsnn.model.scan_numba`) and the Triton kernels (:mod:`eventsnn.model.scan_triton`) all select a
surrogate by the id given here, so the three backends cannot disagree on which number means which function.

* ``fast-sigmoid`` (SuperSpike): ``1 / (slope |x| + 1)^2``
* ``atan``: ``slope/2 / (1 + (pi/2 slope x)^2)``
* ``multi-gaussian`` (Yin et al. 2021): ``(1+h) N(x; 0, s) - h N(x; s, S s) - h N(x; -s, S s)``, ``s = 1/slope``
"""
from __future__ import annotations

from eventsnn.util.errors import EventsnnError

SURROGATES = ("fast-sigmoid", "atan", "multi-gaussian")
FAST_SIGMOID, ATAN, MULTI_GAUSSIAN = 0, 1, 2
SURROGATE_IDS = {name: i for i, name in enumerate(SURROGATES)}
MULTI_GAUSSIAN_H, MULTI_GAUSSIAN_S = 0.15, 6.0  # Yin et al. 2021; sigma = 1/slope


def surrogate_id(name: str) -> int:
    """The integer id the compiled kernels use for surrogate ``name``."""
    if name not in SURROGATE_IDS:
        raise EventsnnError(f"unknown surrogate {name!r}; choose one of {', '.join(SURROGATES)}")
    return SURROGATE_IDS[name]
