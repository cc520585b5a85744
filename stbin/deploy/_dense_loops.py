"""Compiled loops of the binary dense layers on word-major weights (numba JIT, cached on disk):
:func:`bdense_sign` (fused threshold + packing) and :func:`bdense_dot` (int32 dot products), and of a
float layer on packed ±1 inputs (:func:`bits_dense`, the last layer of a binary MLP), with
their serial twins. Unchecked, as in :mod:`stbin.deploy._loops`: call them through
:func:`stbin.deploy.kernels.bdense_sign` / :func:`stbin.deploy.kernels.bdense_dot`, which check
every argument first (including that ``X``, ``Wt`` and ``acc`` are C-contiguous: the loops index them by
flat offsets).

A dense layer is a 1x1 convolution of one pixel: the weights are stored **word-major**,
``Wt`` (KW, M) (word k of output j at ``Wt[k, j]``), so that eight adjacent outputs' words are one
512-bit load and their popcounts one ``vpopcntq`` (:func:`stbin.deploy._simd.v8_xorpop`).
Rows go in blocks of four with 16 outputs each (8 accumulators in registers: every weight vector
is loaded once for the four rows); the remaining rows one at a time, the remaining outputs (M not a
multiple of 16) in a block of 8 and then one by one. Integer sums: the result is exactly
``K - 2 popcount(x XOR w)`` whatever the order (tests compare with the row-major GEMM).
"""

from __future__ import annotations

import numpy as np

from stbin.deploy._simd import f16_add, f16_load_n, f16_store_n, f16_zero, load_u64, v8_store, v8_xorpop, v8_zero
from stbin.deploy._loops import _JIT, _serial, njit, popcount64, prange, threshold_word, unit_signs

_ROWS = 4


@njit(inline="always", **_JIT)
def _block_rows(X, Wt, i0, rows, acc):  # type: ignore[no-untyped-def]
    """acc[i, j] = popcount(X[i] ^ W[j]) for rows i0 .. i0 + rows - 1 (``rows`` <= 4) and every output j."""
    kw, m = Wt.shape
    o = 0
    while o + 16 <= m:
        if rows == _ROWS:
            a0 = b0 = a1 = b1 = a2 = b2 = a3 = b3 = v8_zero()
            for k in range(kw):
                wi = k * m + o
                x0 = load_u64(X, i0 * kw + k)
                x1 = load_u64(X, (i0 + 1) * kw + k)
                x2 = load_u64(X, (i0 + 2) * kw + k)
                x3 = load_u64(X, (i0 + 3) * kw + k)
                a0 = v8_xorpop(a0, Wt, wi, x0)
                b0 = v8_xorpop(b0, Wt, wi + 8, x0)
                a1 = v8_xorpop(a1, Wt, wi, x1)
                b1 = v8_xorpop(b1, Wt, wi + 8, x1)
                a2 = v8_xorpop(a2, Wt, wi, x2)
                b2 = v8_xorpop(b2, Wt, wi + 8, x2)
                a3 = v8_xorpop(a3, Wt, wi, x3)
                b3 = v8_xorpop(b3, Wt, wi + 8, x3)
            base = i0 * m + o
            v8_store(a0, acc, base)
            v8_store(b0, acc, base + 8)
            v8_store(a1, acc, base + m)
            v8_store(b1, acc, base + m + 8)
            v8_store(a2, acc, base + 2 * m)
            v8_store(b2, acc, base + 2 * m + 8)
            v8_store(a3, acc, base + 3 * m)
            v8_store(b3, acc, base + 3 * m + 8)
        else:
            for r in range(rows):
                a = b = v8_zero()
                for k in range(kw):
                    x = load_u64(X, (i0 + r) * kw + k)
                    a = v8_xorpop(a, Wt, k * m + o, x)
                    b = v8_xorpop(b, Wt, k * m + o + 8, x)
                v8_store(a, acc, (i0 + r) * m + o)
                v8_store(b, acc, (i0 + r) * m + o + 8)
        o += 16
    if o + 8 <= m:
        for r in range(rows):
            a = v8_zero()
            for k in range(kw):
                a = v8_xorpop(a, Wt, k * m + o, load_u64(X, (i0 + r) * kw + k))
            v8_store(a, acc, (i0 + r) * m + o)
        o += 8
    for j in range(o, m):
        for r in range(rows):
            s = np.uint64(0)
            for k in range(kw):
                s += popcount64(load_u64(X, (i0 + r) * kw + k) ^ load_u64(Wt, k * m + j))
            acc[i0 + r, j] = s


