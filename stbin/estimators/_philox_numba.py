"""The CPU kernel of the sampling stream: Philox4x32-10 fused with the comparison (numba).

``compare_inplace(p, seed, parallel)`` overwrites ``p`` (a contiguous float32 or float64
array holding ``F(a/s)``) with the samples of :mod:`stbin.estimators.random`: ``+1`` where
the element's Philox word times ``2^-32`` is below ``p``, ``-1`` elsewhere, NaN kept. One
tile (256 Philox blocks, 1024 elements) is generated at a time: the loop over its blocks
runs all ten rounds on values held in registers (the key schedule precomputed), so LLVM
vectorises it across blocks (32x32->64-bit multiplies), and writes the four words into
four lane arrays that stay in L1; each lane is then compared with a contiguous run of
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
def _round(c0, c1, c2, c3, k0, k1):
    p0 = _M0 * np.uint64(c0)
    p1 = _M1 * np.uint64(c2)
    return (np.uint32(p1 >> _SHIFT) ^ c1 ^ k0, np.uint32(p1 & _LOW),
            np.uint32(p0 >> _SHIFT) ^ c3 ^ k1, np.uint32(p0 & _LOW))


@njit(inline="always")
def _tile(p, t, ks0, ks1, o2, o3):
    # One tile: 256 blocks, each through the 10 rounds with its state in registers (the j
    # loop vectorises across blocks), its four words into four lane arrays, then compared.
    n = p.size
    w0 = np.empty(_B, np.uint32)
    w1 = np.empty(_B, np.uint32)
    w2 = np.empty(_B, np.uint32)
    w3 = np.empty(_B, np.uint32)
    b0 = np.uint64(t) * np.uint64(_B)
    hi = np.uint32(b0 >> _SHIFT)
    base = np.uint32(b0 & _LOW)  # a multiple of 256: base + j never carries into the high word
    for j in range(_B):
        c0, c1, c2, c3 = np.uint32(base + np.uint32(j)), hi, o2, o3
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, ks0[0], ks1[0])
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, ks0[1], ks1[1])
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, ks0[2], ks1[2])
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, ks0[3], ks1[3])
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, ks0[4], ks1[4])
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, ks0[5], ks1[5])
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, ks0[6], ks1[6])
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, ks0[7], ks1[7])
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, ks0[8], ks1[8])
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, ks0[9], ks1[9])
        w0[j] = c0
        w1[j] = c1
        w2[j] = c2
        w3[j] = c3
    lo = t * 4 * _B
    e1, e2, e3, e4 = min(lo + _B, n), min(lo + 2 * _B, n), min(lo + 3 * _B, n), min(lo + 4 * _B, n)
    _emit(p, lo, e1, w0)
    _emit(p, e1, e2, w1)
    _emit(p, e2, e3, w2)
    _emit(p, e3, e4, w3)


@njit(inline="always")
def _key_schedule(seed):
    ks0 = np.empty(_ROUNDS, np.uint32)
    ks1 = np.empty(_ROUNDS, np.uint32)
    k0, k1 = np.uint32(seed[0]), np.uint32(seed[1])
    for r in range(_ROUNDS):
        ks0[r] = k0
        ks1[r] = k1
        k0 = np.uint32(k0 + _W0)
        k1 = np.uint32(k1 + _W1)
    return ks0, ks1


# _compare_serial / _compare_parallel are deliberate twins (range vs prange), each compiled and cached on its own.
@njit(**_JIT)
def _compare_serial(p, seed):
    ntiles = (p.size + 4 * _B - 1) // (4 * _B)
    ks0, ks1 = _key_schedule(seed)
    o2, o3 = np.uint32(seed[2]), np.uint32(seed[3])
    for t in range(ntiles):
        _tile(p, t, ks0, ks1, o2, o3)


@njit(parallel=True, **_JIT)
def _compare_parallel(p, seed):
    ntiles = (p.size + 4 * _B - 1) // (4 * _B)
    ks0, ks1 = _key_schedule(seed)
    o2, o3 = np.uint32(seed[2]), np.uint32(seed[3])
    for t in prange(ntiles):
        _tile(p, t, ks0, ks1, o2, o3)


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
