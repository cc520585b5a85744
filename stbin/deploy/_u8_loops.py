"""The compiled loops between packed bits and the uint8 maps of oneDNN's int8 convolution
(:mod:`stbin.deploy.onednn_blocks`), eight channels per 64-bit load or store:

* :func:`bits_u8` — packed NHWC bits to the uint8 map ``x + 1`` of the ±1 values: 0 for a set bit (-1), 2 for +1;
* :func:`u8_bits` — the inverse: bit c set where byte c is 0.

Channel counts are multiples of 8 and the machine little endian (checked by the caller). As in
:mod:`stbin.deploy._loops`, these trust their arguments; each has a serial twin (``*_serial``).
"""

from __future__ import annotations

import numpy as np

from stbin.deploy._loops import _JIT, _serial, njit, prange

_LOW_BITS = np.uint64(0x0101010101010101)
_GATHER = np.uint64(0x0102040810204080)  # (b0 + 2 b1 + ... + 128 b7) << 56 for bytes b_j in {0, 1}


@njit(parallel=True, **_JIT)
def bits_u8(X, c_bits, lut, out):  # type: ignore[no-untyped-def]
    """out (N, H, W, C // 8) uint64 (the uint8 map's bytes): byte c = 0 where bit c of X (N, H, W, ceil(C/64)) is
    set, else 2; ``lut`` (256,) the eight bytes of each bit pattern."""
    n, h, w = X.shape[0], X.shape[1], X.shape[2]
    for t in prange(n * h):
        nidx = t // h
        y = t % h
        for x in range(w):
            for b in range(c_bits // 8):
                out[nidx, y, x, b] = lut[(X[nidx, y, x, b // 8] >> np.uint64(8 * (b % 8))) & np.uint64(255)]


@njit(parallel=True, **_JIT)
def u8_bits(U, c_bits, out):  # type: ignore[no-untyped-def]
    """out (N, H, W, ceil(C/64)): bit c set where byte c of U (N, H, W, C // 8) uint64 is 0 (bytes 0 or 2 only)."""
    n, h, w = U.shape[0], U.shape[1], U.shape[2]
    nb = c_bits // 8
    for t in prange(n * h):
        nidx = t // h
        y = t % h
        for x in range(w):
            for g in range(out.shape[3]):
                out[nidx, y, x, g] = np.uint64(0)
            for b in range(nb):
                plus = ((U[nidx, y, x, b] >> np.uint64(1)) & _LOW_BITS) * _GATHER >> np.uint64(56)
                out[nidx, y, x, b // 8] |= (~plus & np.uint64(255)) << np.uint64(8 * (b % 8))


@njit(parallel=True, **_JIT)
def concat_u8(H, X, c_bits, lut, out):  # type: ignore[no-untyped-def]
    """out (N, H', W', (M + C) // 8) uint64: per pixel the M // 8 words of the uint8 map H (N, H', W', M // 8), then
    the uint8 map of the bits X (N, H', W', ceil(C/64)) as :func:`bits_u8` (the input of a block's second
    convolution: its map, then its shortcut)."""
    n, h, w, mb = H.shape
    for t in prange(n * h):
        nidx = t // h
        y = t % h
        for x in range(w):
            for b in range(mb):
                out[nidx, y, x, b] = H[nidx, y, x, b]
            for b in range(c_bits // 8):
                out[nidx, y, x, mb + b] = lut[(X[nidx, y, x, b // 8] >> np.uint64(8 * (b % 8))) & np.uint64(255)]


# Explicit twin declarations, as in _loops (one module attribute a kernel, found by name).
bits_u8_serial = _serial(bits_u8, "bits_u8_serial")
u8_bits_serial = _serial(u8_bits, "u8_bits_serial")
concat_u8_serial = _serial(concat_u8, "concat_u8_serial")
