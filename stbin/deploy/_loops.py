"""The compiled loops of the XNOR-popcount kernels (numba JIT, for the host CPU, cached on disk).

Do not call these directly: :mod:`stbin.deploy.kernels` wraps each of them in a Python
function that checks every array's dtype and shape (and every integer's range) BEFORE the
compiled loop runs; the loops themselves trust their arguments (no bounds checks).

All binary kernels take bit-packed operands (see :mod:`stbin.deploy.packing`: bit set =
-1, tail bits 0) and compute, for ±1 vectors of length ``K``,

    dot(x, w) = K - 2 * popcount(x XOR w)

with one ``llvm.ctpop.i64`` per 64-bit word. LLVM vectorises the word loop; on CPUs with
AVX-512 VPOPCNTDQ (Ice Lake, Zen 4 and later) it becomes ``vpopcntq`` on 512-bit registers
(eight words, 512 binary multiply-accumulates, per instruction); elsewhere ``popcnt``.

* :func:`bgemm` — packed (N, KW) x packed (M, KW) -> int32 dot products (N, M);
* :func:`bgemm_sign` — the same fused with a per-output threshold and packing of the
  result: output bit j of row i is set (-1) unless ``S[j] * dot >= T[j]``;
* :func:`bconv2d` / :func:`bconv2d_sign` (in :mod:`stbin.deploy._conv_loops`) — direct binary 2-D convolution on channel-packed
  NHWC bits (N, H, W, CW) with tap-major weights (KH, KW, CW, OC), vectorised over output
  channels; zero padding contributes 0 (only the valid taps are counted: ``dot = C * taps -
  2 * popcount``), as PyTorch's zero padding of a ±1 input does;
* :func:`bmaxpool2d` — max pooling on packed bits (of ±1 values, or of the real values
  before a folded threshold);
* the float-side loops (threshold-and-pack, small float GEMMs, unpacking) are in
  :mod:`stbin.deploy._float_loops`.

Outer loops are parallel (``prange``) over tiles of rows x outputs; a tile keeps about
128 KiB of weights hot in the L2 cache while a block of input rows streams past it.
"""

from __future__ import annotations

try:
    import numba
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.extending import intrinsic
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise ImportError("stbin.deploy needs numba for its inference kernels: pip install 'stbin[deploy]' "
                      f"({e})") from None

import os
import threading
import types as pytypes

import numpy as np

from stbin.deploy._simd_thresholds import v8_above, v8_minus_bits, v8_minus_bits_unit

# Threading layer. numba's default (OpenMP where available) costs a thread wake-up per
# parallel launch, which on a busy 2-core machine was measured at ~20 ms per call; the
# "workqueue" layer wakes in ~0.1 ms. We choose it unless the user set
# NUMBA_THREADING_LAYER or a parallel numba function already ran in this process.
# workqueue must not be entered by two threads at once: every launch of these kernels goes
# through KERNEL_LOCK (the engine takes it; see DeployedNet.predict).
if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
    try:
        numba.threading_layer()
    except ValueError:  # no parallel launch yet in this process
        numba.config.THREADING_LAYER = "workqueue"

KERNEL_LOCK = threading.RLock()

_JIT = dict(cache=True, fastmath=False, nogil=True)
_TILE_WEIGHT_BYTES = 128 * 1024
_ROW_BLOCK = 16


@intrinsic
def popcount64(typingctx, x):  # type: ignore[no-untyped-def]
    """Population count of a 64-bit integer (``llvm.ctpop.i64`` -> popcnt / vpopcntq)."""
    if not isinstance(x, types.Integer) or x.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(fn, [args[0]])

    return types.uint64(x), codegen


@njit(**_JIT)
def _xor_popcount(x, w, kw):  # type: ignore[no-untyped-def]
    acc = np.uint64(0)
    for k in range(kw):
        acc += popcount64(x[k] ^ w[k])
    return acc


@njit(**_JIT)
def _xor_popcount_2x2(x0, x1, w0, w1, kw):  # type: ignore[no-untyped-def]
    """popcount(x_r ^ w_c) for 2 rows x 2 weight rows: each loaded word is used twice."""
    a00 = np.uint64(0)
    a01 = np.uint64(0)
    a10 = np.uint64(0)
    a11 = np.uint64(0)
    for k in range(kw):
        p = x0[k]
        q = x1[k]
        r = w0[k]
        s = w1[k]
        a00 += popcount64(p ^ r)
        a01 += popcount64(p ^ s)
        a10 += popcount64(q ^ r)
        a11 += popcount64(q ^ s)
    return a00, a01, a10, a11


