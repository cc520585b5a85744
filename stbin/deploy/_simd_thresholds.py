"""Threshold comparisons on eight uint64 lanes (:data:`stbin.deploy._simd.u64x8` layout, XOR-popcounts in a
C-contiguous uint64 array) for the fused sign of the binary kernels (:func:`stbin.deploy._loops.threshold_word`):
:func:`v8_minus_bits` (any int32 ``S``), :func:`v8_minus_bits_unit` (``S`` = ±1, no multiply) and :func:`v8_above`
(thresholds precomputed for one ``full``: one XOR and one comparison a vector)."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from stbin.deploy._simd import _V8, _c_u64, _ptr, _splat, _vload


def _c_i32(a):  # type: ignore[no-untyped-def]
    return isinstance(a, types.Array) and a.dtype == types.int32 and a.layout == "C" and a.ndim == 1


def _minus_bits(unit: bool):  # type: ignore[no-untyped-def]
    """The intrinsic :func:`v8_minus_bits` (``unit`` False: ``S * d`` by a 64-bit multiply, any int32 ``S``) or
    :func:`v8_minus_bits_unit` (``unit`` True: ``S`` must be +1 or -1, ``S * d = (d ^ m) - m`` with ``m`` the sign
    mask of ``S``: no multiply, which costs three micro-ops a vector on current x86 cores)."""
    def minus_bits(typingctx, acc, i, full, S, T, j):  # type: ignore[no-untyped-def]
        if not _c_u64(acc) or not _c_i32(S) or not _c_i32(T) or not all(isinstance(a, types.Integer) for a in (i, full, j)):
            return None

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            a, ai, f, s, t, sj = args
            v32 = ir.VectorType(ir.IntType(32), 8)

            def vload(k, ty, arr, idx):  # type: ignore[no-untyped-def]
                return builder.load(builder.bitcast(_ptr(context, builder, sig.args[k], arr, idx), ty.as_pointer()), align=4)

            d = builder.sub(_splat(builder, _V8, f), builder.shl(vload(0, _V8, a, ai), ir.Constant(_V8, [1] * 8)))
            sv = builder.sext(vload(3, v32, s, sj), _V8)
            if unit:
                m = builder.ashr(sv, ir.Constant(_V8, [63] * 8))
                sd = builder.sub(builder.xor(d, m), m)
            else:
                sd = builder.mul(sv, d)
            bits = builder.icmp_signed("<", sd, builder.sext(vload(4, v32, t, sj), _V8))
            return builder.zext(builder.bitcast(bits, ir.IntType(8)), ir.IntType(64))

        return types.uint64(acc, i, types.int64, S, T, j), codegen

    minus_bits.__name__ = minus_bits.__qualname__ = "v8_minus_bits_unit" if unit else "v8_minus_bits"
    minus_bits.__doc__ = ("The 8 threshold bits of 8 channels as one integer: bit ``l`` is set (-1) unless "
                          "``S[j + l] * (full - 2 * acc.flat[i + l]) >= T[j + l]`` (:func:`stbin.deploy._loops._minus` "
                          "on a vector)" + (", for ``S`` in {-1, +1} only" if unit else "") +
                          ". Unchecked like :func:`v8_xorpop`: the caller keeps both 8-element ranges inside.")
    return intrinsic(minus_bits)


v8_minus_bits = _minus_bits(False)
v8_minus_bits_unit = _minus_bits(True)


def _c_i64(a):  # type: ignore[no-untyped-def]
    return isinstance(a, types.Array) and a.dtype == types.int64 and a.layout == "C" and a.ndim == 1


@intrinsic
def v8_above(typingctx, acc, i, flip, thr, j):  # type: ignore[no-untyped-def]
    """The 8 bits ``(acc.flat[i + l] ^ flip[j + l]) > thr[j + l]`` (signed 64-bit comparison) as one integer: the
    threshold of :func:`v8_minus_bits_unit` on thresholds precomputed for one value of ``full``
    (:func:`stbin.deploy._loops.unit_thresholds`): one XOR and one comparison a vector. Unchecked like
    :func:`v8_xorpop`."""
    if not _c_u64(acc) or not _c_i64(flip) or not _c_i64(thr) or not isinstance(i, types.Integer) \
            or not isinstance(j, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        a, ai, fl, th, sj = args
        x = builder.xor(_vload(context, builder, sig.args[0], a, ai, _V8, 8),
                        _vload(context, builder, sig.args[2], fl, sj, _V8, 8))
        bits = builder.icmp_signed(">", x, _vload(context, builder, sig.args[3], th, sj, _V8, 8))
        return builder.zext(builder.bitcast(bits, ir.IntType(8)), ir.IntType(64))

    return types.uint64(acc, i, flip, thr, j), codegen
