"""The CPU kernel of the sampling stream: Philox4x32-10 fused with the comparison (numba).

``compare_inplace(p, seed, parallel)`` overwrites ``p`` (a contiguous float32 or float64
array holding ``F(a/s)``) with the samples of :mod:`stbin.estimators.random`: ``+1`` where
the element's Philox word times ``2^-32`` is below ``p``, ``-1`` elsewhere, NaN kept. One
tile (256 Philox blocks, 1024 elements) is generated at a time into four lane arrays that
stay in L1, with the counter words in structure-of-arrays form so that LLVM vectorises the
rounds (32x32->64-bit multiplies); each lane is then compared with a contiguous run of
``p``. Tiles are independent, so ``parallel=True`` spreads them over numba's threads
(``prange``) with results identical to the serial loop. Compiled once per dtype and cached
on disk.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import njit, prange

from stbin.estimators.random import PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1, ROUNDS, TILE_BLOCKS

# numba's default threading layer (OpenMP where available) costs a thread wake-up per
# call that dominates small kernels; the workqueue layer is cheap. (Same choice as the
# inference kernels of stbin.deploy; an explicit NUMBA_THREADING_LAYER wins.)
if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
    try:
        numba.threading_layer()
    except ValueError:  # no parallel function has run yet: the layer can still be chosen
        numba.config.THREADING_LAYER = "workqueue"

_JIT = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")
_M0, _M1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
_W0, _W1 = np.uint32(PHILOX_W0), np.uint32(PHILOX_W1)
_B = TILE_BLOCKS
_ROUNDS = ROUNDS
_U = 2.0 ** -32
_LOW = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


@njit(inline="always")
def _emit(p, lo, hi, words):
    for j in range(hi - lo):
        q = p[lo + j]
        s = 1.0 if np.float64(words[j]) * _U < q else -1.0
        if q == q:  # NaN stays NaN
            p[lo + j] = s


@njit(inline="always")
def _tile(p, t, k0, k1, o2, o3):
    n = p.size
    c0 = np.empty(_B, np.uint32)
    c1 = np.empty(_B, np.uint32)
    c2 = np.empty(_B, np.uint32)
    c3 = np.empty(_B, np.uint32)
    b0 = np.uint64(t) * np.uint64(_B)
    for j in range(_B):
        b = b0 + np.uint64(j)
        c0[j] = np.uint32(b & _LOW)
        c1[j] = np.uint32(b >> _SHIFT)
        c2[j] = o2
        c3[j] = o3
    for r in range(_ROUNDS):
        for j in range(_B):
            p0 = _M0 * np.uint64(c0[j])
            p1 = _M1 * np.uint64(c2[j])
            x0 = np.uint32(p1 >> _SHIFT) ^ c1[j] ^ k0
            x2 = np.uint32(p0 >> _SHIFT) ^ c3[j] ^ k1
            c1[j] = np.uint32(p1 & _LOW)
            c3[j] = np.uint32(p0 & _LOW)
            c0[j] = x0
            c2[j] = x2
        k0 = np.uint32(k0 + _W0)
        k1 = np.uint32(k1 + _W1)
    lo = t * 4 * _B
    e1, e2, e3, e4 = min(lo + _B, n), min(lo + 2 * _B, n), min(lo + 3 * _B, n), min(lo + 4 * _B, n)
    _emit(p, lo, e1, c0)
    _emit(p, e1, e2, c1)
    _emit(p, e2, e3, c2)
    _emit(p, e3, e4, c3)


@njit(**_JIT)
def _compare_serial(p, seed):
    ntiles = (p.size + 4 * _B - 1) // (4 * _B)
    k0, k1, o2, o3 = np.uint32(seed[0]), np.uint32(seed[1]), np.uint32(seed[2]), np.uint32(seed[3])
    for t in range(ntiles):
        _tile(p, t, k0, k1, o2, o3)


@njit(parallel=True, **_JIT)
def _compare_parallel(p, seed):
    ntiles = (p.size + 4 * _B - 1) // (4 * _B)
    k0, k1, o2, o3 = np.uint32(seed[0]), np.uint32(seed[1]), np.uint32(seed[2]), np.uint32(seed[3])
    for t in prange(ntiles):
        _tile(p, t, k0, k1, o2, o3)


def compare_inplace(p: np.ndarray, seed: np.ndarray, parallel: bool, threads: int | None = None) -> None:
    """Replace ``p`` (1-D contiguous float32/float64 holding F(a/s)) by its ±1 samples, in place.

    ``seed`` holds the four words of :func:`stbin.estimators.random.draw_seed`; ``threads``
    (default: numba's current setting) bounds the parallel kernel's threads.
    """
    if p.ndim != 1 or not p.flags.c_contiguous or p.dtype not in (np.float32, np.float64):
        raise ValueError(f"compare_inplace needs a 1-D contiguous float32/float64 array, got {p.dtype} {p.shape}")
    if seed.shape != (4,) or seed.dtype != np.int64:
        raise ValueError(f"compare_inplace needs 4 int64 seed words, got {seed.dtype} {seed.shape}")
    if not parallel:
        _compare_serial(p, seed)
        return
    if threads is not None:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    _compare_parallel(p, seed)
