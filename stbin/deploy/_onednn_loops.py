"""The compiled loops around oneDNN's int8 convolution (:mod:`stbin.deploy.onednn`): the binary convolution's
operands in and its output stages out, on channel-last maps.

* :func:`bits_u8` — packed NHWC bits to the uint8 map oneDNN reads: ``x + 1`` of the ±1 values (0 for a set bit,
  i.e. -1; 2 for +1), with zero point 1, so that zero padding (the zero point) is a real 0; eight channels a store;
* :func:`dot_sign` — integer threshold and packing of exact dot products (``bconv2d``'s output stage);
* :func:`dot_res` — the tail of a residual block from exact dot products: the same float32 operations, in the same
  order, as :func:`stbin.deploy._fused_loops.bconv2d_res` after its popcounts (the same shortcut, store and packing
  helpers), so the outputs are bit for bit the popcount path's.

The dot products ``D`` (N, OH, OW, OC) are float32 holding integers of magnitude at most ``C * KH * KW < 2**24``
(checked by the caller), so ``D`` equals the popcount path's ``float32(dot)`` exactly. As in
:mod:`stbin.deploy._loops`, these trust their arguments: call them through :mod:`stbin.deploy.onednn`.
Each has a serial twin (``*_serial``).
"""

from __future__ import annotations

import numpy as np

from stbin.deploy._fused_loops import _add_shortcut, _pack_pixel, _pooled_projection, _rows_per_task, _store_float_row
from stbin.deploy._loops import _JIT, _serial, njit, prange
from stbin.deploy._simd import (f16_add, f16_affine, f16_bits_of, f16_load, f16_plus_signs, f16_sign_bits, f16_store,
                                load_f32)


@njit(parallel=True, **_JIT)
def bits_u8(X, c_bits, lut, out):  # type: ignore[no-untyped-def]
    """The uint8 map (N, H, W, C) of X (N, H, W, ceil(C/64)) as ``out`` (N, H, W, C // 8) uint64 (C % 8 == 0, little
    endian): byte c = 0 where bit c is set (-1), else 2 (+1, plus one), eight channels per store from ``lut`` (256,)."""
    n, h, w = X.shape[0], X.shape[1], X.shape[2]
    rows = n * h
    for t in prange(rows):
        nidx = t // h
        y = t % h
        for x in range(w):
            for b in range(c_bits // 8):
                out[nidx, y, x, b] = lut[(X[nidx, y, x, b // 8] >> np.uint64(8 * (b % 8))) & np.uint64(255)]


@njit(parallel=True, **_JIT)
def dot_sign(D, S, T, out):  # type: ignore[no-untyped-def]
    """Bit o of out[n, y, x] (N, OH, OW, ceil(OC/64)) = not (S[o] * D[n, y, x, o] >= T[o]) in float32: D (N, OH, OW,
    OC) float32 integers of magnitude below 2**24, S = ±1 and T integers clamped to [-2**24, 2**24] (float32, exact:
    the integer test of ``bconv2d_sign``), 16 channels per compare (:func:`f16_sign_bits`)."""
    n, oh, ow, oc = D.shape
    rows = n * oh
    for t in prange(rows):
        nidx = t // oh
        y = t % oh
        for x in range(ow):
            p = ((nidx * oh + y) * ow + x) * oc
            for g in range(out.shape[3]):
                word = np.uint64(0)
                lo = g * 64
                hi = min(oc, lo + 64)
                o = lo
                while o + 16 <= hi:
                    word |= f16_sign_bits(D, p + o, S, T, o) << np.uint64(o - lo)
                    o += 16
                for o in range(o, hi):
                    if not S[o] * load_f32(D, p + o) >= T[o]:
                        word |= np.uint64(1) << np.uint64(o - lo)
                out[nidx, y, x, g] = word


@njit(inline="always", **_JIT)
def _res_row_fast(D, scale, bias, alpha, beta, kind, RB, RF, rs_h, rs_w, S, T, want_bits, out_b, want_float, out_f,
                  nidx, oy):  # type: ignore[no-untyped-def]
    """:func:`stbin.deploy._fused_loops._row_in_registers` (the shortcut on every channel, kind 0 or 3, OC % 16 == 0,
    any real output channel-last) on dot products D: the same operations in the same order."""
    ow, oc = D.shape[2], D.shape[3]
    iy = oy * rs_h
    for ox in range(ow):
        ix = ox * rs_w
        p = ((nidx * D.shape[1] + oy) * ow + ox) * oc
        r0 = ((nidx * RF.shape[1] + iy) * RF.shape[2] + ix) * oc
        f0 = ((nidx * out_f.shape[1] + oy) * ow + ox) * oc
        word = np.uint64(0)
        for o in range(0, oc, 16):
            v = f16_affine(f16_load(D, p + o), scale, bias, alpha, beta, o)
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
def dot_res(D, scale, bias, alpha, beta, kind, RB, RF, PW, pa, pb, rc, rs_h, rs_w, before,  # type: ignore[no-untyped-def]
            S, T, want_bits, out_b, want_float, out_f, pool_h, pool_w):
    """y = (D * scale + bias) * alpha + beta + shortcut, per output row, then stored and/or thresholded and packed:
    :func:`stbin.deploy._fused_loops.bconv2d_res` with its popcounts replaced by D (N, OH, OW, OC) (the same
    arguments after the geometry, the same helpers, the same register path where it applies)."""
    n, oh, ow, oc = D.shape
    in_registers = (kind == 0 or kind == 3) and before == 0 and rc == oc and oc % 16 == 0 and want_float != 1
    rows = n * oh
    per = _rows_per_task(rows)
    for task in prange((rows + per - 1) // per):
        y = np.empty((ow, oc), np.float32)
        P = np.empty(ow * rc + 64 if kind == 4 else 0, np.float32)
        for t in range(task * per, min(rows, task * per + per)):
            nidx = t // oh
            oy = t % oh
            if in_registers:
                _res_row_fast(D, scale, bias, alpha, beta, kind, RB, RF, rs_h, rs_w, S, T, want_bits, out_b,
                              want_float, out_f, nidx, oy)
                continue
            for ox in range(ow):
                p = ((nidx * oh + oy) * ow + ox) * oc
                o = 0
                while o + 16 <= oc:
                    f16_store(f16_affine(f16_load(D, p + o), scale, bias, alpha, beta, o), y, ox * oc + o)
                    o += 16
                for o in range(o, oc):
                    y[ox, o] = (load_f32(D, p + o) * scale[o] + bias[o]) * alpha[o] + beta[o]
            if kind == 4:
                _pooled_projection(y, RF, PW, pa, pb, rs_h, rs_w, pool_h, pool_w, nidx, oy, P)
            else:
                _add_shortcut(y, kind, RB, RF, PW, pa, pb, rc, rs_h, rs_w, before, nidx, oy)
            _store_float_row(y, want_float, out_f, nidx, oy)
            if want_bits:
                for ox in range(ow):
                    _pack_pixel(y, ox, S, T, out_b, nidx, oy)


# Explicit twin declarations, as in _loops (one module attribute a kernel, found by name).
bits_u8_serial = _serial(bits_u8, "bits_u8_serial")
dot_sign_serial = _serial(dot_sign, "dot_sign_serial")
dot_res_serial = _serial(dot_res, "dot_res_serial")