@njit(**_JIT)
def _tiles(n, m, kw, group):  # type: ignore[no-untyped-def]
    jb = max(group, (_TILE_WEIGHT_BYTES // max(1, kw * 8)) // group * group)
    nib = (n + _ROW_BLOCK - 1) // _ROW_BLOCK
    njb = (m + jb - 1) // jb
    return jb, nib, njb


@njit(parallel=True, **_JIT)
def bgemm(X, W, k_bits, out):  # type: ignore[no-untyped-def]
    """out[i, j] = sum_k x_ik w_jk for packed ±1 rows: ``K - 2 popcount(X[i] ^ W[j])``.

    Tiles of 16 rows x ~128 KiB of weights run in parallel; inside a tile a 2 x 2 register
    block (2 input rows x 2 weight rows) halves the loads per popcount.
    """
    n, kw = X.shape
    m = W.shape[0]
    jb, nib, njb = _tiles(n, m, kw, 2)
    kk = np.int64(k_bits)
    for t in prange(nib * njb):
        b = t // nib
        a = t % nib
        j0 = b * jb
        j1 = min(m, j0 + jb)
        i = a * _ROW_BLOCK
        i_end = min(n, i + _ROW_BLOCK)
        while i < i_end:
            if i + 1 < i_end:
                x0 = X[i]
                x1 = X[i + 1]
                j = j0
                while j + 1 < j1:
                    a00, a01, a10, a11 = _xor_popcount_2x2(x0, x1, W[j], W[j + 1], kw)
                    out[i, j] = np.int32(kk - 2 * np.int64(a00))
                    out[i, j + 1] = np.int32(kk - 2 * np.int64(a01))
                    out[i + 1, j] = np.int32(kk - 2 * np.int64(a10))
                    out[i + 1, j + 1] = np.int32(kk - 2 * np.int64(a11))
                    j += 2
                if j < j1:
                    out[i, j] = np.int32(kk - 2 * np.int64(_xor_popcount(x0, W[j], kw)))
                    out[i + 1, j] = np.int32(kk - 2 * np.int64(_xor_popcount(x1, W[j], kw)))
                i += 2
            else:
                for j in range(j0, j1):
                    out[i, j] = np.int32(kk - 2 * np.int64(_xor_popcount(X[i], W[j], kw)))
                i += 1


@njit(**_JIT)
def _minus(d, s, t):  # type: ignore[no-untyped-def]
    """1 (bit set, unit = -1) unless s * d >= t."""
    return np.uint64(0) if np.int64(s) * d >= np.int64(t) else np.uint64(1)


@njit(inline="always", **_JIT)
def unit_signs(S):  # type: ignore[no-untyped-def]
    """Whether every ``S[j]`` is +1 or -1 (as the engine's own folding writes them: ``stbin.deploy.thresholds``),
    so that :func:`threshold_word` may take ``unit``."""
    ok = True
    for j in range(S.shape[0]):
        ok &= (S[j] == 1) | (S[j] == -1)
    return ok


@njit(inline="always", **_JIT)
def threshold_word(acc, row, full, S, T, lo, hi, unit):  # type: ignore[no-untyped-def]
    """The packed signs of outputs ``lo .. hi-1`` (``hi - lo <= 64``) of row ``row`` of the XOR-popcounts ``acc``
    (2-D uint64, C-contiguous): bit ``j - lo`` is :func:`_minus` of ``full - 2 acc[row, j]``; eight outputs at a
    time with :func:`stbin.deploy._simd_thresholds.v8_minus_bits`, or without its multiply, :func:`v8_minus_bits_unit`, where
    ``unit`` (:func:`unit_signs` of ``S``: measured 9% of a 16-channel binary convolution on one thread); the rest
    one by one."""
    m = acc.shape[1]
    word = np.uint64(0)
    j = lo
    while j + 8 <= hi:
        if unit:
            bits = v8_minus_bits_unit(acc, row * m + j, full, S, T, j)
        else:
            bits = v8_minus_bits(acc, row * m + j, full, S, T, j)
        word |= bits << np.uint64(j - lo)
        j += 8
    for j in range(j, hi):
        word |= _minus(full - 2 * np.int64(acc[row, j]), S[j], T[j]) << np.uint64(j - lo)
    return word


@njit(inline="always", **_JIT)
def unit_thresholds(S, T, full, flip, thr):  # type: ignore[no-untyped-def]
    """For ``S`` in {-1, +1} (:func:`unit_signs`) and one value of ``full``: ``flip``, ``thr`` (int64) such that
    ``_minus(full - 2 a, S[j], T[j]) == ((a ^ flip[j]) > thr[j])`` for every a >= 0. S = +1: the bit is set iff
    full - 2a < T, i.e. a > floor((full - T) / 2); S = -1: iff 2a - full < T, i.e. a < ceil((full + T) / 2), i.e.
    ~a > ~ceil((full + T) / 2) (~x = -x - 1 reverses the order)."""
    for j in range(S.shape[0]):
        if S[j] > 0:
            flip[j] = 0
            thr[j] = (full - np.int64(T[j])) // 2
        else:
            flip[j] = -1
            thr[j] = ~(-((-(full + np.int64(T[j]))) // 2))


@njit(inline="always", **_JIT)
def threshold_word_above(acc, row, full, flip, thr, S, T, lo, hi):  # type: ignore[no-untyped-def]
    """:func:`threshold_word` with ``unit`` for the ``full`` that ``flip`` / ``thr`` were made for
    (:func:`unit_thresholds`): eight outputs a compare (:func:`stbin.deploy._simd_thresholds.v8_above`), the rest one by one."""
    m = acc.shape[1]
    word = np.uint64(0)
    j = lo
    while j + 8 <= hi:
        word |= v8_above(acc, row * m + j, flip, thr, j) << np.uint64(j - lo)
        j += 8
    for j in range(j, hi):
        word |= _minus(full - 2 * np.int64(acc[row, j]), S[j], T[j]) << np.uint64(j - lo)
    return word


# Deliberate near-copy of bgemm: the same tiling and 2 x 2 register block, with the threshold and the
# packing fused into the inner loop. A shared tile loop taking the store as a callback would stop
# numba from inlining it into the register block and cost speed (tests check both against a dense reference).
@njit(parallel=True, **_JIT)
def bgemm_sign(X, W, k_bits, S, T, out):  # type: ignore[no-untyped-def]
    """Fused binary GEMM + threshold + packing: bit j of out[i] = not (S[j] * dot_ij >= T[j])."""
    n, kw = X.shape
    m = W.shape[0]
    jb, nib, njb = _tiles(n, m, kw, 64)
    kk = np.int64(k_bits)
    for t in prange(nib * njb):
        b = t // nib
        a = t % nib
        j0 = b * jb
        j1 = min(m, j0 + jb)
        i = a * _ROW_BLOCK
        i_end = min(n, i + _ROW_BLOCK)
        while i < i_end:
            two = i + 1 < i_end
            x0 = X[i]
            x1 = X[i + 1] if two else X[i]
            for g in range(j0 // 64, (j1 + 63) // 64):
                word0 = np.uint64(0)
                word1 = np.uint64(0)
                g_end = min(j1, g * 64 + 64)
                j = g * 64
                while j + 1 < g_end:
                    a00, a01, a10, a11 = _xor_popcount_2x2(x0, x1, W[j], W[j + 1], kw)
                    sh = np.uint64(j - g * 64)
                    word0 |= _minus(kk - 2 * np.int64(a00), S[j], T[j]) << sh
                    word0 |= _minus(kk - 2 * np.int64(a01), S[j + 1], T[j + 1]) << (sh + np.uint64(1))
                    word1 |= _minus(kk - 2 * np.int64(a10), S[j], T[j]) << sh
                    word1 |= _minus(kk - 2 * np.int64(a11), S[j + 1], T[j + 1]) << (sh + np.uint64(1))
                    j += 2
                if j < g_end:
                    sh = np.uint64(j - g * 64)
                    word0 |= _minus(kk - 2 * np.int64(_xor_popcount(x0, W[j], kw)), S[j], T[j]) << sh
                    word1 |= _minus(kk - 2 * np.int64(_xor_popcount(x1, W[j], kw)), S[j], T[j]) << sh
                out[i, g] = word0
                if two:
                    out[i + 1, g] = word1
            i += 2 if two else 1


# The valid-tap loops here are a deliberate near-copy of _conv_loops._conv_pixel's (before its valid-tap ranges): specialised to AND / OR of
# packed words per channel, where _conv_pixel XOR-popcounts against weights.
@njit(parallel=True, **_JIT)
def bmaxpool2d(X, any_mask, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, out):  # type: ignore[no-untyped-def]
    """Max pooling on packed NHWC bits (padding taps ignored).

    For a channel whose bit is set in ``any_mask`` (CW words) the output is +1 if **any**
    tap is +1 (the max of ±1 values: AND of the "-1" bits); for a clear bit it is +1 only
    if **all** taps are +1 (OR of the "-1" bits) — the max of real pre-activations seen
    through a *decreasing* threshold rule (see :mod:`stbin.deploy.compile`).
    """
    n, h, w_, cw = X.shape
    _, oh, ow, _ = out.shape
    for t in prange(n * oh):
        nidx = t // oh
        oy = t % oh
        for ox in range(ow):
            for c in range(cw):
                w_and = ~np.uint64(0)
                w_or = np.uint64(0)
                for u in range(kh):
                    iy = oy * stride_h - pad_h + u * dil_h
                    if iy < 0 or iy >= h:
                        continue
                    for v in range(kw):
                        ix = ox * stride_w - pad_w + v * dil_w
                        if ix < 0 or ix >= w_:
                            continue
                        w_and &= X[nidx, iy, ix, c]
                        w_or |= X[nidx, iy, ix, c]
                m = any_mask[c]
                out[nidx, oy, ox, c] = (w_and & m) | (w_or & ~m)


@njit(parallel=True, **_JIT)
def popcount_peak(X, reps):  # type: ignore[no-untyped-def]
    """The XOR-popcount roofline: the GEMM's inner loop on L1-resident operands.

    ``X`` has shape (threads, 5, kw): per thread one input row and four weight rows; each
    rep computes the four XOR-popcount dot products (input row XOR the rep number, so that
    no rep can be hoisted). Returns a checksum; the benchmark times it to measure the
    attainable binary-MAC rate (64 MACs per word) without cache misses or tiling overhead.
    """
    # The inner loop is a deliberate near-copy of _xor_popcount_2x2 (1 row x 4 weight rows, XOR key):
    # it must be this loop, written out, for the benchmark to measure the kernels' inner loop.
    nt, _, kw = X.shape
    sums = np.zeros(nt, np.uint64)
    for t in prange(nt):
        x = X[t, 0]
        w0 = X[t, 1]
        w1 = X[t, 2]
        w2 = X[t, 3]
        w3 = X[t, 4]
        tot = np.uint64(0)
        for r in range(reps):
            key = np.uint64(r)
            a0 = np.uint64(0)
            a1 = np.uint64(0)
            a2 = np.uint64(0)
            a3 = np.uint64(0)
            for k in range(kw):
                v = x[k] ^ key
                a0 += popcount64(v ^ w0[k])
                a1 += popcount64(v ^ w1[k])
                a2 += popcount64(v ^ w2[k])
                a3 += popcount64(v ^ w3[k])
            tot += a0 + a1 + a2 + a3
        sums[t] = tot
    return sums.sum()


# -- serial twins -------------------------------------------------------------------------------
# A parallel launch costs tens of microseconds (waking the pool) even for a few thousand
# popcounts; the serial twins (same code, ``prange`` running as ``range``) cost a plain call
# (~0.3 us). stbin.deploy.kernels picks the twin below a work threshold. Each twin is a copy of
# the function under its own name, so that numba's on-disk cache keeps the two apart.
def _serial(dispatcher, name):  # type: ignore[no-untyped-def]
    f = dispatcher.py_func
    g = pytypes.FunctionType(f.__code__, f.__globals__, name, f.__defaults__, f.__closure__)
    g.__qualname__ = name
    return njit(**_JIT)(g)


# The twin declarations (here and in _float_loops) are explicit on purpose: one module attribute a
# kernel, so that kernels._pick, the tests and a reader find each twin by its name.
bgemm_serial = _serial(bgemm, "bgemm_serial")
bgemm_sign_serial = _serial(bgemm_sign, "bgemm_sign_serial")
bmaxpool2d_serial = _serial(bmaxpool2d, "bmaxpool2d_serial")
