"""Checked entry points of the dense layers' compiled loops (:mod:`stbin.deploy._dense_loops`), with the
conventions of :mod:`stbin.deploy.kernels` (every array's dtype and shape and every integer checked before
the loop runs; a one-line ValueError naming the kernel and the argument; callers hold ``KERNEL_LOCK``):

* :func:`bdense_sign` — :func:`~stbin.deploy.kernels.bgemm_sign` on word-major weights ``Wt`` (KW, M);
* :func:`bdense_dot` — :func:`~stbin.deploy.kernels.bgemm` on word-major weights;
* :func:`bits_dense` — a float layer on packed ±1 inputs (``unpack_float`` + ``float_dense`` in one loop), on
  the products of its weights with both signs (:func:`signed_weights`, made once per layer);
* :func:`bitserial_sign` — a binary-weight first layer on inputs on a declared 8-bit grid (exact integer
  dot products over the inputs' bit-planes), thresholded and packed;
* :func:`sign_pack_rows` — :func:`~stbin.deploy.kernels.float_sign_pack` always on its serial loop (callable
  from any thread: the parts of a row-split layer, :mod:`stbin.deploy.row_parts`).
"""

from __future__ import annotations

import numpy as np

from stbin.deploy import _float_loops
from stbin.deploy.kernels import _arr, _int, _launch, _shape, _thresholds, scratch
from stbin.deploy.packing import n_words


def _word_major_checks(kernel: str, X: np.ndarray, Wt: np.ndarray, k_bits: int) -> int:
    """X (N, KW) and word-major Wt (KW, M) uint64, both C-contiguous (the loops use flat offsets); returns K."""
    _arr(kernel, "X", X, np.uint64, 2)
    _arr(kernel, "Wt", Wt, np.uint64, 2)
    if Wt.shape[0] != X.shape[1]:
        raise ValueError(f"{kernel}: Wt has {Wt.shape[0]} words per output, X has {X.shape[1]} per row")
    if not (X.flags.c_contiguous and Wt.flags.c_contiguous):
        raise ValueError(f"{kernel}: X and Wt must be C-contiguous (np.ascontiguousarray)")
    return _int(kernel, "k_bits", k_bits, 0, 64 * X.shape[1])


#: the word-major dense loops do about four times the work of the row-major GEMM per second (vpopcntq on
#: eight outputs): their work is counted as a quarter when choosing the serial twin
_VECTOR_SPEEDUP = 4


