"""The compiled loops of the fused ops (:mod:`stbin.deploy.ops.fused`): one pass over each output row.

* :func:`bconv2d_res` — the tail of a residual block: binary convolution (popcount), its real-valued
  output stage ``float32(dot) * scale + bias``, the batch norm ``* alpha + beta``, the shortcut added
  (±1 values unpacked from bits, real values, a real 1x1 projection of bits with its batch norm, or of the
  average pool of real values: Bi-Real Net's downsampling shortcut), then the real sum written as float32
  (NCHW, or channel-last where a later shortcut reads it) and/or thresholded per
  channel and packed to NHWC bits (the sign of the next binary layer, RSign shift included);
* :func:`conv2d_sign` — the real-valued first convolution (float NCHW input) with its bias, batch norm,
  sign and packing (and the real output, where a shortcut reads it).

Every float operation is the one the unfused ops do, in the same order and the same float32 roundings
(``fastmath`` off: no contraction into fused multiply-adds), so :func:`bconv2d_res` with a ±1 or a
real shortcut is bit for bit the unfused ops (the average pool too); the projection shortcut sums its channels in order
(the unfused float convolution's BLAS order is unspecified) and :func:`conv2d_sign` sums its taps
in the order (channel, row, column) by fused multiply-adds (one rounding per tap): both within float rounding
of the unfused ops.

As in :mod:`stbin.deploy._loops`, these trust their arguments: call them through the checked entry
points of :mod:`stbin.deploy.fused_kernels`. Each has a serial twin (``*_serial``).
"""

from __future__ import annotations

import numpy as np
from stbin.deploy._conv_loops import _binary_row, _packable, _row_scratch, _valid_taps
from stbin.deploy._loops import _JIT, _serial, njit, prange
from stbin.deploy._simd import (f16_add, f16_add_signs, f16_affine, f16_bits_of, f16_dot_affine, f16_fma, f16_load,
                                f16_madd, f16_plus_signs, f16_sign_bits, f16_store, f16_zero, load_f32)

@njit(inline="always", **_JIT)
def _pack_pixel(y, ox, S, T, out, nidx, oy):  # type: ignore[no-untyped-def]
    """out[nidx, oy, ox, g] = the words of pixel ``ox`` of y (OW, OC): bit o = not (S[o] * y >= T[o]), as
    :func:`stbin.deploy._float_loops.float_sign_pack`: 16 channels per compare (:func:`f16_sign_bits`), the
    rest one at a time. No array views: a view of a shared array costs an atomic reference count."""
    oc = y.shape[1]
    for g in range(out.shape[3]):
        word = np.uint64(0)
        lo = g * 64
        hi = min(oc, lo + 64)
        o = lo
        while o + 16 <= hi:
            word |= f16_sign_bits(y, ox * oc + o, S, T, o) << np.uint64(o - lo)
            o += 16
        for o in range(o, hi):
            word |= (np.uint64(0) if S[o] * y[ox, o] >= T[o] else np.uint64(1)) << np.uint64(o - lo)
        out[nidx, oy, ox, g] = word


@njit(inline="always", **_JIT)
def _store_float_row(y, want_float, out_f, nidx, oy):  # type: ignore[no-untyped-def]
    """The real output row ``y`` (OW, OC) into ``out_f``: channel-last (N, OH, OW, OC) for ``want_float == 2``,
    NCHW (N, OC, OH, OW) for 1, nothing for 0."""
    ow, oc = y.shape
    if want_float == 2:
        _copy_row(y, out_f, nidx, oy)
    elif want_float:
        for o in range(oc):
            for ox in range(ow):
                out_f[nidx, o, oy, ox] = y[ox, o]


