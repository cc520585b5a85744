"""Bit packing of ±1 tensors into 64-bit words (pure numpy; no numba needed).

Bit order (the contract of the file format and the kernels)
-----------------------------------------------------------
A vector of ``K`` binary values ``v_0 .. v_{K-1}`` in {-1, +1} becomes ``ceil(K / 64)``
unsigned 64-bit words. Element ``k`` is bit ``k % 64`` (bit 0 = least significant) of
word ``k // 64``. A **set bit means -1**, a clear bit means +1, so that

* a real value ``a`` packs as ``bit = not (a >= 0)``, exactly PyTorch's mode evaluation
  ``sign(a)`` with ``sign(0) = +1`` (and NaN -> -1, as ``plus_minus_one(a >= 0)`` gives);
* the tail bits of the last word (``k >= K``) are always **0** in inputs and weights alike,
  so ``x XOR w`` is 0 there and the ±1 dot product of the valid bits is
  ``dot = K - 2 * popcount(x XOR w)``.

Words are stored little-endian (``<u8``) in files; in memory they are native uint64.
Packing works along the last axis; leading axes are kept.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 64


def n_words(k: int) -> int:
    """Number of 64-bit words holding ``k`` bits."""
    if k < 0:
        raise ValueError(f"the number of bits must be >= 0, got {k}")
    return -(-int(k) // WORD_BITS)


def pack_bits(negative: np.ndarray) -> np.ndarray:
    """Pack a boolean array (True = -1) along its last axis into uint64 words."""
    neg = np.asarray(negative, dtype=bool)
    if neg.ndim == 0:
        raise ValueError("pack_bits needs an array with at least one axis")
    k = neg.shape[-1]
    kw = n_words(k)
    pad = kw * WORD_BITS - k
    if pad:
        neg = np.concatenate([neg, np.zeros(neg.shape[:-1] + (pad,), dtype=bool)], axis=-1)
    by = np.packbits(neg, axis=-1, bitorder="little")  # (..., kw * 8) bytes, bit k%8 of byte k//8
    by = np.ascontiguousarray(by)
    return by.view("<u8").astype(np.uint64, copy=False).reshape(neg.shape[:-1] + (kw,))


def pack_sign(x: np.ndarray) -> np.ndarray:
    """Pack ``sign(x)`` (sign(0) = +1, NaN -> -1) along the last axis: bit = ``not (x >= 0)``."""
    x = np.asarray(x)
    with np.errstate(invalid="ignore"):
        return pack_bits(~(x >= 0))


def unpack_bits(words: np.ndarray, k: int, dtype: np.dtype | type = np.int8) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the ±1 values (``dtype``) of the first ``k`` bits of each row."""
    w = np.ascontiguousarray(np.asarray(words, dtype=np.uint64))
    if w.ndim == 0:
        raise ValueError("unpack_bits needs an array with at least one axis")
    if w.shape[-1] != n_words(k):
        raise ValueError(f"{k} bits need {n_words(k)} words per row, got {w.shape[-1]}")
    by = w.astype("<u8", copy=False).view(np.uint8).reshape(w.shape[:-1] + (w.shape[-1] * 8,))
    bits = np.unpackbits(by, axis=-1, bitorder="little")[..., :k]
    return (1 - 2 * bits.astype(np.int16)).astype(dtype)


def tail_is_clear(words: np.ndarray, k: int) -> bool:
    """Whether the padding bits (positions >= ``k``) of every row are 0, as the kernels require."""
    w = np.asarray(words, dtype=np.uint64)
    r = k % WORD_BITS
    if r == 0 or w.shape[-1] == 0:
        return True
    mask = np.uint64(((1 << WORD_BITS) - 1) ^ ((1 << r) - 1))
    return not bool(np.any(w[..., -1] & mask))
