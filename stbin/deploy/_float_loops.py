"""Compiled loops of the float side of the engine: threshold-and-pack, small float GEMMs (the
latency path, fused with the first layer's threshold), unpacking of bits to ±1 floats, and the
real-valued path of residual networks (real output stage, affine, add, option-A shortcut, average pooling).

As in :mod:`stbin.deploy._loops`, these trust their arguments: call them through the checked
entry points of :mod:`stbin.deploy.kernels`. Each has a serial twin (``*_serial``).
"""

from __future__ import annotations

import numpy as np

from stbin.deploy._loops import _JIT, _serial, njit, prange  # first: the install hint if numba is missing


# The maps' loops (here and in _loops' convolutions) share one deliberate shape: a parallel loop over the
# (image, output row) pairs of the batch, one task per row, each kernel with its own specialised body.
@njit(parallel=True, **_JIT)
def float_sign_pack_nchw(Y, S, T, out):  # type: ignore[no-untyped-def]
    """Threshold an NCHW float map per channel and pack it to NHWC bits (N, H, W, ceil(C/64)):
    bit c of out[n, y, x] = not (S[c] * Y[n, c, y, x] >= T[c]).

    Parallel over the rows of the batch (n, y); per 64-channel group the words of the row's pixels
    are built in a contiguous buffer, the loop over pixels innermost, branch-free: it reads each
    channel's row contiguously and vectorises (compare, select, variable shift, or on 8 words)."""
    n, c, h, w_ = Y.shape
    cw = out.shape[3]
    for t in prange(n * h):
        nidx = t // h
        y = t % h
        words = np.empty(w_, np.uint64)
        for g in range(cw):
            for x in range(w_):
                words[x] = 0
            for ch in range(g * 64, min(c, g * 64 + 64)):
                s = S[ch]
                th = T[ch]
                sh = np.uint64(ch - g * 64)
                for x in range(w_):
                    words[x] |= (np.uint64(0) if s * Y[nidx, ch, y, x] >= th else np.uint64(1)) << sh
            for x in range(w_):
                out[nidx, y, x, g] = words[x]


@njit(**_JIT)
def _pack_row(y, S, T, out):  # type: ignore[no-untyped-def]
    """out[g] = the words of one row: bit j = not (S[j] * y[j] >= T[j]), a branch-free or-reduction (vectorised)."""
    m = y.shape[0]
    for g in range(out.shape[0]):
        word = np.uint64(0)
        for j in range(g * 64, min(m, g * 64 + 64)):
            word |= (np.uint64(0) if S[j] * y[j] >= T[j] else np.uint64(1)) << np.uint64(j - g * 64)
        out[g] = word


@njit(**_JIT)
def _dense_row(x, Wt, b, out):  # type: ignore[no-untyped-def]
    """out = x @ Wt + b for one row: Wt (K, M) input-major, the inner loop over M contiguous outputs
    vectorises without reordering any sum (fastmath off); four inputs per pass over the row (a quarter
    of its loads and stores, the same sum order as one at a time)."""
    k = x.shape[0]
    m = Wt.shape[1]
    for j in range(m):
        out[j] = 0.0
    kk = 0
    while kk + 4 <= k:
        x0, x1, x2, x3 = x[kk], x[kk + 1], x[kk + 2], x[kk + 3]
        for j in range(m):
            out[j] = (((out[j] + x0 * Wt[kk, j]) + x1 * Wt[kk + 1, j]) + x2 * Wt[kk + 2, j]) + x3 * Wt[kk + 3, j]
        kk += 4
    for kr in range(kk, k):
        xv = x[kr]
        for j in range(m):
            out[j] += xv * Wt[kr, j]
    for j in range(m):
        out[j] += b[j]


@njit(parallel=True, **_JIT)
def float_sign_pack(Y, S, T, out):  # type: ignore[no-untyped-def]
    """Threshold float rows and pack them: bit j of out[i] = not (S[j] * Y[i, j] >= T[j]); parallel over rows."""
    for i in prange(Y.shape[0]):
        _pack_row(Y[i], S, T, out[i])


@njit(parallel=True, **_JIT)
def float_dense(X, Wt, b, out):  # type: ignore[no-untyped-def]
    """out = X @ Wt + b for a few rows (the latency path), parallel over rows."""
    for i in prange(X.shape[0]):
        _dense_row(X[i], Wt, b, out[i])


@njit(parallel=True, **_JIT)
def float_dense_sign(X, Wt, b, S, T, acc, out):  # type: ignore[no-untyped-def]
    """First layer fused with its folded batch norm + sign and the packing, in one pass per row:
    y = X[i] @ Wt + b (as :func:`float_dense`), bit j of out[i] = not (S[j] * y_j >= T[j]) while the row
    is in L1; ``acc`` (N, M) float32 is scratch."""
    for i in prange(X.shape[0]):
        _dense_row(X[i], Wt, b, acc[i])
        _pack_row(acc[i], S, T, out[i])


