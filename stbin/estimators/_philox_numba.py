"""The CPU kernel of the sampling stream: Philox4x32-10 fused with the comparison (numba).

``compare_inplace(p, seed, parallel, threads, start)`` overwrites ``p`` (a contiguous
float32 or float64 array holding ``F(a/s)`` of the elements ``start, start+1, ...`` of a
sampling call) with the samples of :mod:`stbin.estimators.random`: ``+1`` where the
element's Philox word times ``2^-32`` is below ``p``, ``-1`` elsewhere, NaN kept.

The kernel works one tile (256 Philox blocks, 1024 elements) at a time and is written so
that LLVM vectorises both of its loops across blocks / elements (AVX2 or AVX-512: checked
with ``inspect_asm``, which shows ``vpmuludq`` on ``zmm`` registers on an AVX-512 CPU):

* the block loop runs all ten rounds on values held in registers, with the round keys as
  scalars (loop invariants: no load that could alias the output), the 32x32->64-bit
  products as products of zero-extended 32-bit values, and no branch; it writes the four
  words of block ``j`` to ``w[j], w[256+j], w[512+j], w[768+j]`` (a 4 KiB buffer in L1);
* the comparison loop reads ``p`` and the words through slices indexed from 0 (so numba
  emits no negative-index wrap-around, which would turn the loads into gathers) and
  selects without a branch: ``q if q != q else (+1 if u < q else -1)``.

Tiles are independent, so ``parallel=True`` spreads contiguous runs of tiles over numba's
threads (``prange``) with results identical to the serial loop. Compiled once per dtype
and cached on disk.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from stbin.estimators._numba_config import JIT, set_threads
from stbin.estimators.random import PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1, TILE_BLOCKS, TILE_ELEMENTS

# fastmath is harmless here (integer mixing and one exact float64 comparison per element;
# NaN is tested with q != q, which LLVM keeps because 'nnan' is left out of the flags)
_JIT = dict(JIT, fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})
_M0, _M1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
_W0, _W1 = np.uint32(PHILOX_W0), np.uint32(PHILOX_W1)
_B = TILE_BLOCKS
_E = TILE_ELEMENTS
_U = 2.0 ** -32
_SHIFT = np.uint64(32)
#: tiles per parallel work item (a run of 64 Ki elements): each item allocates its word buffer once
_TILES_PER_ITEM = 64


@njit(inline="always")
def _round(c0, c1, c2, c3, k0, k1):
    p0 = _M0 * np.uint64(c0)
    p1 = _M1 * np.uint64(c2)
    return (np.uint32(p1 >> _SHIFT) ^ c1 ^ k0, np.uint32(p1),
            np.uint32(p0 >> _SHIFT) ^ c3 ^ k1, np.uint32(p0))


@njit(inline="always")
def _philox_tile(w, block0, hi, k0, k1, o2, o3):
    """The four words of blocks ``block0 .. block0+255`` (counter high word ``hi``) into ``w`` (lane-major)."""
    for j in range(_B):
        c0, c1, c2, c3 = np.uint32(block0 + np.uint32(j)), hi, o2, o3
        a0, a1 = k0, k1
        for _ in range(9):  # a constant trip count: LLVM unrolls it and vectorises the j loop
            c0, c1, c2, c3 = _round(c0, c1, c2, c3, a0, a1)
            a0, a1 = np.uint32(a0 + _W0), np.uint32(a1 + _W1)
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, a0, a1)  # the tenth round (no key bump after it)
        w[j] = c0
        w[_B + j] = c1
        w[2 * _B + j] = c2
        w[3 * _B + j] = c3


@njit(inline="always")
def _compare(q, u):
    """``q[i]`` <- ``+1`` if ``u[i] * 2^-32 < q[i]`` else ``-1``; NaN stays NaN (``len(q) <= len(u)``)."""
    one = q.dtype.type(1.0)
    for i in range(q.size):
        x = q[i]
        s = one if np.float64(u[i]) * _U < x else -one
        q[i] = x if x != x else s


@njit(inline="always")
def _tiles(p, t0, t1, tile_base, k0, k1, o2, o3):
    """Samples of tiles ``t0 .. t1-1`` of ``p`` (tile ``t`` of ``p`` is tile ``tile_base + t`` of the stream)."""
    w = np.empty(_E, np.uint32)
    n = p.size
    for t in range(t0, t1):
        b = np.uint64(tile_base + t) * np.uint64(_B)
        _philox_tile(w, np.uint32(b & np.uint64(0xFFFFFFFF)), np.uint32(b >> _SHIFT), k0, k1, o2, o3)
        lo = t * _E
        _compare(p[lo:min(lo + _E, n)], w)


@njit(**_JIT)
def _compare_serial(p, seed, tile_base):
    k0, k1, o2, o3 = np.uint32(seed[0]), np.uint32(seed[1]), np.uint32(seed[2]), np.uint32(seed[3])
    _tiles(p, 0, (p.size + _E - 1) // _E, tile_base, k0, k1, o2, o3)


@njit(parallel=True, **_JIT)
def _compare_parallel(p, seed, tile_base):
    k0, k1, o2, o3 = np.uint32(seed[0]), np.uint32(seed[1]), np.uint32(seed[2]), np.uint32(seed[3])
    ntiles = (p.size + _E - 1) // _E
    items = (ntiles + _TILES_PER_ITEM - 1) // _TILES_PER_ITEM
    for i in prange(items):
        _tiles(p, i * _TILES_PER_ITEM, min(ntiles, (i + 1) * _TILES_PER_ITEM), tile_base, k0, k1, o2, o3)


def check_stream_args(what: str, arrays: tuple[np.ndarray, ...], seed: np.ndarray, start: int) -> None:
    """ValueError unless ``arrays`` are 1-D contiguous float32/float64 arrays of one size and dtype,
    ``seed`` holds 4 int64 words and ``start`` is a non-negative multiple of 1024 (``what``: the caller)."""
    a = arrays[0]
    for x in arrays:
        if x.ndim != 1 or not x.flags.c_contiguous or x.dtype not in (np.float32, np.float64) \
                or x.dtype != a.dtype or x.size != a.size:
            raise ValueError(f"{what} needs 1-D contiguous float32/float64 arrays of one size and dtype, "
                             f"got {x.dtype} {x.shape}")
    if seed.shape != (4,) or seed.dtype != np.int64:
        raise ValueError(f"{what} needs 4 int64 seed words, got {seed.dtype} {seed.shape}")
    if start < 0 or start % _E:
        raise ValueError(f"{what} needs a start that is a non-negative multiple of {_E}, got {start}")


def compare_inplace(p: np.ndarray, seed: np.ndarray, parallel: bool, threads: int | None = None,
                    start: int = 0) -> None:
    """Replace ``p`` (1-D contiguous float32/float64 holding F(a/s)) by its ±1 samples, in place.

    ``seed`` holds the four words of :func:`stbin.estimators.random.draw_seed`; ``threads``
    (default: numba's current setting) bounds the parallel kernel's threads; ``start`` (a
    multiple of 1024) is the index of ``p[0]`` in the sampling call, so that a call may be
    processed in chunks with the numbers of one whole call.
    """
    if p.ndim != 1 or not p.flags.c_contiguous or p.dtype not in (np.float32, np.float64):
        raise ValueError(f"compare_inplace needs a 1-D contiguous float32/float64 array, got {p.dtype} {p.shape}")
    if seed.shape != (4,) or seed.dtype != np.int64:
        raise ValueError(f"compare_inplace needs 4 int64 seed words, got {seed.dtype} {seed.shape}")
    if start < 0 or start % _E:
        raise ValueError(f"compare_inplace needs a start that is a non-negative multiple of {_E}, got {start}")
    if not parallel:
        _compare_serial(p, seed, start // _E)
        return
    set_threads(threads)
    _compare_parallel(p, seed, start // _E)
