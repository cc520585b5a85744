"""The screened first layer (:mod:`stbin.deploy._screen_loops`): its operands, built once per layer, and
its checked entry point.

:func:`screen_operands` quantises the weights of a float32 dense layer (``W`` (M, K)) to int8 per output
and keeps, for each output, the norms that bound the screen's error (every norm rounded **up** by a
margin far above float64's rounding); :func:`screened_dense_sign` runs the loop with the conventions of
:mod:`stbin.deploy.kernels` (every argument checked first, a one-line ValueError naming it). The result is
bit for bit :func:`stbin.deploy.kernels.float_dense_sign`'s on the same operands (tests/deploy).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from stbin.deploy._screen_loops import HAVE_VNNI
from stbin.deploy.kernels import _arr, _launch, _shape, _thresholds, scratch
from stbin.deploy.packing import n_words

#: the largest input width screened (each byte plane's int32 sums reach 255 * 127 * K); wider layers keep the fused loop
MAX_K = 1 << 16


class ScreenOperands(NamedTuple):
    Q: np.ndarray  # (Mp / 64, Kp / 4, 256) int8: Q[c, g, 4 l + t] = q_{64c+l, 4g+t} (K, M padded to Kp, Mp with 0)
    R: np.ndarray  # (M, Kp) int8, the residual's weights, output-major (padded with 0)
    W: np.ndarray  # (M, K) float32, the layer's weights
    Wt: np.ndarray  # (K, M) float32, W.T contiguous
    colc: np.ndarray  # (5, M) float64: s, s2, ||W_j||, ||W_j - s q_j||, ||W_j - s q_j - s2 r_j||
    csum: np.ndarray  # (2, M) int32: sum_k q_kj, sum_k r_jk


def _int8(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``a`` (float64): scale ``s = max|a| / 127`` (1 for a zero row) and ``rint(a / s)`` in int8."""
    s = np.abs(a).max(axis=1) / 127.0
    s[s == 0] = 1.0
    return s, np.clip(np.rint(a / s[:, None]), -127, 127).astype(np.int8)


def screen_operands(W: np.ndarray, Wt: np.ndarray, b: np.ndarray, S: np.ndarray,
                    T: np.ndarray) -> ScreenOperands | None:
    """The screen's operands for the layer ``y = x W^T + b`` followed by ``S * y >= T``; None where the screen does
    not apply (a non-finite weight, bias or threshold: the monotonicity argument needs finite values; ``K``
    above :data:`MAX_K`): the layer then keeps the fused loop."""
    m, k = W.shape
    if (not HAVE_VNNI or not (0 < k <= MAX_K and m > 0) or W.dtype != np.float32
            or not all(np.isfinite(a).all() for a in (W, b, S, T))):
        return None
    W64 = W.astype(np.float64)
    s1, q = _int8(W64)
    e1 = W64 - s1[:, None] * q
    s2, r = _int8(e1)
    e2 = e1 - s2[:, None] * r
    norm = np.sqrt((W64 ** 2).sum(axis=1))
    up = 1.0 + 2.0 ** -30
    # each error is computed in float64 with an absolute error below 2^-52 |W_kj| per weight: allow 2^-48 ||W_j||
    colc = np.stack([s1, s2, norm * up, np.sqrt((e1 ** 2).sum(axis=1)) * up + norm * 2.0 ** -48,
                     np.sqrt((e2 ** 2).sum(axis=1)) * up + norm * 2.0 ** -48])
    mp, kp = -(-m // 64) * 64, -(-k // 64) * 64
    qp = np.zeros((mp, kp), np.int8)
    qp[:m, :k] = q
    Q = np.ascontiguousarray(qp.reshape(mp // 64, 64, kp // 4, 4).transpose(0, 2, 1, 3).reshape(mp // 64, kp // 4, 256))
    rp = np.zeros((m, kp), np.int8)
    rp[:, :k] = r
    csum = np.stack([q.sum(axis=1, dtype=np.int64), r.sum(axis=1, dtype=np.int64)]).astype(np.int32)
    return ScreenOperands(Q, rp, np.ascontiguousarray(W), Wt, np.ascontiguousarray(colc), csum)


def screened_dense_sign(X: np.ndarray, ops: ScreenOperands, b: np.ndarray, S: np.ndarray, T: np.ndarray,
                        out: np.ndarray) -> None:
    """Bit j of out[i] = not (S[j] * (X[i] @ W.T + b)[j] >= T[j]), bit for bit ``kernels.float_dense_sign(X, Wt,
    b, S, T, out)``: X (N, K) float32, ``ops`` from :func:`screen_operands`, b, S, T (M,) float32, out (N,
    ceil(M/64)) uint64; X C-contiguous."""
    kn = "screened_dense_sign"
    _arr(kn, "X", X, np.float32, 2)
    m, k = ops.W.shape
    _shape(kn, "X", X, (X.shape[0], k))
    if not X.flags.c_contiguous:
        raise ValueError(f"{kn}: X must be C-contiguous (the row set-up loads it by flat offsets)")
    mp, kp = -(-m // 64) * 64, -(-k // 64) * 64
    for name, a, dt, shape in (("Q", ops.Q, np.int8, (mp // 64, kp // 4, 256)), ("R", ops.R, np.int8, (m, kp)),
                               ("W", ops.W, np.float32, (m, k)), ("Wt", ops.Wt, np.float32, (k, m)),
                               ("colc", ops.colc, np.float64, (5, m)), ("csum", ops.csum, np.int32, (2, m))):
        _arr(kn, name, a, dt, len(shape))
        _shape(kn, name, a, shape)
        if not a.flags.c_contiguous:
            raise ValueError(f"{kn}: {name} must be C-contiguous")
    if not HAVE_VNNI or k > MAX_K:
        raise ValueError(f"{kn}: needs a CPU with AVX-512 VNNI and K <= {MAX_K} (see screen_operands)")
    _arr(kn, "b", b, np.float32, 1)
    _shape(kn, "b", b, (m,))
    _thresholds(kn, S, T, np.float32, m)
    _arr(kn, "out", out, np.uint64, 2)
    _shape(kn, "out", out, (X.shape[0], n_words(m)))
    n = X.shape[0]
    P, U, Z = scratch((n, k), np.float64), scratch((n, 2, kp), np.uint8), scratch((n, 2, mp), np.int32)
    A, D, acc = scratch((n, m), np.float64), scratch((n, m), np.int8), scratch((n, m), np.float32)
    _launch(kn, n * k * m // 64, X, ops.Q, ops.R, ops.W, ops.Wt, b, S, T, ops.colc, ops.csum, P, U, Z, A, D, acc, out)