@njit(parallel=True, **_JIT)
def unpack_float(X, k_bits, out):  # type: ignore[no-untyped-def]
    """±1 float32 values of the first ``k_bits`` bits of each packed row: out (N, k_bits). Word by word, the
    64 values of a word branch-free (``1 - 2 bit``: vectorised; 8x the per-bit loop at 64 x 512)."""
    n = X.shape[0]
    full = k_bits // 64
    for i in prange(n):
        for w in range(full):
            word = X[i, w]
            for b in range(64):
                bit = (word >> np.uint64(b)) & np.uint64(1)
                out[i, w * 64 + b] = np.float32(1.0) - np.float32(2.0) * np.float32(bit)
        for j in range(full * 64, k_bits):
            bit = (X[i, full] >> np.uint64(j - full * 64)) & np.uint64(1)
            out[i, j] = np.float32(1.0) - np.float32(2.0) * np.float32(bit)


@njit(parallel=True, **_JIT)
def unpack_float_nchw(X, c_bits, out):  # type: ignore[no-untyped-def]
    """±1 float32 NCHW map (N, C, H, W) of channel-packed NHWC bits X (N, H, W, ceil(C/64))."""
    n, c, h, w_ = out.shape
    for t in prange(n * h):
        nidx = t // h
        y = t % h
        for ch in range(c_bits):
            g = ch // 64
            sh = np.uint64(ch % 64)
            for x in range(w_):
                out[nidx, ch, y, x] = -1.0 if (X[nidx, y, x, g] >> sh) & np.uint64(1) else 1.0


@njit(parallel=True, **_JIT)
def real_out(dot, scale, bias, out):  # type: ignore[no-untyped-def]
    """out = float32(dot) * scale + bias per column (the real-valued output of ``bdense_f``)."""
    n, m = dot.shape
    for i in prange(n):
        for j in range(m):
            out[i, j] = np.float32(dot[i, j]) * scale[j] + bias[j]


@njit(parallel=True, **_JIT)
def affine(X, alpha, beta, out):  # type: ignore[no-untyped-def]
    """out[n, c, r] = X[n, c, r] * alpha[c] + beta[c] (two roundings, as numpy's ``x * a + b``)."""
    n, c, r = X.shape
    for t in prange(n * c):
        i = t // c
        ch = t % c
        a = alpha[ch]
        b = beta[ch]
        for k in range(r):
            out[i, ch, k] = X[i, ch, k] * a + b


@njit(parallel=True, **_JIT)
def add(A, B, out):  # type: ignore[no-untyped-def]
    """out = A + B on flat float32 arrays (in blocks of 4096, in parallel)."""
    size = out.shape[0]
    for t in prange((size + 4095) // 4096):
        for k in range(t * 4096, min(size, t * 4096 + 4096)):
            out[k] = A[k] + B[k]


@njit(parallel=True, **_JIT)
def zero_pad_shortcut(X, stride_h, stride_w, before, out):  # type: ignore[no-untyped-def]
    """Option-A shortcut: out[:, before + c] = X[:, c, ::stride_h, ::stride_w], every other channel 0."""
    n, c, h, w_ = X.shape
    _, oc, oh, ow = out.shape
    for t in prange(n * oc):
        i = t // oc
        ch = t % oc - before
        for y in range(oh):
            for x in range(ow):
                out[i, t % oc, y, x] = X[i, ch, y * stride_h, x * stride_w] if 0 <= ch < c else np.float32(0)


@njit(parallel=True, **_JIT)
def avgpool2d(X, kh, kw, stride_h, stride_w, out):  # type: ignore[no-untyped-def]
    """Average pooling without padding: per output, taps summed row by row from 0, then divided by their number."""
    n, c, oh, ow = out.shape
    div = np.float32(kh * kw)
    for t in prange(n * c):
        i = t // c
        ch = t % c
        for y in range(oh):
            for x in range(ow):
                s = np.float32(0)
                for u in range(kh):
                    for v in range(kw):
                        s += X[i, ch, y * stride_h + u, x * stride_w + v]
                out[i, ch, y, x] = s / div


# Explicit twin declarations on purpose, as in _loops (one module attribute a kernel, found by name).
float_sign_pack_serial = _serial(float_sign_pack, "float_sign_pack_serial")
float_sign_pack_nchw_serial = _serial(float_sign_pack_nchw, "float_sign_pack_nchw_serial")
float_dense_serial = _serial(float_dense, "float_dense_serial")
float_dense_sign_serial = _serial(float_dense_sign, "float_dense_sign_serial")
unpack_float_serial = _serial(unpack_float, "unpack_float_serial")
unpack_float_nchw_serial = _serial(unpack_float_nchw, "unpack_float_nchw_serial")
real_out_serial = _serial(real_out, "real_out_serial")
affine_serial = _serial(affine, "affine_serial")
add_serial = _serial(add, "add_serial")
zero_pad_shortcut_serial = _serial(zero_pad_shortcut, "zero_pad_shortcut_serial")
avgpool2d_serial = _serial(avgpool2d, "avgpool2d_serial")
