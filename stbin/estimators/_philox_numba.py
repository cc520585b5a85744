"""The CPU kernel of the sampling stream: Philox4x32-10 fused with the comparison (numba).

``compare_inplace(p, seed, parallel, threads, start)`` overwrites ``p`` (a contiguous
float32 or float64 array holding ``F(a/s)`` of the elements ``start, start+1, ...`` of a
sampling call) with the samples of :mod:`stbin.estimators.random`: ``+1`` where the
element's uniform ``u`` is below ``p``, ``-1`` elsewhere, NaN kept.

The kernel works one tile (256 Philox blocks, 1024 words, 2048 elements) at a time and is
written so that LLVM vectorises its loops across blocks / elements (AVX2 or AVX-512: checked
with ``inspect_asm``, which shows ``vpmuludq`` on ``zmm`` registers on an AVX-512 CPU):

* the block loop runs all ten rounds on values held in registers, with the round keys as
  scalars (loop invariants: no load that could alias the output), the 32x32->64-bit
  products as products of zero-extended 32-bit values, and no branch; it writes the four
  words of block ``j`` to ``w[j], w[256+j], w[512+j], w[768+j]`` (a 4 KiB buffer in L1);
* the comparison loop runs once per half (the low 16 bits of the words for the tile's first
  1024 elements, the high 16 bits for the next 1024), reads ``p`` and the words through
  slices indexed from 0 (so numba emits no negative-index wrap-around, which would turn the
  loads into gathers) and selects without a branch: ``+1`` where ``h + 2^-16 <= p``, ``-1``
  where ``h >= p`` (``h``: the half-word times ``2^-16``), ``p`` itself otherwise (a tie, or NaN);
* a tile that kept a value other than ``±1`` and NaN (one in about 2^16 elements: found by
  an AND over the values' bit patterns, :func:`has_unmarked`) is scanned once more, and each
  tie is settled by its tie word (:func:`tie_word`, one scalar Philox block).

Tiles are independent, so ``parallel=True`` spreads contiguous runs of tiles over numba's
threads (``prange``) with results identical to the serial loop. Compiled once per dtype
and cached on disk.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from stbin.estimators._numba_config import JIT, set_threads
from stbin.estimators.random import (PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1, TIE_FLAG, TILE_BLOCKS,
                                     TILE_ELEMENTS, TILE_WORDS)

# fastmath is harmless here (integer mixing and exact comparisons in the array's dtype, whose operands have at
# most 17 significant bits; NaN is tested with q != q, which LLVM keeps because 'nnan' is left out of the flags)
_JIT = dict(JIT, fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})
_M0, _M1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
_W0, _W1 = np.uint32(PHILOX_W0), np.uint32(PHILOX_W1)
_B = TILE_BLOCKS
_E = TILE_ELEMENTS
_W = TILE_WORDS
_U16 = 2.0 ** -16
_U48 = 2.0 ** -48
_SHIFT = np.uint64(32)
_MASK16 = np.uint32(0xFFFF)
_TIE = np.uint32(TIE_FLAG)
#: tiles per parallel work item (a run of 64 Ki elements): each item allocates its word buffer once
_TILES_PER_ITEM = 32


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
def seed_words(seed):
    """The four words of :func:`stbin.estimators.random.draw_seed` (an int64 array) as uint32: ``k0, k1, o2, o3``."""
    return np.uint32(seed[0]), np.uint32(seed[1]), np.uint32(seed[2]), np.uint32(seed[3])


@njit(inline="always")
def tie_word(i, k0, k1, o2, o3):
    """The tie word of element ``i`` (uint64) of a call: lane 0 of block ``(i mod 2^32, i // 2^32 + 2^31, o2, o3)``."""
    c0, c1, c2, c3 = np.uint32(i & np.uint64(0xFFFFFFFF)), np.uint32(i >> _SHIFT) | _TIE, o2, o3
    a0, a1 = k0, k1
    for _ in range(9):
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, a0, a1)
        a0, a1 = np.uint32(a0 + _W0), np.uint32(a1 + _W1)
    return _round(c0, c1, c2, c3, a0, a1)[0]


@njit(inline="always")
def stream_below(h, i, q, k0, k1, o2, o3):
    """The stream's rule for element ``i`` with half-word ``h`` against ``q`` (float64): whether ``u < q``, the tie
    word computed only where ``q`` lies in ``h``'s interval."""
    u16 = np.float64(h) * _U16
    if u16 + _U16 <= q:
        return True
    return u16 < q and u16 + np.float64(tie_word(np.uint64(i), k0, k1, o2, o3)) * _U48 < q


