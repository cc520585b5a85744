r"""One-pass CPU kernel of uniform-noise sampling: ``F(a/s)`` and the comparison in one loop (numba).

Uniform noise on ``[-1, 1]`` has the linear CDF ``F(t) = clip((t + 1) / 2, 0, 1)``
(:mod:`stbin.estimators.noise`), made of exactly rounded IEEE operations only, so the
kernel evaluates it **exactly as torch does** — ``t = a / s`` (skipped for ``s = 1``),
``(t + 1) * 0.5``, clamped to ``[0, 1]`` with NaN kept, all in the array's dtype — and
compares it with the element's uniform as :mod:`stbin.estimators._philox_numba` does
(by the 16-bit half-word, :func:`~stbin.estimators._philox_numba.half_sides`, exact in the array's
dtype, and the tie word where that leaves it open).
The samples are therefore bit for bit those of the two-pass path (torch's CDF into a
buffer, then the comparison kernel), with no fix-up outside the kernel: there is no
approximation to correct, and the rare ties (``p`` inside the half-word's interval) are
settled in the kernel (:func:`stbin.estimators._philox_numba.settle_ties`). One read of ``a``,
one write of ``out``.

Work items are runs of 32 tiles (the stream's layout: 2048 elements a tile), spread over
numba's threads with ``parallel=True`` (identical numbers). No fast-math: every
operation must round as torch's does. Given an int8 ``twin``, the loop writes ``sign(x)`` into
it as well (:mod:`stbin.estimators._twin_numba`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from stbin.estimators._numba_config import JIT, set_threads
from stbin.estimators._philox_numba import (_philox_tile, bit_patterns, check_stream_args, half_sides, seed_words,
                                            settle_ties)
from stbin.estimators._twin_numba import check_twin
from stbin.estimators.random import TILE_BLOCKS, TILE_ELEMENTS, TILE_WORDS

_E = TILE_ELEMENTS
_W = TILE_WORDS
_TILES_PER_ITEM = 32
_I1, _I0 = np.int8(1), np.int8(0)


@njit(inline="always")
def _compare(a, w, out, s, divide, shift):
    one = out.dtype.type(1.0)
    half = out.dtype.type(0.5)
    zero = out.dtype.type(0.0)
    for i in range(out.size):
        t = a[i] / s if divide else a[i]
        p = (t + one) * half
        p = zero if p < zero else (one if p > one else p)  # NaN fails both tests: kept
        plus, minus = half_sides(p, w[i], shift, out)
        out[i] = one if plus else (-one if minus else p)  # p kept: a tie (settled later) or NaN


@njit(inline="always")
def _compare_twin(a, w, out, twin, s, divide, shift):
    """:func:`_compare`, writing ``twin[i] = sign(out[i])`` as int8 too (0 for NaN); whether a sample is NaN.

    The same operations, so the same samples. The twin is the difference of the two comparisons' booleans
    (as in the logistic kernel): ``+1``, ``-1``, and ``0`` for a tie (rewritten with the settled tie) or NaN.
    Inside the loop the twin cost +1 to 4% of the kernel's time on an AVX-512 CPU (one thread, 64 Ki to
    16 Mi elements), a loop of its own over the tile +8 to 16%. On an AVX2 CPU (AMD EPYC, Zen 3) the
    earlier form ``[x > 0] - [x < 0]`` of the sample ran at 1.77 ns an element against 0.43 for this one
    (1 Ki elements in cache; without a twin 0.23). (A form tried before on the AVX-512 CPU that selected
    the twin from the comparisons was not vectorised, 17x slower; this one is the logistic kernel's.)
    """
    one = out.dtype.type(1.0)
    half = out.dtype.type(0.5)
    zero = out.dtype.type(0.0)
    nan = False
    for i in range(out.size):
        t = a[i] / s if divide else a[i]
        p = (t + one) * half
        p = zero if p < zero else (one if p > one else p)  # NaN fails both tests: kept
        plus, minus = half_sides(p, w[i], shift, out)
        x = one if plus else (-one if minus else p)  # p kept: a tie (settled later) or NaN
        nan |= x != x
        out[i] = x
        twin[i] = (_I1 if plus else _I0) - (_I1 if minus else _I0)  # 0 for a tie: rewritten with it
    return nan


@njit(inline="always")
def _tiles(a, out, bits, one, t0, t1, tile_base, s, divide, k0, k1, o2, o3, twin):
    """Tiles ``t0 .. t1-1``; with a twin (``twin.size > 0``) its tiles too. Whether a sample was NaN."""
    w = np.empty(_W, np.uint32)
    n = out.size
    want = twin.size > 0
    nan = False
    for t in range(t0, t1):
        lo = t * _E
        hi = min(lo + _E, n)
        b = np.uint64(tile_base + t) * np.uint64(TILE_BLOCKS)
        _philox_tile(w, np.uint32(b & np.uint64(0xFFFFFFFF)), np.uint32(b >> np.uint64(32)), k0, k1, o2, o3)
        mid = min(lo + _W, hi)
        if want:
            nan |= _compare_twin(a[lo:mid], w, out[lo:mid], twin[lo:mid], s, divide, np.uint32(0))
            nan |= _compare_twin(a[mid:hi], w, out[mid:hi], twin[mid:hi], s, divide, np.uint32(16))
        else:
            _compare(a[lo:mid], w, out[lo:mid], s, divide, np.uint32(0))
            _compare(a[mid:hi], w, out[mid:hi], s, divide, np.uint32(16))
        if settle_ties(out[lo:hi], bits[lo:hi], one, w, (tile_base + t) * _E, k0, k1, o2, o3) and want:
            for i in range(lo, hi):  # the ties' twins (written as 0 by the comparison)
                x = out[i]
                twin[i] = (_I1 if x > 0 else _I0) - (_I1 if x < 0 else _I0)
    return nan


@njit(**JIT)
def _run_serial(a, out, bits, one, seed, tile_base, s, divide, twin):
    k0, k1, o2, o3 = seed_words(seed)
    return _tiles(a, out, bits, one, 0, (out.size + _E - 1) // _E, tile_base, s, divide, k0, k1, o2, o3, twin)


@njit(parallel=True, **JIT)
def _run_parallel(a, out, bits, one, seed, tile_base, s, divide, twin):
    k0, k1, o2, o3 = seed_words(seed)
    ntiles = (out.size + _E - 1) // _E
    items = (ntiles + _TILES_PER_ITEM - 1) // _TILES_PER_ITEM
    nans = np.zeros(items, np.bool_)
    for i in prange(items):
        t0 = i * _TILES_PER_ITEM
        nans[i] = _tiles(a, out, bits, one, t0, min(ntiles, t0 + _TILES_PER_ITEM), tile_base, s, divide,
                         k0, k1, o2, o3, twin)
    return nans.any()


def sample_into(a: np.ndarray, out: np.ndarray, scale: float, seed: np.ndarray, parallel: bool,
                threads: int | None = None, start: int = 0, twin: np.ndarray | None = None) -> bool:
    """``out`` <- the uniform-noise samples of ``a`` (scale ``scale``) under ``seed``; see the module docstring.

    ``a`` and ``out``: 1-D contiguous arrays of one size and dtype (float32 or float64);
    ``start`` (a multiple of 2048): the index of ``a[0]`` in the sampling call. With ``twin``
    (1-D int8 of ``a``'s size): ``twin <- sign(out)`` too, tile by tile. Returns whether the twin is
    valid (a twin was given and no sample is NaN).
    """
    check_stream_args("sample_into", (a, out), seed, start)
    tw = check_twin("sample_into", twin, a.size)
    s = a.dtype.type(scale)  # torch divides by the Python scale cast to the tensor's dtype
    bits, one = bit_patterns(out)
    if parallel:
        set_threads(threads)
        nan = _run_parallel(a, out, bits, one, seed, start // _E, s, scale != 1.0, tw)
    else:
        nan = _run_serial(a, out, bits, one, seed, start // _E, s, scale != 1.0, tw)
    return twin is not None and not nan
