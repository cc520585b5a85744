r"""One-pass CPU kernel of the logistic straight-through backward (numba).

``logistic_st_grad_into(g, a, scale, out)``: ``out = g * (2/s) * F'(a/s)`` with the logistic
density :math:`F'(t) = \sigma(t)(1 - \sigma(t)) = e^{-|t|} / (1 + e^{-|t|})^2`, in one read
of ``g`` and ``a`` and one write of ``out``, with ``t = a * float32(1/s)`` (one division per
element fewer; at most one float32 rounding more than ``a / s``) (torch needs three elementwise passes and a
sigmoid buffer). The second form has no cancellation for large :math:`|t|` (where
:math:`1 - \sigma(t)` loses all its digits in float32); the result equals the closed form
within a few float32 ulp (tested against float64 on every path).

:math:`e^{x}` for :math:`x = -|t| \le 0` is evaluated with only exactly rounded float32
operations, so that LLVM vectorises the loop: :math:`x = k \ln 2 + r` with
:math:`k = \operatorname{round}(x / \ln 2)` (the round-to-nearest of adding and subtracting
:math:`1.5 \cdot 2^{23}`) and :math:`\ln 2` split in two parts (Cody and Waite), so that
:math:`|r| \le \ln 2 / 2`; :math:`e^{r}` by the degree-7 polynomial of Cephes' ``expf``
(S. L. Moshier, *Methods and Programs for Mathematical Functions*, 1989); :math:`2^k` by
writing :math:`k + 127` into the exponent bits. Below :math:`x = -87` (where
:math:`2^k` would leave the normal range) :math:`e^{x}` is taken as 0, so ``a = ±inf``
gives a zero factor; NaN in ``a`` gives NaN.

The loops are compiled with the one fast-math flag ``contract`` (a product and a sum fused
into one FMA instruction, rounded once instead of twice; the result stays within a few
float32 ulp of the closed form, tested on every path), which makes the kernel about 1.4x faster on AVX2/AVX-512 (0.81 against 1.15 ns
per element on the project machine; ReLU's backward takes 0.63 there).

float32 arrays only (1-D, contiguous, one size); ``parallel=True`` runs the loop over
numba's threads (``prange``), with results identical to the serial loop.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from stbin.estimators._numba_config import JIT, set_threads

_f32 = np.float32
_LOG2E = _f32(1.44269504088896341)
_MAGIC = _f32(12582912.0)  # 1.5 * 2^23: x + MAGIC - MAGIC rounds x to an integer (|x| < 2^22)
_C1, _C2 = _f32(0.693359375), _f32(-2.12194440e-4)  # ln 2 = C1 + C2, C1 with 9 significant bits
_P = tuple(_f32(v) for v in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                             1.6666665459e-1, 5.0000001201e-1))
_LO = _f32(-87.0)
_ONE, _ZERO = _f32(1.0), _f32(0.0)
#: FMA contraction only: no flag that changes NaN, infinity or signed-zero handling
_JIT = dict(JIT, fastmath={"contract"})


@intrinsic
def _bits_to_f32(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits`` (an LLVM bitcast: free, vectorisable)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@njit(inline="always")
def _exp_nonpositive(x):
    """:math:`e^x` for float32 ``x <= 0`` (0 below -87; NaN for NaN); see the module docstring."""
    xc = _LO if x < _LO else x
    k = (xc * _LOG2E + _MAGIC) - _MAGIC
    r = (xc - k * _C1) - k * _C2
    p = _P[0]
    p = p * r + _P[1]
    p = p * r + _P[2]
    p = p * r + _P[3]
    p = p * r + _P[4]
    p = p * r + _P[5]
    e = (((p * r) * r + r) + _ONE) * _bits_to_f32((np.int32(k) + np.int32(127)) << np.int32(23))
    return _ZERO if x < _LO else e


@njit(inline="always")
def _element(g, a, inv_s, c):
    t = a * inv_s
    e = _exp_nonpositive(-abs(t))
    d = _ONE + e
    v = g * (c * (e / (d * d)))
    return a if a != a else v


@njit(**_JIT)
def _st_serial(g, a, inv_s, c, out):
    for i in range(a.size):
        out[i] = _element(g[i], a[i], inv_s, c)


@njit(parallel=True, **_JIT)
def _st_parallel(g, a, inv_s, c, out):
    for i in prange(a.size):
        out[i] = _element(g[i], a[i], inv_s, c)


def logistic_st_grad_into(g: np.ndarray, a: np.ndarray, scale: float, out: np.ndarray, parallel: bool = False,
                          threads: int | None = None) -> None:
    """``out <- g * (2/scale) * F'(a/scale)`` for float32 arrays; see the module docstring."""
    for x in (g, a, out):
        if x.ndim != 1 or not x.flags.c_contiguous or x.dtype != np.float32 or x.size != a.size:
            raise ValueError(f"logistic_st_grad_into needs 1-D contiguous float32 arrays of one size, "
                             f"got {x.dtype} {x.shape}")
    inv_s, c = _f32(1.0 / scale), _f32(2.0 / scale)
    if parallel:
        set_threads(threads)
        _st_parallel(g, a, inv_s, c, out)
    else:
        _st_serial(g, a, inv_s, c, out)