@njit(parallel=True, **_JIT)
def bdense_sign(X, Wt, k_bits, S, T, acc, out):  # type: ignore[no-untyped-def]
    """Bit j of out[i] = not (S[j] * dot_ij >= T[j]), dot_ij = K - 2 popcount(X[i] ^ W[j]); ``acc`` (N, M)
    uint64 is scratch. Parallel over blocks of four rows."""
    n = X.shape[0]
    m = Wt.shape[1]
    ow = out.shape[1]
    kk = np.int64(k_bits)
    unit = unit_signs(S)
    for t in prange((n + _ROWS - 1) // _ROWS):
        i0 = t * _ROWS
        rows = min(_ROWS, n - i0)
        _block_rows(X, Wt, i0, rows, acc)
        for i in range(i0, i0 + rows):
            for g in range(ow):
                hi = min(m, g * 64 + 64)
                if unit:  # two calls with a constant flag: each inlined loop specialised (no branch inside)
                    out[i, g] = threshold_word(acc, i, kk, S, T, g * 64, hi, True)
                else:
                    out[i, g] = threshold_word(acc, i, kk, S, T, g * 64, hi, False)


@njit(parallel=True, **_JIT)
def bdense_dot(X, Wt, k_bits, acc, out):  # type: ignore[no-untyped-def]
    """out[i, j] = K - 2 popcount(X[i] ^ W[j]) (int32); ``acc`` (N, M) uint64 is scratch."""
    n = X.shape[0]
    m = Wt.shape[1]
    kk = np.int64(k_bits)
    for t in prange((n + _ROWS - 1) // _ROWS):
        i0 = t * _ROWS
        rows = min(_ROWS, n - i0)
        _block_rows(X, Wt, i0, rows, acc)
        for i in range(i0, i0 + rows):
            for j in range(m):
                out[i, j] = np.int32(kk - 2 * np.int64(acc[i, j]))


@njit(inline="always", **_JIT)
def _term(Wpm, word, k, m, o, w):  # type: ignore[no-untyped-def]
    """The lanes ``x_k * Wt[k, o:o + w]`` for the input bit ``word & 1`` (set: x_k = -1): a masked load from the
    half of ``Wpm`` that holds the products with that sign."""
    return f16_load_n(Wpm, np.int64(word & np.uint64(1)) * (Wpm.size // 2) + k * m + o, w)


@njit(parallel=True, **_JIT)
def bits_dense(X, k_bits, Wpm, b, out):  # type: ignore[no-untyped-def]
    """A float layer on packed ±1 inputs: out[i] = x_i @ Wt + b with x_ik = -1 where bit k of X[i] is set, else +1.
    ``Wpm`` (2, K, M) holds the products ``(+1.0 * Wt, -1.0 * Wt)`` (float32 products computed once per layer:
    :func:`stbin.deploy.dense_kernels.signed_weights`); ``Wpm`` and ``out`` C-contiguous. The same operations, in
    the same order, as ``unpack_float`` followed by ``float_dense`` (a sum from +0.0 over k = 0, 1, ... of the
    products ``x_ik * Wt[k, j]``, then ``+ b[j]``), so the result is bit for bit theirs, without the (N, K) float
    intermediate.

    Why it is shaped so: the sum over k is one chain of dependent float32 additions per output, so its latency
    bounds the loop. The running sums of 16 outputs stay in one f32x16 register (an ``out[i, j] +=`` in memory
    would make every step wait for the previous step's store), each step only selects its product row by the
    input bit (no conversion, broadcast or multiply on the way), and four rows run as four independent chains.
    A block of fewer than 16 outputs (M = 10: all of them) uses masked loads and stores
    (:func:`~stbin.deploy._simd.f16_load_n`): no padding. Parallel over blocks of four rows."""
    n, kw = X.shape
    m = Wpm.shape[2]
    for t in prange((n + _ROWS - 1) // _ROWS):
        i0 = t * _ROWS
        rows = min(_ROWS, n - i0)
        for o in range(0, m, 16):
            w = min(16, m - o)
            if rows == _ROWS:
                a0 = a1 = a2 = a3 = f16_zero()
                for g in range(kw):
                    x0, x1, x2, x3 = X[i0, g], X[i0 + 1, g], X[i0 + 2, g], X[i0 + 3, g]
                    for k in range(g * 64, min(k_bits, g * 64 + 64)):
                        a0 = f16_add(a0, _term(Wpm, x0, k, m, o, w))
                        a1 = f16_add(a1, _term(Wpm, x1, k, m, o, w))
                        a2 = f16_add(a2, _term(Wpm, x2, k, m, o, w))
                        a3 = f16_add(a3, _term(Wpm, x3, k, m, o, w))
                        x0, x1, x2, x3 = x0 >> np.uint64(1), x1 >> np.uint64(1), x2 >> np.uint64(1), x3 >> np.uint64(1)
                bias = f16_load_n(b, o, w)
                f16_store_n(f16_add(a0, bias), out, i0 * m + o, w)
                f16_store_n(f16_add(a1, bias), out, (i0 + 1) * m + o, w)
                f16_store_n(f16_add(a2, bias), out, (i0 + 2) * m + o, w)
                f16_store_n(f16_add(a3, bias), out, (i0 + 3) * m + o, w)
            else:
                for i in range(i0, i0 + rows):
                    a = f16_zero()
                    for g in range(kw):
                        x = X[i, g]
                        for k in range(g * 64, min(k_bits, g * 64 + 64)):
                            a = f16_add(a, _term(Wpm, x, k, m, o, w))
                            x >>= np.uint64(1)
                    f16_store_n(f16_add(a, f16_load_n(b, o, w)), out, i * m + o, w)


@njit(inline="always", **_JIT)
def _planes_dot(Q, i, Wt, pcw, planes, acc, out):  # type: ignore[no-untyped-def]
    """out[j] = sum_k Q[i, k] w_jk exactly for row i (see :func:`bitserial_dot`)."""
    k = Q.shape[1]
    kw, m = Wt.shape
    r0 = 8 * i
    for w in range(kw):  # per word and plane, an OR-reduction over 64 bytes (vectorised)
        lo = w * 64
        hi = min(k, lo + 64)
        for p in range(8):
            word = np.uint64(0)
            for kk in range(lo, hi):
                word |= ((np.uint64(Q[i, kk]) >> np.uint64(p)) & np.uint64(1)) << np.uint64(kk - lo)
            planes[r0 + p, w] = word
    _block_rows(planes, Wt, r0, 4, acc)
    _block_rows(planes, Wt, r0 + 4, 4, acc)
    for j in range(m):
        out[j] = -255 * pcw[j]
    for p in range(8):
        for j in range(m):
            out[j] += np.int64(acc[r0 + p, j]) << p


@njit(parallel=True, **_JIT)
def bitserial_sign(X, grid, Wt, pcw, coef, S, T, Q, planes, acc, dot, out):  # type: ignore[no-untyped-def]
    """A binary-weight first layer on 8-bit-grid inputs, with its folded threshold and the packing.

    Each input value must be ``x = grid[1] + grid[0] * q`` for an integer ``q`` in 0..255, up to ``grid[2]``
    (a ValueError otherwise); ``q`` goes to Q (N, K) uint8 (scratch). The exact integer ``z_j = sum_k q_k w_jk``
    (:func:`bitserial_dot`; dot (N, M) int64 scratch) gives the pre-activation ``y_j = coef[0, j] * z_j +
    coef[1, j]`` in float64 (``coef`` folds the grid, the weight scale and the bias), and bit j of out[i] is set
    unless ``S[j] * y_j >= T[j]``."""
    n, k = X.shape
    m = Wt.shape[1]
    scale = grid[0]
    offset = grid[1]
    tol = grid[2]
    bad = np.zeros(n, np.uint8)
    for i in prange(n):
        for kk in range(k):
            x = np.float64(X[i, kk])
            q = np.rint((x - offset) / scale)
            if not (0.0 <= q <= 255.0 and abs(x - (offset + scale * q)) <= tol):
                bad[i] = 1
                q = 0.0
            Q[i, kk] = np.uint8(q)
        _planes_dot(Q, i, Wt, pcw, planes, acc, dot[i])
        for g in range(out.shape[1]):
            word = np.uint64(0)
            for j in range(g * 64, min(m, g * 64 + 64)):
                y = coef[0, j] * np.float64(dot[i, j]) + coef[1, j]
                word |= (np.uint64(0) if np.float64(S[j]) * y >= np.float64(T[j]) else np.uint64(1)) << np.uint64(j - g * 64)
            out[i, g] = word
    for i in range(n):  # after the parallel loop (raising inside it would keep it serial)
        if bad[i]:
            raise ValueError("an input value is not on the network's declared 8-bit input grid "
                             "(meta['input_grid']: x = offset + scale * q, q an integer in 0..255)")


@njit(parallel=True, **_JIT)
def bitserial_dot(Q, Wt, pcw, planes, acc, out):  # type: ignore[no-untyped-def]
    """out[i, j] = sum_k q_ik w_jk exactly (int64), for 8-bit integers q (Q (N, K) uint8) and ±1 weights packed
    word-major (Wt (KW, M), bit set = -1; ``pcw[j]`` = the number of -1 weights of output j).

    Bit-serial: the input row's 8 bit-planes (planes (8N, KW) uint64, scratch) XOR-popcounted against the weights
    like 8 binary rows (:func:`_block_rows`, acc (8N, M) uint64 scratch); per weight, bit p of q contributes
    2^p * (bit_p xor w_neg) - 255 * w_neg over the planes, so ``sum_p 2^p popcount(plane_p ^ W_j) - 255 pcw[j]``
    is the exact dot product (tail bits are 0 in planes and weights alike)."""
    for i in prange(Q.shape[0]):
        _planes_dot(Q, i, Wt, pcw, planes, acc, out[i])


bdense_sign_serial = _serial(bdense_sign, "bdense_sign_serial")
bitserial_dot_serial = _serial(bitserial_dot, "bitserial_dot_serial")
bitserial_sign_serial = _serial(bitserial_sign, "bitserial_sign_serial")
bits_dense_serial = _serial(bits_dense, "bits_dense_serial")
bdense_dot_serial = _serial(bdense_dot, "bdense_dot_serial")
