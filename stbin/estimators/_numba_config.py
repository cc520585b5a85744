"""numba settings shared by stbin's CPU kernels (sampling, sign): threading layer and JIT flags.

numba's default threading layer (OpenMP where available) costs a thread wake-up per call
that dominates small kernels; the workqueue layer is cheap. (Same choice as the
inference kernels of stbin.deploy; an explicit ``NUMBA_THREADING_LAYER`` wins.)
"""

from __future__ import annotations

import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
    try:
        numba.threading_layer()
    except ValueError:  # no parallel function has run yet: the layer can still be chosen
        numba.config.THREADING_LAYER = "workqueue"

#: exact IEEE arithmetic (no fast-math: the kernels' float results must equal torch's, bit for bit)
JIT = dict(cache=True, nogil=True, error_model="numpy", boundscheck=False)


def set_threads(threads: int | None) -> None:
    """Bound numba's parallel kernels to ``threads`` (at most numba's pool size; ``None``: unchanged)."""
    if threads is not None:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