@njit(inline="always", **_JIT)
def _copy_row(y, out, nidx, oy):  # type: ignore[no-untyped-def]
    """out[nidx, oy] = y (OW, OC) of a channel-last out (N, OH, OW, OC) (both C-contiguous), 16 lanes at a time."""
    ow, oc = y.shape
    base = (nidx * out.shape[1] + oy) * ow * oc
    i = 0
    while i + 16 <= ow * oc:
        f16_store(f16_load(y, i), out, base + i)
        i += 16
    for i in range(i, ow * oc):
        out[nidx, oy, i // oc, i % oc] = y[i // oc, i % oc]


@njit(inline="always", **_JIT)
def _rows_per_task(rows):  # type: ignore[no-untyped-def]
    """Output rows per parallel task: at least 32 tasks (load balance), each allocating its buffers once."""
    return max(1, rows // 32)


@njit(inline="always", **_JIT)
def _add_shortcut(y, kind, RB, RF, PW, pa, pb, rc, rs_h, rs_w, before, nidx, oy):  # type: ignore[no-untyped-def]
    """y (OW, OC) += the shortcut of output row ``oy``: kind 0: ±1 of bit ``o - before`` of RB (N, H', W', CW');
    1: RF[n, o - before] (N, C', H', W') float32 (3: RF[n, :, :, o - before], RF (N, H', W', C')); 2: the real 1x1 projection of RB's ±1 values,
    ``(sum_c ±PW[c, o]) * pa[o] + pb[o]`` (channels summed in order). Positions are (oy * rs_h, ox * rs_w);
    channels outside ``[before, before + rc)`` add +0 (option A's zero channels)."""
    ow, oc = y.shape
    iy = oy * rs_h
    lo = min(oc, before)
    hi = min(oc, before + rc)
    r = np.empty(oc if kind == 2 else 0, np.float32)
    for ox in range(ow):
        ix = ox * rs_w
        if kind == 2:  # 16 output channels at a time in a register, the rest one by one; channels c in order
            o = 0
            while o + 16 <= oc:
                a = f16_zero()
                for c in range(rc):
                    s = np.float32(-1.0) if (RB[nidx, iy, ix, c // 64] >> np.uint64(c % 64)) & np.uint64(1) else np.float32(1.0)
                    a = f16_madd(a, PW, c * oc + o, s)
                f16_store(a, r, o)
                o += 16
            for o in range(o, oc):
                acc = np.float32(0)
                for c in range(rc):
                    s = np.float32(-1.0) if (RB[nidx, iy, ix, c // 64] >> np.uint64(c % 64)) & np.uint64(1) else np.float32(1.0)
                    acc += s * PW[c, o]
                r[o] = acc
            for o in range(oc):
                y[ox, o] = y[ox, o] + (r[o] * pa[o] + pb[o])
            continue
        for o in range(lo):
            y[ox, o] = y[ox, o] + np.float32(0)
        for o in range(hi, oc):
            y[ox, o] = y[ox, o] + np.float32(0)
        if kind == 1:
            for o in range(lo, hi):
                y[ox, o] = y[ox, o] + RF[nidx, o - before, iy, ix]
        elif kind == 3:  # the same values channel-last (C-contiguous): one contiguous run per pixel, 16 at a time
            r0 = ((nidx * RF.shape[1] + iy) * RF.shape[2] + ix) * RF.shape[3] - lo
            o = lo
            while o + 16 <= hi:
                f16_store(f16_add(f16_load(y, ox * oc + o), f16_load(RF, r0 + o)), y, ox * oc + o)
                o += 16
            for o in range(o, hi):
                y[ox, o] = y[ox, o] + load_f32(RF, r0 + o)
        else:
            for g in range(0, hi - lo, 64):  # y + (±1): 16 channels at a time, the rest one by one
                word = RB[nidx, iy, ix, g // 64]
                c = g
                end = min(hi - lo, g + 64)
                while c + 16 <= end:
                    f16_add_signs(y, ox * oc + lo + c, word >> np.uint64(c - g))
                    c += 16
                for c in range(c, end):
                    bit = (word >> np.uint64(c - g)) & np.uint64(1)
                    y[ox, lo + c] = y[ox, lo + c] + (np.float32(1.0) - np.float32(2.0) * np.float32(bit))


@njit(inline="always", **_JIT)
def _pooled_projection(y, RF, PW, pa, pb, rs_h, rs_w, ph, pw, nidx, oy, P):  # type: ignore[no-untyped-def]
    """y (OW, OC) += ``(sum_c P[ox, c] * PW[c, o]) * pa[o] + pb[o]`` (channels in order), with P (OW * C') the
    average pool of the channel-last real map RF (N, H', W', C') over the ph x pw window at (oy * rs_h, ox * rs_w):
    the taps summed row by row from +0, then divided by their number (as :func:`stbin.deploy._float_loops.avgpool2d`).
    Four pixels share each weight load (16 output channels x 4 pixels in registers), the rest one at a time."""
    ow, oc = y.shape
    rc = RF.shape[3]
    div = np.float32(ph * pw)
    for ox in range(ow):
        b = ox * rc
        for c in range(rc):
            P[b + c] = np.float32(0)
        for u in range(ph):
            for v in range(pw):
                r0 = ((nidx * RF.shape[1] + oy * rs_h + u) * RF.shape[2] + ox * rs_w + v) * rc
                for c in range(rc):
                    P[b + c] = P[b + c] + load_f32(RF, r0 + c)
        for c in range(rc):
            P[b + c] = P[b + c] / div
    o = 0
    while o + 16 <= oc:
        ox = 0
        while ox + 4 <= ow:
            a0 = a1 = a2 = a3 = f16_zero()
            for c in range(rc):
                wi = c * oc + o
                a0 = f16_madd(a0, PW, wi, P[ox * rc + c])
                a1 = f16_madd(a1, PW, wi, P[(ox + 1) * rc + c])
                a2 = f16_madd(a2, PW, wi, P[(ox + 2) * rc + c])
                a3 = f16_madd(a3, PW, wi, P[(ox + 3) * rc + c])
            f16_store(a0, P, ow * rc + 0 * 16)  # the 4 x 16 sums after the pooled row (P has room: see the caller)
            f16_store(a1, P, ow * rc + 1 * 16)
            f16_store(a2, P, ow * rc + 2 * 16)
            f16_store(a3, P, ow * rc + 3 * 16)
            for j in range(4):
                for k in range(16):
                    y[ox + j, o + k] = y[ox + j, o + k] + (P[ow * rc + j * 16 + k] * pa[o + k] + pb[o + k])
            ox += 4
        for ox in range(ox, ow):
            a = f16_zero()
            for c in range(rc):
                a = f16_madd(a, PW, c * oc + o, P[ox * rc + c])
            f16_store(a, P, ow * rc)
            for k in range(16):
                y[ox, o + k] = y[ox, o + k] + (P[ow * rc + k] * pa[o + k] + pb[o + k])
        o += 16
    for o in range(o, oc):
        for ox in range(ow):
            acc = np.float32(0)
            for c in range(rc):
                acc += P[ox * rc + c] * PW[c, o]
            y[ox, o] = y[ox, o] + (acc * pa[o] + pb[o])


@njit(inline="always", **_JIT)
def _row_in_registers(acc, full, scale, bias, alpha, beta, kind, RB, RF, rs_h, rs_w, S, T, want_bits, out_b,  # type: ignore[no-untyped-def]
                      want_float, out_f, nidx, oy):
    """The output stage of one row where the shortcut covers every channel (kind 0 or 3, no channel offset), OC % 16
    == 0 and any real output is channel-last: per 16 channels, y = :func:`f16_dot_affine` + the shortcut, stored
    and/or thresholded from the register (the operations of the general path, in the same order: bit for bit)."""
    ow, oc = acc.shape
    iy = oy * rs_h
    for ox in range(ow):
        f = full[ox]
        ix = ox * rs_w
        r0 = ((nidx * RF.shape[1] + iy) * RF.shape[2] + ix) * oc
        f0 = ((nidx * out_f.shape[1] + oy) * ow + ox) * oc
        word = np.uint64(0)
        for o in range(0, oc, 16):
            v = f16_dot_affine(acc, ox * oc + o, f, scale, bias, alpha, beta, o)
            if kind == 3:
                v = f16_add(v, f16_load(RF, r0 + o))
            else:
                v = f16_plus_signs(v, RB[nidx, iy, ix, o // 64] >> np.uint64(o % 64))
            if want_float:
                f16_store(v, out_f, f0 + o)
            if want_bits:
                word |= f16_bits_of(v, S, T, o) << np.uint64(o % 64)
                if o % 64 == 48 or o + 16 == oc:
                    out_b[nidx, oy, ox, o // 64] = word
                    word = np.uint64(0)


@njit(parallel=True, **_JIT)
def bconv2d_res(X, Wt, c_bits, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, scale, bias, alpha, beta,  # type: ignore[no-untyped-def]
                kind, RB, RF, PW, pa, pb, rc, rs_h, rs_w, before, S, T, want_bits, out_b, want_float, out_f, oh, ow,
                pool_h, pool_w):
    """The tail of a residual block in one pass per output row (see the module docstring):
    y = (float32(dot) * scale + bias) * alpha + beta + shortcut; out_f = y if ``want_float`` (1: NCHW
    (N, OC, OH, OW); 2: channel-last (N, OH, OW, OC), one contiguous copy of the row), out_b (N, OH, OW, ceil(OC/64)) = the packed bits ``not (S * y >= T)`` if ``want_bits``."""
    n = X.shape[0]
    oc = Wt.shape[3]
    packed = _packable(X, Wt, c_bits, stride_w, pad_w, dil_w, ow)
    in_registers = (kind == 0 or kind == 3) and before == 0 and rc == oc and oc % 16 == 0 and want_float != 1
    rows = n * oh
    per = _rows_per_task(rows)
    for task in prange((rows + per - 1) // per):
        acc = np.empty((ow, oc), np.uint64)
        full = np.empty(ow, np.int64)
        y = np.empty((ow, oc), np.float32)
        P = np.empty(ow * rc + 64 if kind == 4 else 0, np.float32)  # kind 4: the pooled row, then 4 x 16 sums
        W3, L, R, xr = _row_scratch(X, Wt, c_bits, packed)
        for t in range(task * per, min(rows, task * per + per)):
            nidx = t // oh
            oy = t % oh
            _binary_row(X, Wt, packed, W3, L, R, xr, nidx, oy, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, c_bits,
                        acc, full)
            if in_registers:
                _row_in_registers(acc, full, scale, bias, alpha, beta, kind, RB, RF, rs_h, rs_w, S, T, want_bits, out_b,
                                  want_float, out_f, nidx, oy)
                continue
            for ox in range(ow):
                f = full[ox]
                o = 0
                while o + 16 <= oc:
                    f16_store(f16_dot_affine(acc, ox * oc + o, f, scale, bias, alpha, beta, o), y, ox * oc + o)
                    o += 16
                for o in range(o, oc):
                    y[ox, o] = (np.float32(f - 2 * np.int64(acc[ox, o])) * scale[o] + bias[o]) * alpha[o] + beta[o]
            if kind == 4:
                _pooled_projection(y, RF, PW, pa, pb, rs_h, rs_w, pool_h, pool_w, nidx, oy, P)
            else:
                _add_shortcut(y, kind, RB, RF, PW, pa, pb, rc, rs_h, rs_w, before, nidx, oy)
            _store_float_row(y, want_float, out_f, nidx, oy)
            if want_bits:
                for ox in range(ow):
                    _pack_pixel(y, ox, S, T, out_b, nidx, oy)


@njit(inline="always", **_JIT)
def _pad_rows(X, xp, nidx, oy, kh, stride_h, pad_h, dil_h, pad_w):  # type: ignore[no-untyped-def]
    """Copy the input rows of output row ``oy`` (channel ``ch``, kernel row ``u``) into ``xp[ch * kh + u]``, at column
    offset ``pad_w``; ``xp``'s padding columns stay 0 (zeroed once per task). Returns the valid kernel rows."""
    c, h, w_ = X.shape[1], X.shape[2], X.shape[3]
    u0, u1 = _valid_taps(oy, stride_h, pad_h, dil_h, h, kh)
    by = oy * stride_h - pad_h
    for ch in range(c):
        for u in range(u0, u1):
            r = ch * kh + u
            for j in range(w_):
                xp[r, pad_w + j] = X[nidx, ch, by + u * dil_h, j]
    return u0, u1


@njit(inline="always", **_JIT)
def _first_row(X, Wk, xp, nidx, oy, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, y):  # type: ignore[no-untyped-def]
    """y (OW, OC) = the sums over the taps (c, u, v), in that order, of output row ``oy``, read from the zero-padded
    rows ``xp`` (:func:`_pad_rows`: a padding tap adds an exact 0, so every pixel takes the same path). Four adjacent
    pixels share each weight load (4 x 16 channels in registers, one fused multiply-add per tap,
    :func:`f16_fma`); the last ``OW % 4`` pixels one at a time, the last ``OC % 16`` channels in scalars."""
    c = X.shape[1]
    oc = Wk.shape[1]
    ow = y.shape[0]
    wp = xp.shape[1]
    u0, u1 = _pad_rows(X, xp, nidx, oy, kh, stride_h, pad_h, dil_h, pad_w)
    o = 0
    while o + 16 <= oc:
        ox = 0
        while ox + 4 <= ow:
            a0 = a1 = a2 = a3 = f16_zero()
            for ch in range(c):
                for u in range(u0, u1):
                    xrow = (ch * kh + u) * wp + ox * stride_w
                    for v in range(kw):
                        wi = ((ch * kh + u) * kw + v) * oc + o
                        xi = xrow + v * dil_w
                        a0 = f16_fma(a0, Wk, wi, load_f32(xp, xi))
                        a1 = f16_fma(a1, Wk, wi, load_f32(xp, xi + stride_w))
                        a2 = f16_fma(a2, Wk, wi, load_f32(xp, xi + 2 * stride_w))
                        a3 = f16_fma(a3, Wk, wi, load_f32(xp, xi + 3 * stride_w))
            f16_store(a0, y, ox * oc + o)
            f16_store(a1, y, (ox + 1) * oc + o)
            f16_store(a2, y, (ox + 2) * oc + o)
            f16_store(a3, y, (ox + 3) * oc + o)
            ox += 4
        for ox in range(ox, ow):
            a = f16_zero()
            for ch in range(c):
                for u in range(u0, u1):
                    xrow = (ch * kh + u) * wp + ox * stride_w
                    for v in range(kw):
                        a = f16_fma(a, Wk, ((ch * kh + u) * kw + v) * oc + o, load_f32(xp, xrow + v * dil_w))
            f16_store(a, y, ox * oc + o)
        o += 16
    for o in range(o, oc):
        for ox in range(ow):
            s = np.float32(0)
            for ch in range(c):
                for u in range(u0, u1):
                    for v in range(kw):
                        s += xp[ch * kh + u, ox * stride_w + v * dil_w] * Wk[(ch * kh + u) * kw + v, o]
            y[ox, o] = s


@njit(inline="always", **_JIT)
def _affine_sign_row(y, bias, alpha, beta, S, T, out_b, nidx, oy):  # type: ignore[no-untyped-def]
    """In place, y[ox, o] = (y + bias[o]) * alpha[o] + beta[o] (float32, each operation rounded), and the packed
    signs out_b[nidx, oy, ox] (bit o unless S[o] * y >= T[o], as :func:`_pack_pixel`): 16 channels per vector
    (:func:`f16_affine`, :func:`f16_bits_of`), the last ``OC % 16`` one at a time."""
    ow, oc = y.shape
    for ox in range(ow):
        word = np.uint64(0)
        o = 0
        while o + 16 <= oc:
            v = f16_affine(f16_load(y, ox * oc + o), bias, alpha, beta, o)
            f16_store(v, y, ox * oc + o)
            word |= f16_bits_of(v, S, T, o) << np.uint64(o % 64)
            o += 16
            if o % 64 == 0:
                out_b[nidx, oy, ox, o // 64 - 1] = word
                word = np.uint64(0)
        for o in range(o, oc):
            v1 = (y[ox, o] + bias[o]) * alpha[o] + beta[o]
            y[ox, o] = v1
            word |= (np.uint64(0) if S[o] * v1 >= T[o] else np.uint64(1)) << np.uint64(o % 64)
            if o % 64 == 63:
                out_b[nidx, oy, ox, o // 64] = word
                word = np.uint64(0)
        if oc % 64:
            out_b[nidx, oy, ox, oc // 64] = word


@njit(parallel=True, **_JIT)
def conv2d_sign(X, Wk, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, bias, alpha, beta,  # type: ignore[no-untyped-def]
                S, T, out_b, want_float, out_f, oh, ow):
    """Real first convolution fused with bias, batch norm, sign and packing, one pass per output row:
    y = (sum over the valid taps (c, u, v), in that order, of X * W + bias) * alpha + beta, with ``Wk``
    (C*KH*KW, OC) tap-major; out_b (N, OH, OW, ceil(OC/64)) = not (S * y >= T); out_f = y if ``want_float``
    (1: NCHW (N, OC, OH, OW); 2: channel-last (N, OH, OW, OC)). X and Wk C-contiguous."""
    n, c, _, w_ = X.shape
    oc = Wk.shape[1]
    rows = n * oh
    per = _rows_per_task(rows)
    for task in prange((rows + per - 1) // per):
        y = np.empty((ow, oc), np.float32)
        xp = np.zeros((c * kh, w_ + 2 * pad_w), np.float32)
        for t in range(task * per, min(rows, task * per + per)):
            nidx = t // oh
            oy = t % oh
            _first_row(X, Wk, xp, nidx, oy, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, y)
            _affine_sign_row(y, bias, alpha, beta, S, T, out_b, nidx, oy)
            _store_float_row(y, want_float, out_f, nidx, oy)


# Explicit twin declarations on purpose, as in _loops (one module attribute a kernel, found by name).
bconv2d_res_serial = _serial(bconv2d_res, "bconv2d_res_serial")
conv2d_sign_serial = _serial(conv2d_sign, "conv2d_sign_serial")
