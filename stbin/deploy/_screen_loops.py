"""Compiled loop of the **screened** first float layer: a float32 dense layer with its folded threshold and
the packing, bit for bit :func:`stbin.deploy._float_loops.float_dense_sign`, reading a quarter of the bytes.

At batch 1 the float first layer of an MLP (784 x 512 float32 weights, 1.6 MB) is memory-bound: the bytes,
not the multiply-adds, are its cost, and far more so once other work has pushed them out of the caches.
Only the **sign** of each thresholded pre-activation is kept, and most outputs are far from their threshold,
so the exact float32 sum is only needed for the few that are close. Per input row:

1. **Screen.** The row is quantised to integers ``p_k = rint(x_k / sx)``, ``|p_k| <= 32767``, and each
   output's weights to int8, ``W_jk ~ s_j q_jk``; ``Z_j = sum_k p_k q_jk`` is exact: ``p + 32768 = 256 h + l``
   splits into two byte planes, each summed against the int8 weights in int32 by AVX-512 VNNI ``vpdpbusd``
   (64 multiply-adds an instruction). The float32 sum ``y_j`` that the fused loop computes satisfies

   ``|y_j - sx s_j Z_j| <= ||x - sx p|| ||W_j|| + sx ||p|| ||W_j - s_j q_j|| + g_K ||x|| ||W_j|| + K 2^-149``

   (Cauchy-Schwarz on the two quantisation errors; the last two terms bound the float32 rounding of the
   recursive dot product, ``g_K = (K+1) u / (1 - (K+1) u)``, ``u = 2^-24``, with an allowance for underflow;
   Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM 2002, sec. 3.1). Rounding to
   float32, adding the bias and ``S * y >= T`` are monotone in ``y`` (for finite ``S, T``), so the output bit
   is decided when both ends of the interval give the same bit (the ends are widened by margins far above
   the float64 rounding of the bound itself).
2. **Refine** an undecided output with a second int8 weight on the residual (``W_j ~ s_j q_j + s2_j r_j``,
   stored output-major: one output's bytes are contiguous): the bound's weight term shrinks ~250x.
3. **Recompute** an output still undecided exactly as the fused loop does: ``0 + x_0 W_j0 + x_1 W_j1 + ...``
   in float32 in the same order, ``+ b_j``, then the threshold.

The row set-up's float64 sums (``||x||^2``, ``||x - sx p||^2``, ``||p||^2``) run in the eight lanes of an f64x8
register (:mod:`stbin.deploy._simd_f64`): the bounds hold for any summation order, since every norm is
multiplied by ``up = 1 + 2^-30``, above the relative rounding error ``(K - 1) u_64 / (1 - (K - 1) u_64)`` of
any float64 sum of ``K <= 2^16`` non-negative terms (Higham, sec. 4.2). The outputs the screen leaves
undecided are settled first, so the packing of the verdicts is branch-free.

A row with a non-finite value, or so large that a float32 partial sum could overflow, runs the fused loop
itself, and so does every row while a bias or threshold is not finite. On the demo MLP's random layer
about one output in ten is refined and a few in a thousand are recomputed. The operands are built and
checked by :mod:`stbin.deploy.screened`.
"""

from __future__ import annotations

import os

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, models, register_model

from stbin.deploy._float_loops import _dense_row, _pack_row
from stbin.deploy._loops import _JIT, _serial, njit, prange
from stbin.deploy._simd import _ptr, vector_store
from stbin.deploy._simd_f64 import d8_absmax, d8_add, d8_load_n, d8_max, d8_mul, d8_sub, d8_sum, d8_zero

_V16 = ir.VectorType(ir.IntType(32), 16)


def _host_vnni() -> bool:
    """Whether numba compiles for a CPU with AVX-512 VNNI (the host's, unless numba is told another CPU)."""
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return False
    try:
        from llvmlite import binding

        return bool(binding.get_host_cpu_features().get("avx512vnni"))
    except Exception:  # noqa: BLE001 - an unknown host: no screen
        return False


#: the screen needs ``vpdpbusd``; elsewhere the layer keeps the fused loop (see ``screened.screen_operands``)
HAVE_VNNI = _host_vnni()


class I32x16(types.Type):
    """Sixteen int32 lanes in one LLVM vector value (a 512-bit zmm register with AVX-512)."""

    def __init__(self) -> None:
        super().__init__(name="i32x16")


i32x16 = I32x16()
register_model(I32x16)(lambda dmm, fe_type: models.PrimitiveModel(dmm, fe_type, _V16))


