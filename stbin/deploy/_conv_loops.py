"""The compiled loops of the binary convolutions (numba JIT, cached on disk): :func:`bconv2d` (int32
dot products), :func:`bconv2d_sign` (fused threshold + packing) and :func:`bconv2d_float` (real-valued
NCHW output), with their serial twins. Same conventions as :mod:`stbin.deploy._loops` (unchecked:
:mod:`stbin.deploy.kernels` checks every argument first, including that ``X`` and ``Wt`` are
C-contiguous, which the flat offsets below rely on).

Per output pixel, the valid taps are computed once (no test per tap) and the output channels go in
blocks of 16 and 8 held in 512-bit registers: a numba type for an LLVM ``<8 x i64>`` vector and
intrinsics on it (:mod:`stbin.deploy._simd`) (:func:`v8_xorpop` is one load, XOR with the broadcast input word,
``vpopcntq`` and add), because LLVM did not vectorise eight scalar accumulators itself (checked in the
assembly). Measured on one ResNet-20 layer shape (batch 64, 16x32x32 -> 16, 3x3, pad 1): see
docs/performance-deploy.md.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from stbin.deploy._loops import (_JIT, _serial, popcount64, threshold_word, threshold_word_above, unit_signs,
                                 unit_thresholds)
from stbin.deploy._simd import load_u64, v8_store, v8_xorpop, v8_zero

@njit(inline="always", **_JIT)
def _valid_taps(o, stride, pad, dil, size, k):  # type: ignore[no-untyped-def]
    """The kernel offsets ``[lo, hi)`` of output position ``o`` that land inside the input:
    ``0 <= o * stride - pad + u * dil < size`` (all divisions on non-negative numbers)."""
    base = o * stride - pad
    lo = 0 if base >= 0 else (dil - 1 - base) // dil
    hi = 0 if base > size - 1 else min(k, (size - 1 - base) // dil + 1)
    return min(lo, hi), hi


@njit(inline="always", **_JIT)
def _conv_pixel(X, Wt, nidx, oy, ox, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, acc):  # type: ignore[no-untyped-def]
    """acc[o] = popcount over the valid taps of output pixel (oy, ox); returns the number of taps.

    The valid taps are computed once per pixel (no test per tap). Output channels go in blocks
    of 16 and 8 held in 512-bit registers (:func:`v8_xorpop`: one ``vpopcntq`` per input word
    and 8 channels, no store per tap); the last ``oc % 8`` channels go one at a time.
    """
    h, w_, cw = X.shape[1], X.shape[2], X.shape[3]
    kh, kw, _, oc = Wt.shape
    u0, u1 = _valid_taps(oy, stride_h, pad_h, dil_h, h, kh)
    v0, v1 = _valid_taps(ox, stride_w, pad_w, dil_w, w_, kw)
    by = oy * stride_h - pad_h
    bx = ox * stride_w - pad_w
    o = 0
    row = w_ * cw  # words per input row
    x0 = ((nidx * h + by) * w_ + bx) * cw
    while o + 16 <= oc:
        a = v8_zero()
        b = v8_zero()
        for u in range(u0, u1):
            xu = x0 + u * dil_h * row
            wu = u * kw * cw * oc + o
            if cw == 1:  # one word per pixel (up to 64 channels): no word loop
                for v in range(v0, v1):
                    xv = load_u64(X, xu + v * dil_w)
                    a = v8_xorpop(a, Wt, wu + v * oc, xv)
                    b = v8_xorpop(b, Wt, wu + v * oc + 8, xv)
            else:
                for v in range(v0, v1):
                    for k in range(cw):
                        xv = load_u64(X, xu + v * dil_w * cw + k)
                        a = v8_xorpop(a, Wt, wu + (v * cw + k) * oc, xv)
                        b = v8_xorpop(b, Wt, wu + (v * cw + k) * oc + 8, xv)
        v8_store(a, acc, o)
        v8_store(b, acc, o + 8)
        o += 16
    if o + 8 <= oc:
        a = v8_zero()
        for u in range(u0, u1):
            iy = by + u * dil_h
            for v in range(v0, v1):
                ix = bx + v * dil_w
                base = (u * kw + v) * cw * oc + o
                for k in range(cw):
                    a = v8_xorpop(a, Wt, base + k * oc, X[nidx, iy, ix, k])
        v8_store(a, acc, o)
        o += 8
    for o in range(o, oc):
        s = np.uint64(0)
        for u in range(u0, u1):
            iy = by + u * dil_h
            for v in range(v0, v1):
                ix = bx + v * dil_w
                for k in range(cw):
                    s += popcount64(X[nidx, iy, ix, k] ^ Wt[u, v, k, o])
        acc[o] = s
    return (u1 - u0) * (v1 - v0)


@njit(inline="always", **_JIT)
def _conv_row(X, Wt, nidx, oy, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, c_bits, acc, full):  # type: ignore[no-untyped-def]
    """acc[ox, o] = popcount of output pixel (oy, ox), full[ox] = ``c_bits`` x its number of valid taps,
    for the whole output row (``acc`` (OW, OC), ``full`` (OW,)).

    With one word per pixel and ``OC % 16 == 0`` (ResNet-20's layers), four adjacent pixels whose
    taps all lie inside the row go together: each weight vector is loaded once for the four, and 8
    accumulators (4 pixels x 16 channels) stay in registers; the other pixels go one by one.
    """
    h, w_, cw = X.shape[1], X.shape[2], X.shape[3]
    kh, kw, _, oc = Wt.shape
    ow = acc.shape[0]
    u0, u1 = _valid_taps(oy, stride_h, pad_h, dil_h, h, kh)
    row = (nidx * h + oy * stride_h - pad_h) * w_
    ox = 0
    while ox < ow:
        bx = ox * stride_w - pad_w
        if cw == 1 and oc % 16 == 0 and ox + 4 <= ow and bx >= 0 and bx + 3 * stride_w + (kw - 1) * dil_w < w_:
            for o in range(0, oc, 16):
                a0 = b0 = a1 = b1 = a2 = b2 = a3 = b3 = v8_zero()
                for u in range(u0, u1):
                    xu = row + u * dil_h * w_ + bx
                    wu = u * kw * oc + o
                    for v in range(kw):
                        xi = xu + v * dil_w
                        wi = wu + v * oc
                        x0 = load_u64(X, xi)
                        x1 = load_u64(X, xi + stride_w)
                        x2 = load_u64(X, xi + 2 * stride_w)
                        x3 = load_u64(X, xi + 3 * stride_w)
                        a0 = v8_xorpop(a0, Wt, wi, x0)
                        b0 = v8_xorpop(b0, Wt, wi + 8, x0)
                        a1 = v8_xorpop(a1, Wt, wi, x1)
                        b1 = v8_xorpop(b1, Wt, wi + 8, x1)
                        a2 = v8_xorpop(a2, Wt, wi, x2)
                        b2 = v8_xorpop(b2, Wt, wi + 8, x2)
                        a3 = v8_xorpop(a3, Wt, wi, x3)
                        b3 = v8_xorpop(b3, Wt, wi + 8, x3)
                base = ox * oc + o
                v8_store(a0, acc, base)
                v8_store(b0, acc, base + 8)
                v8_store(a1, acc, base + oc)
                v8_store(b1, acc, base + oc + 8)
                v8_store(a2, acc, base + 2 * oc)
                v8_store(b2, acc, base + 2 * oc + 8)
                v8_store(a3, acc, base + 3 * oc)
                v8_store(b3, acc, base + 3 * oc + 8)
            for j in range(4):
                full[ox + j] = np.int64(c_bits) * (u1 - u0) * kw
            ox += 4
        else:
            full[ox] = np.int64(c_bits) * _conv_pixel(X, Wt, nidx, oy, ox, stride_h, stride_w, pad_h, pad_w,
                                                      dil_h, dil_w, acc[ox])
            ox += 1


@njit(inline="always", **_JIT)
def _packable(X, Wt, c_bits, stride_w, pad_w, dil_w, ow):  # type: ignore[no-untyped-def]
    """Whether :func:`_conv_row_packed` applies: one word per pixel holding at most 21 channels (so that a row of
    3 taps fits one word), a 3-wide kernel with stride 1, padding 1 and no dilation across, OC % 16 == 0."""
    return (X.shape[3] == 1 and Wt.shape[1] == 3 and stride_w == 1 and pad_w == 1 and dil_w == 1 and 3 * c_bits <= 64
            and Wt.shape[3] % 16 == 0 and ow == X.shape[2])


@njit(inline="always", **_JIT)
def _pack_taps(Wt, c_bits, W3, L, R):  # type: ignore[no-untyped-def]
    """W3[u * OC + o] = the 3 taps of kernel row u of output channel o in one word (columns at bits 0, c, 2c);
    L / R: the popcount of the left / right column (subtracted where that column is padding)."""
    kh, _, _, oc = Wt.shape
    m = (np.uint64(1) << np.uint64(c_bits)) - np.uint64(1)
    cb = np.uint64(c_bits)
    for u in range(kh):
        for o in range(oc):
            a = Wt[u, 0, 0, o] & m
            c = Wt[u, 2, 0, o] & m
            W3[u * oc + o] = a | ((Wt[u, 1, 0, o] & m) << cb) | (c << (cb + cb))
            L[u * oc + o] = popcount64(a)
            R[u * oc + o] = popcount64(c)


@njit(inline="always", **_JIT)
def _conv_row_packed(X, W3, L, R, kh, nidx, oy, stride_h, pad_h, dil_h, c_bits, acc, full, xr):  # type: ignore[no-untyped-def]
    """As :func:`_conv_row` for :func:`_packable` layers (ResNet-20's 16-channel stage): the three horizontal taps of
    each pixel packed into one word (``xr``, per kernel row), so a 3x3 kernel takes 3 XOR-popcounts instead of 9
    (the word's unused bits are 0 in both operands); at the left / right border the padding column's weight bits
    are subtracted (the input's are 0 there), so that padding contributes 0 as in :func:`_conv_row`."""
    h, w_ = X.shape[1], X.shape[2]
    ow, oc = acc.shape
    u0, u1 = _valid_taps(oy, stride_h, pad_h, dil_h, h, kh)
    m = (np.uint64(1) << np.uint64(c_bits)) - np.uint64(1)
    cb = np.uint64(c_bits)
    for u in range(u0, u1):
        base = (nidx * h + oy * stride_h - pad_h + u * dil_h) * w_
        r = u * w_
        for x in range(1, w_ - 1):  # interior: branch-free, vectorised
            xr[r + x] = ((load_u64(X, base + x - 1) & m) | ((load_u64(X, base + x) & m) << cb)
                         | ((load_u64(X, base + x + 1) & m) << (cb + cb)))
        xr[r] = (load_u64(X, base) & m) << cb
        if w_ > 1:
            xr[r] |= (load_u64(X, base + 1) & m) << (cb + cb)
            xr[r + w_ - 1] = (load_u64(X, base + w_ - 2) & m) | ((load_u64(X, base + w_ - 1) & m) << cb)
    ox = 0
    while ox + 4 <= ow:  # four pixels share each weight load (8 accumulators in registers)
        for o in range(0, oc, 16):
            a0 = b0 = a1 = b1 = a2 = b2 = a3 = b3 = v8_zero()
            for u in range(u0, u1):
                wi = u * oc + o
                xi = u * w_ + ox
                x0, x1, x2, x3 = xr[xi], xr[xi + 1], xr[xi + 2], xr[xi + 3]
                a0 = v8_xorpop(a0, W3, wi, x0)
                b0 = v8_xorpop(b0, W3, wi + 8, x0)
                a1 = v8_xorpop(a1, W3, wi, x1)
                b1 = v8_xorpop(b1, W3, wi + 8, x1)
                a2 = v8_xorpop(a2, W3, wi, x2)
                b2 = v8_xorpop(b2, W3, wi + 8, x2)
                a3 = v8_xorpop(a3, W3, wi, x3)
                b3 = v8_xorpop(b3, W3, wi + 8, x3)
            base = ox * oc + o
            v8_store(a0, acc, base)
            v8_store(b0, acc, base + 8)
            v8_store(a1, acc, base + oc)
            v8_store(b1, acc, base + oc + 8)
            v8_store(a2, acc, base + 2 * oc)
            v8_store(b2, acc, base + 2 * oc + 8)
            v8_store(a3, acc, base + 3 * oc)
            v8_store(b3, acc, base + 3 * oc + 8)
        ox += 4
    for ox in range(ox, ow):
        for o in range(0, oc, 16):
            a = v8_zero()
            b = v8_zero()
            for u in range(u0, u1):
                xv = xr[u * w_ + ox]
                a = v8_xorpop(a, W3, u * oc + o, xv)
                b = v8_xorpop(b, W3, u * oc + o + 8, xv)
            v8_store(a, acc, ox * oc + o)
            v8_store(b, acc, ox * oc + o + 8)
    for ox in range(ow):
        taps = 3
        if ox == 0:
            taps -= 1
            for u in range(u0, u1):
                for o in range(oc):
                    acc[ox, o] -= L[u * oc + o]
        if ox == ow - 1:
            taps -= 1
            for u in range(u0, u1):
                for o in range(oc):
                    acc[ox, o] -= R[u * oc + o]
        full[ox] = np.int64(c_bits) * (u1 - u0) * taps


@njit(inline="always", **_JIT)
def _row_scratch(X, Wt, c_bits, packed):  # type: ignore[no-untyped-def]
    """The per-task buffers of :func:`_binary_row`: ``(W3, L, R, xr)``, with the packed taps filled in where
    ``packed`` (:func:`_pack_taps`), empty otherwise."""
    kh, oc = Wt.shape[0], Wt.shape[3]
    W3 = np.empty(kh * oc if packed else 0, np.uint64)
    L = np.empty(kh * oc if packed else 0, np.uint64)
    R = np.empty(kh * oc if packed else 0, np.uint64)
    xr = np.empty(kh * X.shape[2] if packed else 0, np.uint64)
    if packed:
        _pack_taps(Wt, c_bits, W3, L, R)
    return W3, L, R, xr


@njit(inline="always", **_JIT)
def _binary_row(X, Wt, packed, W3, L, R, xr, nidx, oy, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, c_bits,  # type: ignore[no-untyped-def]
                acc, full):
    """One output row's XOR-popcounts into ``acc`` / ``full``: :func:`_conv_row_packed` where ``packed``
    (buffers of :func:`_row_scratch`), else :func:`_conv_row`."""
    if packed:
        _conv_row_packed(X, W3, L, R, Wt.shape[0], nidx, oy, stride_h, pad_h, dil_h, c_bits, acc, full, xr)
    else:
        _conv_row(X, Wt, nidx, oy, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, c_bits, acc, full)


# bconv2d, bconv2d_sign and bconv2d_float are deliberate near-copies: the same parallel loop over
# output rows around _conv_row (which holds the shared logic), each with its own specialised
# store (int32 dot, fused threshold + packing, float32 NCHW); numba gives no cheap way to pass the
# store in without losing the inlined, register-blocked channel loops.
@njit(parallel=True, **_JIT)
def bconv2d(X, Wt, c_bits, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, out):  # type: ignore[no-untyped-def]
    """Binary conv on packed NHWC bits, weights tap-major ``Wt`` (KH, KW, CW, OC):
    out (N, OH, OW, OC) int32 dot products, zero padding contributing 0."""
    n, oh, ow, oc = out.shape
    for t in prange(n * oh):
        nidx = t // oh
        oy = t % oh
        acc = np.empty((ow, oc), np.uint64)
        full = np.empty(ow, np.int64)
        _conv_row(X, Wt, nidx, oy, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, c_bits, acc, full)
        for ox in range(ow):
            for o in range(oc):
                out[nidx, oy, ox, o] = np.int32(full[ox] - 2 * np.int64(acc[ox, o]))


@njit(parallel=True, **_JIT)
def bconv2d_sign(X, Wt, c_bits, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, S, T, out):  # type: ignore[no-untyped-def]
    """Binary conv fused with the threshold: out (N, OH, OW, ceil(OC/64)) packed bits. Parallel over blocks of
    output rows (buffers allocated once per block); :func:`_conv_row_packed` where it applies."""
    n, oh, ow, ocw = out.shape
    oc = Wt.shape[3]
    packed = _packable(X, Wt, c_bits, stride_w, pad_w, dil_w, ow)
    unit = unit_signs(S)
    rows = n * oh
    per = max(1, rows // 32)
    inner = np.int64(c_bits) * Wt.shape[0] * Wt.shape[1]  # ``full`` of a pixel with every tap inside the input
    for task in prange((rows + per - 1) // per):
        acc = np.empty((ow, oc), np.uint64)
        full = np.empty(ow, np.int64)
        W3, L, R, xr = _row_scratch(X, Wt, c_bits, packed)
        flip = np.empty(oc, np.int64)
        thr = np.empty(oc, np.int64)
        if unit:
            unit_thresholds(S, T, inner, flip, thr)
        for t in range(task * per, min(rows, task * per + per)):
            nidx = t // oh
            oy = t % oh
            _binary_row(X, Wt, packed, W3, L, R, xr, nidx, oy, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, c_bits,
                        acc, full)
            if unit and ocw == 1:  # one word a pixel: bounds known to the inlined loops
                for ox in range(ow):
                    if full[ox] == inner:  # thresholds made for this ``full``: one compare a vector
                        out[nidx, oy, ox, 0] = threshold_word_above(acc, ox, inner, flip, thr, S, T, 0, oc)
                    else:
                        out[nidx, oy, ox, 0] = threshold_word(acc, ox, full[ox], S, T, 0, oc, True)
                continue
            for ox in range(ow):
                for g in range(ocw):
                    hi = min(oc, g * 64 + 64)
                    if unit and full[ox] == inner:
                        out[nidx, oy, ox, g] = threshold_word_above(acc, ox, inner, flip, thr, S, T, g * 64, hi)
                    elif unit:  # calls with a constant flag: each inlined loop specialised (no branch inside)
                        out[nidx, oy, ox, g] = threshold_word(acc, ox, full[ox], S, T, g * 64, hi, True)
                    else:
                        out[nidx, oy, ox, g] = threshold_word(acc, ox, full[ox], S, T, g * 64, hi, False)


@njit(parallel=True, **_JIT)
def bconv2d_float(X, Wt, c_bits, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, scale, bias, out):  # type: ignore[no-untyped-def]
    """Binary conv with a real-valued output written straight to NCHW float32:
    out[n, o, y, x] = float32(dot) * scale[o] + bias[o] (the residual path's ``bconv2d_f``)."""
    n, oc, oh, ow = out.shape
    for t in prange(n * oh):
        nidx = t // oh
        oy = t % oh
        acc = np.empty((ow, oc), np.uint64)  # a whole output row, then written plane by plane (NCHW)
        full = np.empty(ow, np.int64)
        _conv_row(X, Wt, nidx, oy, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, c_bits, acc, full)
        for o in range(oc):
            for ox in range(ow):
                out[nidx, o, oy, ox] = np.float32(full[ox] - 2 * np.int64(acc[ox, o])) * scale[o] + bias[o]


# Serial twins, as in stbin.deploy._loops.
bconv2d_serial = _serial(bconv2d, "bconv2d_serial")
bconv2d_sign_serial = _serial(bconv2d_sign, "bconv2d_sign_serial")
bconv2d_float_serial = _serial(bconv2d_float, "bconv2d_float_serial")
