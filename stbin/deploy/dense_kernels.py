"""Checked entry points of the dense layers' compiled loops (:mod:`stbin.deploy._dense_loops`), with the
conventions of :mod:`stbin.deploy.kernels` (every array's dtype and shape and every integer checked before
the loop runs; a one-line ValueError naming the kernel and the argument; callers hold ``KERNEL_LOCK``):

* :func:`bdense_sign` — :func:`~stbin.deploy.kernels.bgemm_sign` on word-major weights ``Wt`` (KW, M);
* :func:`bdense_dot` — :func:`~stbin.deploy.kernels.bgemm` on word-major weights;
* :func:`bits_dense` — a float layer on packed ±1 inputs (``unpack_float`` + ``float_dense`` in one loop);
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


def bits_dense(X: np.ndarray, k_bits: int, Wt: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = unpack(X) @ Wt + b bit for bit as :func:`unpack_float` then :func:`float_dense`: X (N, ceil(K/64)) u64,
    Wt (K, M), b (M,), out (N, M) float32."""
    k = "bits_dense"
    _arr(k, "X", X, np.uint64, 2)
    kb = _int(k, "k_bits", k_bits, 0)
    _shape(k, "X", X, (X.shape[0], n_words(kb)))
    _arr(k, "Wt", Wt, np.float32, 2)
    _shape(k, "Wt", Wt, (kb, Wt.shape[1]))
    _arr(k, "b", b, np.float32, 1)
    _shape(k, "b", b, (Wt.shape[1],))
    _arr(k, "out", out, np.float32, 2)
    _shape(k, "out", out, (X.shape[0], Wt.shape[1]))
    _launch(k, X.shape[0] * Wt.size // 16, X, kb, Wt, b, out)


def sign_pack_rows(Y: np.ndarray, S: np.ndarray, T: np.ndarray, out: np.ndarray) -> None:
    """Bit j of out[i] = not (S[j] * Y[i, j] >= T[j]) (Y (N, M) float32, out (N, ceil(M/64))), on the serial loop:
    it never enters numba's thread pool, so parts of a batch may call it from several threads at once."""
    k = "sign_pack_rows"
    _arr(k, "Y", Y, np.float32, 2)
    _thresholds(k, S, T, np.float32, Y.shape[1])
    _arr(k, "out", out, np.uint64, 2)
    _shape(k, "out", out, (Y.shape[0], n_words(Y.shape[1])))
    _float_loops.float_sign_pack_serial(Y, S, T, out)
