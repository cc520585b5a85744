"""One-pass CPU kernels of the deterministic sign and of its ``htanh`` backward (numba).

* ``sign_into(x, out)``: ``out = +1`` where ``x >= 0`` (so sign(0) = sign(-0) = +1),
  ``-1`` where ``x < 0``, NaN where ``x`` is NaN — :func:`stbin.estimators._common.sign_pm1`
  in one read of ``x`` and one write of ``out``, where torch needs five elementwise passes
  and a boolean temporary (compare, convert, scale, shift, NaN mask).
* ``htanh_grad_into(g, x, clip, out)``: ``out = g * (1 if |x| <= clip else 0)``, the
  ``htanh`` straight-through backward, bit for bit the product torch computes from a float
  mask (so ``-0.0`` for a negative gradient outside the clip, NaN for a NaN gradient), in
  one pass instead of four. ``clip`` is rounded to ``x``'s dtype first, as torch does
  when it compares a tensor with a Python number.

Arrays are 1-D, contiguous and of one dtype (float32 or float64); ``parallel=True`` runs
the loop over numba's threads (``prange``), with results identical to the serial loop
(each element is computed alone). Exact IEEE arithmetic: no fast-math flags.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from stbin.estimators._numba_config import JIT, set_threads


@njit(**JIT)
def _sign_serial(x, out):
    one = x.dtype.type(1.0)
    for i in range(x.size):
        v = x[i]
        s = one if v >= 0 else -one
        out[i] = v if v != v else s


@njit(parallel=True, **JIT)
def _sign_parallel(x, out):
    one = x.dtype.type(1.0)
    for i in prange(x.size):
        v = x[i]
        s = one if v >= 0 else -one
        out[i] = v if v != v else s


@njit(**JIT)
def _htanh_serial(g, x, clip, out):
    one, zero = x.dtype.type(1.0), x.dtype.type(0.0)
    for i in range(x.size):
        out[i] = g[i] * (one if abs(x[i]) <= clip else zero)


@njit(parallel=True, **JIT)
def _htanh_parallel(g, x, clip, out):
    one, zero = x.dtype.type(1.0), x.dtype.type(0.0)
    for i in prange(x.size):
        out[i] = g[i] * (one if abs(x[i]) <= clip else zero)


def _check(*arrays: np.ndarray) -> None:
    first = arrays[0]
    for a in arrays:
        if a.ndim != 1 or not a.flags.c_contiguous or a.dtype not in (np.float32, np.float64):
            raise ValueError(f"the sign kernels need 1-D contiguous float32/float64 arrays, got {a.dtype} {a.shape}")
        if a.dtype != first.dtype or a.size != first.size:
            raise ValueError(f"the sign kernels need arrays of one dtype and size, got {first.dtype} {first.shape} "
                             f"and {a.dtype} {a.shape}")


def sign_into(x: np.ndarray, out: np.ndarray, parallel: bool = False, threads: int | None = None) -> None:
    """``out <- sign(x)`` in {-1, +1} (sign(0) = +1), NaN kept; see the module docstring."""
    _check(x, out)
    if parallel:
        set_threads(threads)
        _sign_parallel(x, out)
    else:
        _sign_serial(x, out)


def htanh_grad_into(g: np.ndarray, x: np.ndarray, clip: float, out: np.ndarray, parallel: bool = False,
                    threads: int | None = None) -> None:
    """``out <- g * 1[|x| <= clip]`` (``clip`` rounded to the arrays' dtype); see the module docstring."""
    _check(g, x, out)
    c = x.dtype.type(clip)
    if parallel:
        set_threads(threads)
        _htanh_parallel(g, x, c, out)
    else:
        _htanh_serial(g, x, c, out)