@intrinsic
def v16_zero(typingctx):  # type: ignore[no-untyped-def]
    return i32x16(), lambda context, builder, sig, args: ir.Constant(_V16, None)


def _c_i8(a):  # type: ignore[no-untyped-def]
    return isinstance(a, types.Array) and a.dtype in (types.int8, types.uint8) and a.layout == "C"


@intrinsic
def v16_dpbusd(typingctx, acc, u, ui, q, qi):  # type: ignore[no-untyped-def]
    """``acc[l] + sum_t u.flat[ui + t] * q.flat[qi + 4 l + t]`` (t = 0..3, l = 0..15): four unsigned bytes of ``u``,
    broadcast, times sixteen groups of four signed bytes of ``q``, summed into int32 lanes (AVX-512 VNNI
    ``vpdpbusd``: 64 multiply-adds in one instruction). Unchecked: the caller keeps both ranges inside; compiled
    only where the CPU has AVX-512 VNNI (:data:`HAVE_VNNI`)."""
    if acc != i32x16 or not _c_i8(u) or not _c_i8(q) or not isinstance(ui, types.Integer) \
            or not isinstance(qi, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        a, ua, uidx, qa, qidx = args
        i32 = ir.IntType(32)
        up = _ptr(context, builder, sig.args[1], ua, uidx)
        uw = builder.load(builder.bitcast(up, i32.as_pointer()), align=1)
        us = builder.insert_element(ir.Constant(_V16, ir.Undefined), uw, ir.Constant(i32, 0))
        us = builder.shuffle_vector(us, ir.Constant(_V16, ir.Undefined), ir.Constant(_V16, None))
        qp = _ptr(context, builder, sig.args[3], qa, qidx)
        qv = builder.load(builder.bitcast(qp, _V16.as_pointer()), align=1)
        fn = builder.module.declare_intrinsic("llvm.x86.avx512.vpdpbusd.512", fnty=ir.FunctionType(_V16, [_V16] * 3))
        return builder.call(fn, [a, us, qv])

    return i32x16(acc, u, ui, q, qi), codegen


v16_store = vector_store(i32x16, _V16, types.int32, 4, "v16_store")


@intrinsic
def v16_dpbusd_vv(typingctx, acc, u, ui, q, qi):  # type: ignore[no-untyped-def]
    """``acc[l] + sum_t u.flat[ui + 4 l + t] * q.flat[qi + 4 l + t]`` (t = 0..3): 64 unsigned bytes of ``u`` times 64
    signed bytes of ``q``, summed four by four into int32 lanes (``vpdpbusd``); unchecked, like :func:`v16_dpbusd`."""
    if acc != i32x16 or not _c_i8(u) or not _c_i8(q) or not isinstance(ui, types.Integer) \
            or not isinstance(qi, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        a, ua, uidx, qa, qidx = args
        up = _ptr(context, builder, sig.args[1], ua, uidx)
        qp = _ptr(context, builder, sig.args[3], qa, qidx)
        uv = builder.load(builder.bitcast(up, _V16.as_pointer()), align=1)
        qv = builder.load(builder.bitcast(qp, _V16.as_pointer()), align=1)
        fn = builder.module.declare_intrinsic("llvm.x86.avx512.vpdpbusd.512", fnty=ir.FunctionType(_V16, [_V16] * 3))
        return builder.call(fn, [a, uv, qv])

    return i32x16(acc, u, ui, q, qi), codegen


@intrinsic
def v16_sum(typingctx, acc):  # type: ignore[no-untyped-def]
    """The sum of the sixteen lanes (int64; each lane sign-extended first, so it cannot wrap)."""
    if acc != i32x16:
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        v64 = ir.VectorType(ir.IntType(64), 16)
        fnty = ir.FunctionType(ir.IntType(64), [v64])
        fn = builder.module.declare_intrinsic("llvm.vector.reduce.add.v16i64", fnty=fnty)
        return builder.call(fn, [builder.sext(args[0], v64)])

    return types.int64(acc), codegen


@njit(inline="always", **_JIT)
def _planes(U, Q, Z):  # type: ignore[no-untyped-def]
    """Z[p, j] = sum_k U[p, k] q_kj for both byte planes p and every padded output j: U (2, Kp) uint8, Q (Mp / 64,
    Kp / 4, 256) int8 holding the weights of inputs 4g .. 4g + 3 of output 64 c + l at Q[c, g, 4 l .. 4 l + 3]
    (each block of 64 outputs one contiguous stream); 64 outputs of both planes per pass in registers (each
    weight vector loaded once for the two)."""
    nb, k4, _ = Q.shape
    kp = U.shape[1]
    mp = Z.shape[1]
    for c in range(nb):
        a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = v16_zero()
        for g in range(k4):
            base = (c * k4 + g) * 256
            a0 = v16_dpbusd(a0, U, 4 * g, Q, base)
            b0 = v16_dpbusd(b0, U, kp + 4 * g, Q, base)
            a1 = v16_dpbusd(a1, U, 4 * g, Q, base + 64)
            b1 = v16_dpbusd(b1, U, kp + 4 * g, Q, base + 64)
            a2 = v16_dpbusd(a2, U, 4 * g, Q, base + 128)
            b2 = v16_dpbusd(b2, U, kp + 4 * g, Q, base + 128)
            a3 = v16_dpbusd(a3, U, 4 * g, Q, base + 192)
            b3 = v16_dpbusd(b3, U, kp + 4 * g, Q, base + 192)
        o = 64 * c
        v16_store(a0, Z, o)
        v16_store(a1, Z, o + 16)
        v16_store(a2, Z, o + 32)
        v16_store(a3, Z, o + 48)
        v16_store(b0, Z, mp + o)
        v16_store(b1, Z, mp + o + 16)
        v16_store(b2, Z, mp + o + 32)
        v16_store(b3, Z, mp + o + 48)


@njit(inline="always", **_JIT)
def _refine(U, R, j):  # type: ignore[no-untyped-def]
    """(sum_k h_k r_jk, sum_k l_k r_jk) for the two byte planes h, l of U (2, Kp) and R (M, Kp) int8."""
    kp = U.shape[1]
    a = b = v16_zero()
    for k0 in range(0, kp, 64):
        a = v16_dpbusd_vv(a, U, k0, R, j * kp + k0)
        b = v16_dpbusd_vv(b, U, kp + k0, R, j * kp + k0)
    return v16_sum(a), v16_sum(b)


@njit(inline="always", **_JIT)
def _ends(a, bound, bj, sj, tj):  # type: ignore[no-untyped-def]
    """``d(lo) + 2 d(hi)`` with ``d(v) = S * (float32(v) + b) >= T`` at both ends of ``a -+ bound`` (branch-free, so
    a loop over outputs vectorises): 0 or 3 when every float32 sum within ``bound`` of ``a`` gives the same bit."""
    lo = a - bound
    hi = a + bound
    lo = lo - abs(lo) * 2.0 ** -20 - 2.0 ** -140  # so that rounding to float32 cannot move inside the interval
    hi = hi + abs(hi) * 2.0 ** -20 + 2.0 ** -140
    yl = np.float32(lo) + bj
    yh = np.float32(hi) + bj
    return np.int8(sj * yl >= tj) + np.int8(2) * np.int8(sj * yh >= tj)


@njit(inline="always", **_JIT)
def _stats(X, i, k):  # type: ignore[no-untyped-def]
    """(max |x_k|, sum x_k^2) of row i of the C-contiguous X in float64, eight partial sums in the lanes of an
    f64x8 register (the bounds allow any order: see ``up``); a NaN makes the sum NaN, an inf makes it inf."""
    am = ss = d8_zero()
    for kk in range(0, k, 8):
        v = d8_load_n(X, i * k + kk, k - kk)
        am = d8_absmax(am, v)
        ss = d8_add(ss, d8_mul(v, v))
    return d8_max(am), d8_sum(ss)


@njit(inline="always", **_JIT)
def _error_norms(X, P, i, k, sx):  # type: ignore[no-untyped-def]
    """(sum e_k^2, sum p_k^2) with e_k = x_k - sx p_k (each e_k formed in float64 as before), eight partial sums
    each in f64x8 lanes (any order: see ``up``)."""
    dd = pp = d8_zero()
    for kk in range(0, k, 8):
        p = d8_load_n(P, i * k + kk, k - kk)
        e = d8_sub(d8_load_n(X, i * k + kk, k - kk), d8_mul(p, sx))
        dd = d8_add(dd, d8_mul(e, e))
        pp = d8_add(pp, d8_mul(p, p))
    return d8_sum(dd), d8_sum(pp)


@njit(parallel=True, **_JIT)
def screened_dense_sign(X, Q, R, W, Wt, b, S, T, colc, csum, P, U, Z, A, D, acc, out):  # type: ignore[no-untyped-def]
    """Bit j of out[i] = not (S[j] * y_ij >= T[j]), y_i = X[i] @ W.T + b exactly as ``float_dense_sign``
    computes it (see the module docstring); ``Wt`` (K, M) is ``W.T`` contiguous, for the rows that run the fused
    loop itself; ``csum`` (2, M) int32: ``sum_k q_kj`` and ``sum_k r_jk``. Scratch: P (N, K) float64, U (N, 2, Kp)
    uint8, Z (N, 2, Mp) int32, A (N, M) float64, D (N, M) int8, acc (N, M) float32."""
    n, k = X.shape
    m = W.shape[0]
    kp = U.shape[2]
    g = (k + 1) * 2.0 ** -24 / (1.0 - (k + 1) * 2.0 ** -24)
    under = k * 2.0 ** -148
    up = 1.0 + 2.0 ** -30  # above the relative rounding error of any float64 sum below (k <= 2^16 terms)
    nmax = 0.0
    finite = True  # the verdicts need finite b, S, T (checked here too: a compiled plan may see them changed)
    for j in range(m):
        nmax = max(nmax, colc[2, j])
        if not (abs(b[j]) <= 3.5e38 and abs(S[j]) <= 3.5e38 and abs(T[j]) <= 3.5e38):
            finite = False
    for i in prange(n):
        amax, xx = _stats(X, i, k)  # a NaN makes xx NaN, an inf makes both inf
        xn = np.sqrt(xx) * up
        if not finite or not (amax <= 3e38) or not (xn * nmax <= 1e37):  # or a partial sum could overflow
            _dense_row(X[i], Wt, b, acc[i])
            _pack_row(acc[i], S, T, out[i])
            continue
        sx = amax / 32767.0 if amax > 0.0 else 1.0
        inv = 32767.0 / amax if amax > 0.0 else 0.0  # any integers p are valid: the bound uses x - sx p
        for kk in range(k):
            P[i, kk] = min(max(np.rint(np.float64(X[i, kk]) * inv), -32767.0), 32767.0)
        dd, pp = _error_norms(X, P, i, k, sx)
        for kk in range(k):
            u = np.int32(P[i, kk]) + 32768  # p + 32768 = 256 h + l
            U[i, 0, kk] = np.uint8(u >> 8)
            U[i, 1, kk] = np.uint8(u & 255)
        for kk in range(k, kp):  # padded inputs: p = 0 (their weights are 0)
            U[i, 0, kk] = 128
            U[i, 1, kk] = 0
        dn = np.sqrt(dd) * up + k * amax * 2.0 ** -50
        pn = np.sqrt(pp) * up
        _planes(U[i], Q, Z[i])
        c1 = dn + g * xn
        c2 = sx * pn
        for j in range(m):  # the screen's verdicts, branch-free
            a1 = sx * (colc[0, j] * np.float64(256 * np.int64(Z[i, 0, j]) + np.int64(Z[i, 1, j])
                                                - 32768 * np.int64(csum[0, j])))
            A[i, j] = a1
            D[i, j] = _ends(a1, (c1 * colc[2, j] + c2 * colc[3, j]) * up + under + abs(a1) * 2.0 ** -40,
                            b[j], S[j], T[j])
        for j in range(m):  # the few undecided outputs (a rare branch): refine, then recompute if still undecided
            d = D[i, j]
            if d == 1 or d == 2:  # undecided: refine with the residual weights
                a1 = A[i, j]
                zh, zl = _refine(U[i], R, j)
                a2 = sx * (colc[1, j] * np.float64(256 * zh + zl - 32768 * np.int64(csum[1, j])))
                bound = (c1 * colc[2, j] + c2 * colc[4, j]) * up + under + (abs(a1) + abs(a2)) * 2.0 ** -40
                d = _ends(a1 + a2, bound, b[j], S[j], T[j])
                if d == 1 or d == 2:  # still undecided: recompute this output exactly, in the fused loop's order
                    s = np.float32(0.0)
                    for kk in range(k):
                        s = s + X[i, kk] * W[j, kk]
                    d = 3 if S[j] * (s + b[j]) >= T[j] else 0
                D[i, j] = d
        for gw in range(out.shape[1]):  # every verdict is now 0 or 3: branch-free packing
            word = np.uint64(0)
            for j in range(gw * 64, min(m, gw * 64 + 64)):
                word |= np.uint64(D[i, j] == 0) << np.uint64(j - gw * 64)
            out[i, gw] = word

screened_dense_sign_serial = _serial(screened_dense_sign, "screened_dense_sign_serial")
