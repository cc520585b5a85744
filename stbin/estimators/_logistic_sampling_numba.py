r"""One-pass CPU kernel of logistic sampling: read ``a``, decide almost every sample, write ``x``.

The stream's rule (:mod:`stbin.estimators.random`) is ``x = +1`` iff
``u < p`` with ``u = (h 2^32 + v) 2^-48`` (``h`` the element's 16-bit half-word, ``v`` its tie
word) and ``p = sigmoid(a / s)`` as torch evaluates it.
Computing ``p`` exactly for every element costs a torch pass of its own; but the sample
only depends on which side of ``u`` the value ``p`` lies, and ``u`` is far from ``p`` for
almost every element. So the kernel decides with a cheap approximation and leaves the
few undecided elements to an exact fix-up (:mod:`stbin.estimators._logistic_sampling`):

* no division: with ``e = exp(-|t|)``, ``t = a * (1/s)``, ``sigmoid(t) = c / (1 + e)`` where
  ``c = 1`` for ``t >= 0`` and ``c = e`` otherwise, so ``u < sigmoid(t)`` iff
  ``Z = u (1 + e) - c < 0``;
* ``e`` in float32 by the reduction ``x = k ln 2 + r`` (``k`` rounded to an integer, ``ln 2``
  split in two parts after W. J. Cody and W. Waite, *Software Manual for the Elementary
  Functions*, 1980), ``e^r`` by the Taylor polynomial of degree 5 (relative error below
  ``|r|^6/720 < 2.6e-6`` for ``|r| <= ln 2 / 2``) and ``2^k`` written into the exponent bits;
  ``|t|`` is clamped to 40 (``e^-40 < 2^-57``: far below the margin);
* ``u`` enters as the midpoint ``(h + 1/2) 2^-16`` of its interval ``[h 2^-16, (h + 1) 2^-16)``,
  exact in float32 (17 bits);
* the sample is ``+1`` where ``Z < -DELTA``, ``-1`` where ``Z >= DELTA`` (``DELTA = 2^-15``),
  NaN where ``a`` is NaN, and **0 (undecided)** in between.

Why the decided samples are exact: every error between the kernel's ``Z`` and the
``Z`` of the exact rule, ``(u - p)(1 + e)``, is below ``DELTA``: ``u`` against its midpoint
(``<= 2^-17`` in ``u``, ``(1 + e) <= 2``: ``<= 2^-16`` in ``Z``), ``t`` from the rounded ``1/s``
(``|t sigma'(t)| < 0.23`` times a few ``2^-24``: ``< 2^-23`` in ``Z``), the exponential
(``< 2^-18`` relative; ``|dZ/de| <= 1`` and ``e <= 1``: ``< 2^-18``), torch's own sigmoid
(within a few float32 ulp of the true value: ``< 2^-21`` in ``Z``; float64: far less) and the
kernel's float32 roundings (``< 2^-21``) — together ``< 2^-16 + 1.3 * 2^-18 < 1.33 * 2^-16 <
2^-15``. An element is undecided only when the exact ``|u - p| (1 + e) < 2^-15 + 1.33 * 2^-16``,
so ``|u - p| < 3.33 * 2^-16``: with probability below ``6.7 * 2^-16 = 2^-13.3`` for every ``p``
(``u`` is uniform and independent of ``a``), at most about 1700 of 16.8 M.

Per tile (2048 elements, the stream's layout; :mod:`stbin.estimators._philox_numba` draws
the words) the decision loop vectorises, once per half of the words; a tile with an undecided
element is scanned once more and its undecided elements' indices and half-words are recorded in
the work item's row of ``idx``/``words`` (``counts[item]``; ``cap + 1`` when the row overflowed,
and then the caller redoes that item the two-pass way). Work items are runs of 32 tiles, spread
over numba's threads with ``parallel=True`` (identical numbers). Given an int8 ``twin``, the
decision loop writes ``sign`` of each decided sample into it as well (0 where undecided: the
fix-up writes those; :mod:`stbin.estimators._twin_numba`).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from stbin.estimators._numba_config import JIT, prefer_512_bit_vectors, set_threads
from stbin.estimators._philox_numba import (_philox_tile, bit_patterns, check_stream_args, half_of, has_unmarked,
                                            seed_words)
from stbin.estimators._twin_numba import check_twin
from stbin.estimators.random import TILE_BLOCKS, TILE_ELEMENTS, TILE_WORDS

_f32 = np.float32
# fused multiply-adds are welcome (they only shrink the rounding errors that the margin covers);
# no other fast-math flag (the integer rounding by MAGIC must not be reassociated away)
_JIT = dict(JIT, fastmath={"contract"})
#: the half-width of the undecided band of Z (see the module docstring)
DELTA = 2.0 ** -15
#: tiles per work item (a row of the undecided records)
TILES_PER_ITEM = 32
ITEM_ELEMENTS = TILES_PER_ITEM * TILE_ELEMENTS
_E = TILE_ELEMENTS
_W = TILE_WORDS
_LOG2E = _f32(1.44269504088896341)
_MAGIC = _f32(12582912.0)  # 1.5 * 2^23: x + MAGIC - MAGIC rounds x to an integer (|x| < 2^22)
_C1, _C2 = _f32(0.693359375), _f32(-2.12194440e-4)  # ln 2 = C1 + C2, C1 with 9 significant bits
_T2, _T3, _T4, _T5 = _f32(1 / 2), _f32(1 / 6), _f32(1 / 24), _f32(1 / 120)
_CLAMP = _f32(40.0)
_ONE, _ZERO, _U16, _MID = _f32(1.0), _f32(0.0), _f32(2.0 ** -16), _f32(2.0 ** -17)
_D = _f32(DELTA)
_MASK16 = np.uint32(0xFFFF)
_I1, _I0 = np.int8(1), np.int8(0)


@intrinsic
def _bits_to_f32(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits`` (an LLVM bitcast: free, vectorisable)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@njit(inline="always")
def exp_neg(m):
    """``e^-m`` for float32 ``0 <= m <= 40`` within ``2^-18`` relative (see the module docstring)."""
    x = -m
    k = (x * _LOG2E + _MAGIC) - _MAGIC
    r = (x - k * _C1) - k * _C2
    q = ((((_T5 * r + _T4) * r + _T3) * r + _T2) * r + _ONE) * r + _ONE
    return q * _bits_to_f32((np.int32(k) + np.int32(127)) << np.int32(23))


@njit(inline="always")
def _margin(ai, hi, inv_s):
    """``Z = u (1 + e) - c`` of the module docstring for the element ``ai`` and its half-word ``hi`` (float32)."""
    t = _f32(ai * inv_s)
    e = exp_neg(min(abs(t), _CLAMP))
    c = _ONE if t >= _ZERO else e
    u = _f32(np.int32(hi)) * _U16 + _MID
    return u * (_ONE + e) - c


@njit(inline="always")
def _decide(a, w, out, inv_s, shift):
    """``out[i]`` <- +1 / -1 / NaN / 0 (undecided) for ``a[i]`` against the half ``(w[i] >> shift) & 0xFFFF``."""
    one = out.dtype.type(1.0)
    zero = out.dtype.type(0.0)
    for i in range(out.size):
        ai = a[i]
        z = _margin(ai, (w[i] >> shift) & _MASK16, inv_s)
        v = one if z < -_D else (-one if z >= _D else zero)
        v = ai if ai != ai else v
        out[i] = v


@njit(inline="always")
def _decide_twin(a, w, out, twin, inv_s, shift):
    """:func:`_decide`, writing ``twin[i]`` = +1 / -1 / 0 (undecided or NaN) too; whether an ``a[i]`` is NaN.

    The same decisions by the same operations (so the same samples); inside the decision loop the
    twin costs less than a loop of its own over the tile (measured: +0 to 3% against +7 to 9% of the
    kernel's time, one thread, 64 Ki to 16 Mi elements).
    """
    one = out.dtype.type(1.0)
    zero = out.dtype.type(0.0)
    nan = False
    for i in range(out.size):
        ai = a[i]
        z = _margin(ai, (w[i] >> shift) & _MASK16, inv_s)
        plus = z < -_D
        minus = z >= _D
        v = one if plus else (-one if minus else zero)
        bad = ai != ai
        nan |= bad
        out[i] = ai if bad else v
        twin[i] = (_I1 if plus else _I0) - (_I1 if minus else _I0)
    return nan


@njit(inline="always")
def _item(a, out, bits, one, item, tile_base, inv_s, k0, k1, o2, o3, idx, words, counts, twin, nans):
    """Samples of work item ``item``; its undecided elements recorded in row ``item``; with a twin (``twin.size``
    > 0), its tiles written too and ``nans[item]`` set when a sample was NaN."""
    prefer_512_bit_vectors()
    w = np.empty(_W, np.uint32)
    n = out.size
    cap = idx.shape[1]
    found = 0
    nan = False
    want = twin.size > 0
    t0 = item * TILES_PER_ITEM
    t1 = min((n + _E - 1) // _E, t0 + TILES_PER_ITEM)
    for t in range(t0, t1):
        lo = t * _E
        hi = min(lo + _E, n)
        b = np.uint64(tile_base + t) * np.uint64(TILE_BLOCKS)
        _philox_tile(w, np.uint32(b & np.uint64(0xFFFFFFFF)), np.uint32(b >> np.uint64(32)), k0, k1, o2, o3)
        mid = min(lo + _W, hi)
        if want:
            nan |= _decide_twin(a[lo:mid], w, out[lo:mid], twin[lo:mid], inv_s, np.uint32(0))
            nan |= _decide_twin(a[mid:hi], w, out[mid:hi], twin[mid:hi], inv_s, np.uint32(16))
        else:
            _decide(a[lo:mid], w, out[lo:mid], inv_s, np.uint32(0))
            _decide(a[mid:hi], w, out[mid:hi], inv_s, np.uint32(16))
        if has_unmarked(bits[lo:hi], one):
            for i in range(lo, hi):
                if out[i] == 0 and found < cap:
                    idx[item, found] = i
                    words[item, found] = half_of(w, i - lo)
                    found += 1
                elif out[i] == 0:
                    found = cap + 1
    counts[item] = found
    if want:
        nans[item] = nan


@njit(**_JIT)
def _run_serial(a, out, bits, one, seed, tile_base, inv_s, idx, words, counts, twin, nans):
    k0, k1, o2, o3 = seed_words(seed)
    for item in range(counts.size):
        _item(a, out, bits, one, item, tile_base, inv_s, k0, k1, o2, o3, idx, words, counts, twin, nans)


@njit(parallel=True, **_JIT)
def _run_parallel(a, out, bits, one, seed, tile_base, inv_s, idx, words, counts, twin, nans):
    k0, k1, o2, o3 = seed_words(seed)
    for item in prange(counts.size):
        _item(a, out, bits, one, item, tile_base, inv_s, k0, k1, o2, o3, idx, words, counts, twin, nans)


def decide(a: np.ndarray, out: np.ndarray, scale: float, seed: np.ndarray, parallel: bool,
           threads: int | None = None, start: int = 0, cap: int = 64, twin: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Write the decided samples of ``a`` (logistic noise, scale ``scale``) into ``out``.

    ``a`` and ``out``: 1-D contiguous arrays of one size and dtype (float32 or float64);
    ``seed``: the four int64 words of :func:`stbin.estimators.random.draw_seed`; ``start``
    (a multiple of 2048): the index of ``a[0]`` in the sampling call. Returns
    ``(idx, words, counts)``: row ``r`` holds the ``counts[r]`` undecided elements of
    work item ``r`` (elements ``r * ITEM_ELEMENTS ...``), their indices into ``a`` and
    their 16-bit half-words; ``counts[r] == cap + 1`` when there were more than ``cap``. With ``twin`` (a 1-D int8 array
    of ``a``'s size), ``twin <- sign(out)`` tile by tile (0 where undecided: the fix-up's to write), and the
    last value returned says whether some sample was NaN (always False without a twin).
    """
    check_stream_args("decide", (a, out), seed, start)
    tw = check_twin("decide", twin, a.size)
    inv_s = a.dtype.type(1.0 / scale)
    items = (a.size + ITEM_ELEMENTS - 1) // ITEM_ELEMENTS
    idx = np.empty((items, cap), np.int64)
    words = np.empty((items, cap), np.uint32)
    counts = np.zeros(items, np.int64)
    nans = np.zeros(items if tw.size else 0, np.bool_)
    bits, one = bit_patterns(out)
    run = _run_parallel if parallel else _run_serial
    if parallel:
        set_threads(threads)
    run(a, out, bits, one, seed, start // _E, inv_s, idx, words, counts, tw, nans)
    return idx, words, counts, bool(nans.any())
