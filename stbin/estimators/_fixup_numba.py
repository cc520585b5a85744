r"""The index work of the logistic sampler's exact fix-up, compiled (numba).

The one-pass logistic kernel (:mod:`stbin.estimators._logistic_sampling_numba`) leaves about one
element in 10 000 undecided and records it in its work item's row: index and 16-bit half-word.
:mod:`stbin.estimators._logistic_sampling` evaluates ``p = sigmoid(a / s)`` at those elements with
torch's own operations; everything around that evaluation is here, in two compiled calls instead
of some fifteen numpy and torch calls, which cost about 100 µs right after the kernel had streamed
a few MB through the caches (15 µs when timed alone):

* :func:`collect` gathers the recorded elements of the rows that did not overflow, those below
  ``tail`` first (their ``a / s`` into a zero-padded vector whose length is a multiple of
  ``align``: the whole vector takes torch's vectorised sigmoid; the division is exactly rounded, as
  torch's division by the scale cast to the array's dtype), then those at or above it;
* :func:`settle` writes each one's sample: ``+1`` iff ``u < p`` with the stream's uniform ``u``
  (:mod:`stbin.estimators.random`: the half-word decides unless ``p`` lies in its interval, then
  the tie word does), NaN where ``p`` is NaN, and its int8 twin when one is given.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stbin.estimators._numba_config import JIT
from stbin.estimators._philox_numba import tie_word

_U16 = 2.0 ** -16
_U48 = 2.0 ** -48


@njit(**JIT)
def collect(a, idx, halves, counts, tail, align, s, divide):
    """``(index, half, below, values)``: the recorded elements of every row ``r`` with ``counts[r] <= cap``
    (``cap = idx.shape[1]``), the ``below`` ones with ``index < tail`` first; ``values[:below]`` is
    ``a[index[:below]] / s`` (``a[...]`` itself unless ``divide``), zero-padded to a multiple of ``align``."""
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
    values = np.zeros((below + align - 1) // align * align, a.dtype)
    for j in range(below):
        values[j] = a[index[j]] / s if divide else a[index[j]]
    return index, half, below, values


@njit(**JIT)
def settle(out, twin, index, half, p, seed):
    """``out[index[j]]`` <- the sample of ``p[j]`` (see the module docstring), ``twin`` too when it is not empty;
    whether a sample was NaN."""
    k0, k1, o2, o3 = np.uint32(seed[0]), np.uint32(seed[1]), np.uint32(seed[2]), np.uint32(seed[3])
    one = out.dtype.type(1.0)
    nan = False
    for j in range(index.size):
        q = np.float64(p[j])
        u16 = np.float64(half[j]) * _U16
        plus = u16 + _U16 <= q
        if not plus and u16 < q:  # p inside the half-word's interval: the tie word decides
            plus = u16 + np.float64(tie_word(np.uint64(index[j]), k0, k1, o2, o3)) * _U48 < q
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