@njit(inline="always")
def half_of(w, r):
    """The 16-bit half ``h`` of element ``r`` (0 <= r < 2048) of a tile whose words are ``w``."""
    return (w[r % _W] >> np.uint32(16 * (r // _W))) & _MASK16


@njit(inline="always")
def has_unmarked(bits, one):
    """Whether an element of ``bits`` (the bit patterns of float samples) is other than ±1 and NaN.

    ``one`` is the pattern of 1.0: its bits (the exponent's lower bits) are set in ±1 and in
    every NaN, and some of them are clear in every value of magnitude below 1 (a tie keeps its
    ``p``, which lies in (0, 1); an undecided sample is 0), so they survive an AND over the
    elements iff every element is ±1 or NaN. A loop of its own: folded into the comparison loop,
    it made LLVM choose vectors of half the width there.
    """
    acc = one
    for i in range(bits.size):
        acc &= bits[i]
    return acc != one


@njit(inline="always")
def half_sides(p, word, shift, like):
    """Which side of the element's half-word interval ``p`` lies on: ``(h + 2^-16 <= p, h >= p)``, ``h`` the half
    ``(word >> shift) & 0xFFFF`` times ``2^-16``; neither for a tie (``p`` inside the interval) or NaN.

    In the dtype of the array ``like`` (exact: ``h`` and ``h + 2^-16`` have at most 17 significant bits). A
    float64 ``h`` against float32 ``p`` made LLVM mix vector widths: on an AVX2 CPU :func:`compare_inplace` took
    0.98 ns an element against 0.57 (one thread, 64 Ki elements).
    """
    unit = like.dtype.type(_U16)
    h = like.dtype.type(np.int32((word >> shift) & _MASK16)) * unit
    return h + unit <= p, h >= p


@njit(inline="always")
def _compare(q, u, shift):
    """``q[i]`` <- ``+1`` / ``-1`` by :func:`half_sides` of ``q[i]`` and the word ``u[i]``, else kept (a tie or
    NaN) (``len(q) <= len(u)``)."""
    one = q.dtype.type(1.0)
    for i in range(q.size):
        x = q[i]
        plus, minus = half_sides(x, u[i], shift, q)
        q[i] = one if plus else (-one if minus else x)


@njit(inline="always")
def settle_ties(q, bits, one, w, base, k0, k1, o2, o3):
    """Settle the ties of a tile's samples ``q`` (element ``r`` of ``q`` is element ``base + r`` of the call):
    ``+1`` where ``h + v 2^-48 < p`` with the tie word ``v``, else ``-1``. Whether there was one."""
    if not has_unmarked(bits, one):
        return False
    pm = q.dtype.type(1.0)
    for r in range(q.size):
        x = q[r]
        if x == x and x != pm and x != -pm:
            q[r] = pm if stream_below(half_of(w, r), base + r, np.float64(x), k0, k1, o2, o3) else -pm
    return True


@njit(inline="always")
def _tiles(p, bits, one, t0, t1, tile_base, k0, k1, o2, o3):
    """Samples of tiles ``t0 .. t1-1`` of ``p`` (tile ``t`` of ``p`` is tile ``tile_base + t`` of the stream)."""
    w = np.empty(_W, np.uint32)
    n = p.size
    for t in range(t0, t1):
        lo = t * _E
        hi = min(lo + _E, n)
        b = np.uint64(tile_base + t) * np.uint64(_B)
        _philox_tile(w, np.uint32(b & np.uint64(0xFFFFFFFF)), np.uint32(b >> _SHIFT), k0, k1, o2, o3)
        mid = min(lo + _W, hi)
        _compare(p[lo:mid], w, np.uint32(0))
        _compare(p[mid:hi], w, np.uint32(16))
        settle_ties(p[lo:hi], bits[lo:hi], one, w, (tile_base + t) * _E, k0, k1, o2, o3)


@njit(**_JIT)
def _compare_serial(p, bits, one, seed, tile_base):
    k0, k1, o2, o3 = seed_words(seed)
    _tiles(p, bits, one, 0, (p.size + _E - 1) // _E, tile_base, k0, k1, o2, o3)


@njit(parallel=True, **_JIT)
def _compare_parallel(p, bits, one, seed, tile_base):
    k0, k1, o2, o3 = seed_words(seed)
    ntiles = (p.size + _E - 1) // _E
    items = (ntiles + _TILES_PER_ITEM - 1) // _TILES_PER_ITEM
    for i in prange(items):
        _tiles(p, bits, one, i * _TILES_PER_ITEM, min(ntiles, (i + 1) * _TILES_PER_ITEM), tile_base, k0, k1, o2, o3)


@njit(**_JIT)
def tie_words_at(index, seed):
    """The tie words of the elements ``index`` (int64 array) of the call of ``seed`` (uint32 array)."""
    k0, k1, o2, o3 = seed_words(seed)
    out = np.empty(index.size, np.uint32)
    for j in range(index.size):
        out[j] = tie_word(np.uint64(index[j]), k0, k1, o2, o3)
    return out


def bit_patterns(x: np.ndarray) -> tuple[np.ndarray, object]:
    """``x`` viewed as integers of its width, and the pattern of 1.0 in that width (see :func:`has_unmarked`)."""
    ity = np.int32 if x.dtype == np.float32 else np.int64
    return x.view(ity), np.array(1.0, x.dtype).view(ity)[()]


def check_stream_args(what: str, arrays: tuple[np.ndarray, ...], seed: np.ndarray, start: int) -> None:
    """ValueError unless ``arrays`` are 1-D contiguous float32/float64 arrays of one size and dtype,
    ``seed`` holds 4 int64 words and ``start`` is a non-negative multiple of 2048 (``what``: the caller)."""
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
    multiple of 2048, the tile size) is the index of ``p[0]`` in the sampling call, so that a call may be
    processed in chunks with the numbers of one whole call.
    """
    if p.ndim != 1 or not p.flags.c_contiguous or p.dtype not in (np.float32, np.float64):
        raise ValueError(f"compare_inplace needs a 1-D contiguous float32/float64 array, got {p.dtype} {p.shape}")
    if seed.shape != (4,) or seed.dtype != np.int64:
        raise ValueError(f"compare_inplace needs 4 int64 seed words, got {seed.dtype} {seed.shape}")
    if start < 0 or start % _E:
        raise ValueError(f"compare_inplace needs a start that is a non-negative multiple of {_E}, got {start}")
    bits, one = bit_patterns(p)
    if not parallel:
        _compare_serial(p, bits, one, seed, start // _E)
        return
    set_threads(threads)
    _compare_parallel(p, bits, one, seed, start // _E)