def bdense_sign(X: np.ndarray, Wt: np.ndarray, k_bits: int, S: np.ndarray, T: np.ndarray, out: np.ndarray) -> None:
    """:func:`bgemm_sign` on word-major weights ``Wt`` (KW, M) (``W.T``): bit j of out[i] = not (S[j] * dot_ij >= T[j])."""
    k = _word_major_checks("bdense_sign", X, Wt, k_bits)
    _thresholds("bdense_sign", S, T, np.int32, Wt.shape[1])
    _arr("bdense_sign", "out", out, np.uint64, 2)
    _shape("bdense_sign", "out", out, (X.shape[0], n_words(Wt.shape[1])))
    acc = scratch((X.shape[0], Wt.shape[1]), np.uint64)
    _launch("bdense_sign", X.shape[0] * Wt.size // _VECTOR_SPEEDUP, X, Wt, k, S, T, acc, out)


def bdense_dot(X: np.ndarray, Wt: np.ndarray, k_bits: int, out: np.ndarray) -> None:
    """:func:`bgemm` on word-major weights ``Wt`` (KW, M): out (N, M) int32 dot products."""
    k = _word_major_checks("bdense_dot", X, Wt, k_bits)
    _arr("bdense_dot", "out", out, np.int32, 2)
    _shape("bdense_dot", "out", out, (X.shape[0], Wt.shape[1]))
    acc = scratch((X.shape[0], Wt.shape[1]), np.uint64)
    _launch("bdense_dot", X.shape[0] * Wt.size // _VECTOR_SPEEDUP, X, Wt, k, acc, out)


def signed_weights(Wt: np.ndarray) -> np.ndarray:
    """The operand ``Wpm`` of :func:`bits_dense` for float32 weights ``Wt`` (K, M): ``(+1.0 * Wt, -1.0 * Wt)`` (2, K, M),
    float32 products (each exactly the product ``x_k * Wt[k, j]`` that ``float_dense`` forms for x_k = ±1, NaN
    payloads included). Made once per layer (the plan caches it), never per call."""
    Wt = np.asarray(Wt, dtype=np.float32)
    with np.errstate(invalid="ignore"):  # a signalling NaN weight: quieted, as in the product float_dense forms
        return np.ascontiguousarray(np.stack((Wt * np.float32(1.0), Wt * np.float32(-1.0))))


def bits_dense(X: np.ndarray, k_bits: int, Wpm: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = unpack(X) @ Wt + b bit for bit as :func:`unpack_float` then :func:`float_dense`: X (N, ceil(K/64)) u64,
    Wpm (2, K, M) = :func:`signed_weights` (Wt), b (M,), out (N, M) float32, all C-contiguous but X (the loop uses
    flat offsets)."""
    k = "bits_dense"
    _arr(k, "X", X, np.uint64, 2)
    kb = _int(k, "k_bits", k_bits, 0)
    _shape(k, "X", X, (X.shape[0], n_words(kb)))
    _arr(k, "Wpm", Wpm, np.float32, 3)
    _shape(k, "Wpm", Wpm, (2, kb, Wpm.shape[2]))
    m = Wpm.shape[2]
    _arr(k, "b", b, np.float32, 1)
    _shape(k, "b", b, (m,))
    _arr(k, "out", out, np.float32, 2)
    _shape(k, "out", out, (X.shape[0], m))
    if not (Wpm.flags.c_contiguous and b.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError(f"{k}: Wpm, b and out must be C-contiguous (np.ascontiguousarray)")
    _launch(k, X.shape[0] * kb * m // 16, X, kb, Wpm, b, out)


def sign_pack_rows(Y: np.ndarray, S: np.ndarray, T: np.ndarray, out: np.ndarray) -> None:
    """Bit j of out[i] = not (S[j] * Y[i, j] >= T[j]) (Y (N, M) float32, out (N, ceil(M/64))), on the serial loop:
    it never enters numba's thread pool, so parts of a batch may call it from several threads at once."""
    k = "sign_pack_rows"
    _arr(k, "Y", Y, np.float32, 2)
    _thresholds(k, S, T, np.float32, Y.shape[1])
    _arr(k, "out", out, np.uint64, 2)
    _shape(k, "out", out, (Y.shape[0], n_words(Y.shape[1])))
    _float_loops.float_sign_pack_serial(Y, S, T, out)


def bitserial_sign(X: np.ndarray, grid: np.ndarray, Wt: np.ndarray, pcw: np.ndarray, coef: np.ndarray,
                   S: np.ndarray, T: np.ndarray, out: np.ndarray) -> None:
    """A binary-weight first layer on inputs on an 8-bit grid, thresholded and packed (see
    :func:`stbin.deploy._dense_loops.bitserial_sign`): X (N, K) float32, grid (3,) float64 (scale > 0, offset,
    tolerance >= 0), Wt (ceil(K/64), M) packed ±1 weights word-major, pcw (M,) int64 their numbers of -1,
    coef (2, M) float64, S, T (M,) float32, out (N, ceil(M/64)) uint64. A value off the grid raises a ValueError."""
    k = "bitserial_sign"
    _arr(k, "X", X, np.float32, 2)
    _arr(k, "grid", grid, np.float64, 1)
    _shape(k, "grid", grid, (3,))
    if not (np.all(np.isfinite(grid)) and grid[0] > 0 and grid[2] >= 0):
        raise ValueError(f"{k}: grid must be (scale > 0, offset, tolerance >= 0), all finite, got {grid.tolist()}")
    _arr(k, "Wt", Wt, np.uint64, 2)
    n, kk = X.shape
    m = Wt.shape[1]
    _shape(k, "Wt", Wt, (n_words(kk), m))
    if not (X.flags.c_contiguous and Wt.flags.c_contiguous):
        raise ValueError(f"{k}: X and Wt must be C-contiguous (np.ascontiguousarray)")
    _arr(k, "pcw", pcw, np.int64, 1)
    _shape(k, "pcw", pcw, (m,))
    _arr(k, "coef", coef, np.float64, 2)
    _shape(k, "coef", coef, (2, m))
    _thresholds(k, S, T, np.float32, m)
    _arr(k, "out", out, np.uint64, 2)
    _shape(k, "out", out, (n, n_words(m)))
    Q, dot = scratch((n, kk), np.uint8), scratch((n, m), np.int64)
    planes, acc = scratch((8 * n, n_words(kk)), np.uint64), scratch((8 * n, m), np.uint64)
    _launch(k, n * 8 * Wt.size // _VECTOR_SPEEDUP, X, grid, Wt, pcw, coef, S, T, Q, planes, acc, dot, out)
