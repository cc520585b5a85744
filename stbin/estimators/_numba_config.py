"""numba settings shared by stbin's CPU kernels (sampling, sign): threading layer and JIT flags.

numba's default threading layer (OpenMP where available) costs a thread wake-up per call
that dominates small kernels; the workqueue layer is cheap. (Same choice as the
inference kernels of stbin.deploy; an explicit ``NUMBA_THREADING_LAYER`` wins.)
"""

from __future__ import annotations

import os

import numba
from numba import types
from numba.extending import intrinsic

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


@intrinsic
def prefer_512_bit_vectors(typingctx):  # type: ignore[no-untyped-def]
    """Mark the function being compiled ``"prefer-vector-width"="512"`` (a hint to LLVM's vectoriser).

    Shared by the CPU kernels whose loops LLVM would otherwise vectorise narrowly. Without it LLVM
    vectorised the logistic sampler's decision loop with 128-bit vectors on this AVX-512 CPU
    (its cost model under the 256-bit preference of recent Intel tunings); with it, with
    256-bit ones, and the loop ran 1.9x faster per element (in cache, one thread). The
    numbers do not depend on the vector width. (An LLVM string attribute; llvmlite's
    ``FunctionAttributes.add`` only knows keyword attributes, hence ``set.add``.)
    """
    def codegen(context, builder, signature, args):
        for attribute in ('"prefer-vector-width"="512"', '"min-legal-vector-width"="512"'):
            set.add(builder.function.attributes, attribute)
        return context.get_dummy_value()
    return types.none(), codegen
