r"""The index work of the logistic sampler's exact fix-up, compiled (numba).

The one-pass logistic kernel (:mod:`stbin.estimators._logistic_sampling_numba`) leaves about one
element in 10 000 undecided and records it in its work item's row: index and 16-bit half-word.
:mod:`stbin.estimators._logistic_sampling` evaluates ``p = sigmoid(a / s)`` at those elements with
torch's own operations; everything around that evaluation is here, in two compiled calls instead
of some fifteen numpy and torch calls, which cost about 100 µs right after the kernel had streamed
a few MB through the caches (15 µs when timed alone):

* :func:`collect` gathers the recorded elements of the rows that did not overflow, those below
  ``tail`` first, then those at or above it;
* :func:`settle_far` settles every element whose uniform ``u`` lies at least :data:`MARGIN` from
  ``sigmoid(a / s)`` evaluated in float64 (from the same rounded ``a / s``): torch's float32 sigmoid
  is within a few float32 ulp of that value, far below ``MARGIN``, so ``u < p`` comes out the same
  with torch's ``p``. Only the rest, about 2% of the recorded elements (``|u - p| < 2^-20`` against
  ``|u - p| < 3.33 * 2^-16`` for a recorded one), need torch's value: most calls skip torch;
* :func:`body_values` puts the remaining ones' ``a / s`` (below ``tail``) into a zero-padded vector whose
  length is a multiple of ``align``: the whole vector takes torch's vectorised sigmoid (the division is
  exactly rounded, as torch's division by the scale cast to the array's dtype);
* :func:`settle` writes the sample of each remaining one from torch's ``p``: ``+1`` iff ``u < p`` with
  the stream's uniform ``u`` (:mod:`stbin.estimators.random`: the half-word decides unless ``p`` lies
  in its interval, then the tie word does), NaN where ``p`` is NaN.

Both write the int8 twin too when one is given.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stbin.estimators._numba_config import JIT
from stbin.estimators._philox_numba import seed_words, stream_below, tie_word

_U16 = 2.0 ** -16
_U48 = 2.0 ** -48
#: how far from the float64 sigmoid an element's uniform must lie for :func:`settle_far` to settle it
MARGIN = 2.0 ** -20


@njit(**JIT)
def collect(idx, halves, counts, tail):
    """``(index, half, below)``: the recorded elements of every row ``r`` with ``counts[r] <= cap``
    (``cap = idx.shape[1]``), the ``below`` ones with ``index < tail`` first, each group in row order."""
    cap = idx.shape[1]
    k = 0
    below = 0
    for r in range(counts.size):
        if counts[r] <= cap:
            k += counts[r]
            for j in range(counts[r]):
                if idx[r, j] < tail:
                    below += 1
    index = np.empty(k, np.int64)
    half = np.empty(k, np.uint32)
    b, t = 0, below  # cursors: the elements below tail, the others
    for r in range(counts.size):
        if counts[r] > cap:
            continue
        for j in range(counts[r]):
            i = idx[r, j]
            if i < tail:
                index[b], half[b] = i, halves[r, j]
                b += 1
            else:
                index[t], half[t] = i, halves[r, j]
                t += 1
    return index, half, below


@njit(**JIT)
def body_values(a, index, below, align, s, divide):
    """``a[index[:below]] / s`` (``a[...]`` itself unless ``divide``), zero-padded to a multiple of ``align``."""
    values = np.zeros((below + align - 1) // align * align, a.dtype)
    for j in range(below):
        values[j] = a[index[j]] / s if divide else a[index[j]]
    return values


@njit(**JIT)
def settle(out, twin, index, half, p, seed):
    """``out[index[j]]`` <- the sample of ``p[j]`` (see the module docstring), ``twin`` too when it is not empty;
    whether a sample was NaN."""
    k0, k1, o2, o3 = seed_words(seed)
    one = out.dtype.type(1.0)
    nan = False
    for j in range(index.size):
        q = np.float64(p[j])
        plus = stream_below(half[j], index[j], q, k0, k1, o2, o3)
        i = index[j]
        if q != q:
            nan = True
            out[i] = p[j]
            s = np.int8(0)
        else:
            out[i] = one if plus else -one
            s = np.int8(1) if plus else np.int8(-1)
        if twin.size:
            twin[i] = s
    return nan


@njit(**JIT)
def settle_far(out, twin, a, index, half, s, divide, seed):
    """``(nan, pending)``: the elements ``index`` settled where the uniform lies at least :data:`MARGIN` from
    ``q = sigmoid(t)`` in float64, ``t = a[i] / s`` (``a[i]`` itself unless ``divide``) rounded in ``a``'s dtype
    as torch rounds it; NaN where ``a[i]`` is NaN. ``pending``: the positions ``j`` left for torch's value."""
    k0, k1, o2, o3 = seed_words(seed)
    one = out.dtype.type(1.0)
    pending = np.empty(index.size, np.int64)
    m = 0
    nan = False
    for j in range(index.size):
        i = index[j]
        x = a[i]
        if x != x:
            nan = True
            out[i] = x
            if twin.size:
                twin[i] = np.int8(0)
            continue
        t = x / s if divide else x
        q = 1.0 / (1.0 + np.exp(-np.float64(t)))
        u16 = np.float64(half[j]) * _U16
        if q >= u16 + _U16 + MARGIN:  # u < u16 + 2^-16 <= q - MARGIN < p
            plus = True
        elif q <= u16 - MARGIN:  # u >= u16 >= q + MARGIN > p
            plus = False
        else:
            u = u16 + np.float64(tie_word(np.uint64(i), k0, k1, o2, o3)) * _U48
            if q - u >= MARGIN:
                plus = True
            elif u - q >= MARGIN:
                plus = False
            else:
                pending[m] = j
                m += 1
                continue
        out[i] = one if plus else -one
        if twin.size:
            twin[i] = np.int8(1) if plus else np.int8(-1)
    return nan, pending[:m]


@njit(**JIT)
def collect_and_settle(out, twin, a, idx, halves, counts, tail, s, divide, seed):
    """:func:`collect` then :func:`settle_far` in one compiled call: ``(index, half, below, nan, pending)``."""
    index, half, below = collect(idx, halves, counts, tail)
    nan, pending = settle_far(out, twin, a, index, half, s, divide, seed)
    return index, half, below, nan, pending
