"""LLVM vector intrinsics for numba: a ``u64x8`` type (eight uint64 lanes in one LLVM ``<8 x i64>``
value, a 512-bit zmm register with AVX-512) and the operations the register-blocked binary loops of
:mod:`stbin.deploy._conv_loops`, :mod:`stbin.deploy._dense_loops` and :mod:`stbin.deploy._fused_loops`
build on: :func:`v8_zero`, :func:`v8_xorpop` (one load, XOR with a broadcast word, ``vpopcntq`` through
LLVM's portable ``llvm.ctpop.v8i64``, add), :func:`load_u64`, :func:`v8_store` and :func:`v8_minus_bits`
(eight fused threshold comparisons). LLVM did not vectorise eight scalar accumulators itself (checked
in the assembly), hence the explicit vector type.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic, models, register_model

_V8 = ir.VectorType(ir.IntType(64), 8)


class U64x8(types.Type):
    """Eight uint64 lanes in one LLVM vector value (a register: 512-bit zmm with AVX-512)."""

    def __init__(self) -> None:
        super().__init__(name="u64x8")


u64x8 = U64x8()
register_model(U64x8)(lambda dmm, fe_type: models.PrimitiveModel(dmm, fe_type, _V8))


def _c_u64(a):  # type: ignore[no-untyped-def]
    return isinstance(a, types.Array) and a.dtype == types.uint64 and a.layout == "C"


@intrinsic
def v8_zero(typingctx):  # type: ignore[no-untyped-def]
    """Eight zero lanes."""
    return u64x8(), lambda context, builder, sig, args: ir.Constant(_V8, None)


@intrinsic
def v8_xorpop(typingctx, acc, arr, i, x):  # type: ignore[no-untyped-def]
    """``acc + popcount(arr.flat[i:i + 8] ^ x)`` lane by lane (``vpopcntq`` on one 512-bit load).
    Unchecked: the caller guarantees ``0 <= i`` and ``i + 8 <= arr.size`` (C-contiguous ``arr``)."""
    if acc != u64x8 or not _c_u64(arr) or not isinstance(x, types.Integer) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        a, ary, idx, xv = args
        ptr = builder.gep(context.make_array(sig.args[1])(context, builder, ary).data, [idx])
        w = builder.load(builder.bitcast(ptr, _V8.as_pointer()), align=8)
        xs = builder.insert_element(ir.Constant(_V8, ir.Undefined), xv, ir.Constant(ir.IntType(32), 0))
        xs = builder.shuffle_vector(xs, ir.Constant(_V8, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), 8), None))
        fn = builder.module.declare_intrinsic("llvm.ctpop.v8i64", fnty=ir.FunctionType(_V8, [_V8]))
        return builder.add(a, builder.call(fn, [builder.xor(w, xs)]))

    return u64x8(acc, arr, i, types.uint64), codegen


@intrinsic
def load_u64(typingctx, arr, i):  # type: ignore[no-untyped-def]
    """``arr.flat[i]`` without the negative-index wraparound; unchecked like :func:`v8_xorpop`."""
    if not _c_u64(arr) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.load(builder.gep(context.make_array(sig.args[0])(context, builder, args[0]).data, [args[1]]))

    return types.uint64(arr, i), codegen


@intrinsic
def v8_store(typingctx, acc, arr, i):  # type: ignore[no-untyped-def]
    """``arr.flat[i:i + 8] = acc``; unchecked like :func:`v8_xorpop`."""
    if acc != u64x8 or not _c_u64(arr) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        a, ary, idx = args
        ptr = builder.gep(context.make_array(sig.args[1])(context, builder, ary).data, [idx])
        builder.store(a, builder.bitcast(ptr, _V8.as_pointer()), align=8)
        return context.get_dummy_value()

    return types.none(acc, arr, i), codegen


def _c_i32(a):  # type: ignore[no-untyped-def]
    return isinstance(a, types.Array) and a.dtype == types.int32 and a.layout == "C" and a.ndim == 1


@intrinsic
def v8_minus_bits(typingctx, acc, i, full, S, T, j):  # type: ignore[no-untyped-def]
    """The 8 threshold bits of 8 channels as one integer: bit ``l`` is set (-1) unless
    ``S[j + l] * (full - 2 * acc.flat[i + l]) >= T[j + l]`` (:func:`stbin.deploy._loops._minus` on
    a vector). Unchecked like :func:`v8_xorpop`: the caller keeps both 8-element ranges inside."""
    if not _c_u64(acc) or not _c_i32(S) or not _c_i32(T) or not all(isinstance(a, types.Integer) for a in (i, full, j)):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        a, ai, f, s, t, sj = args
        v32 = ir.VectorType(ir.IntType(32), 8)

        def vload(k, ty, arr, idx):  # type: ignore[no-untyped-def]
            ptr = builder.gep(context.make_array(sig.args[k])(context, builder, arr).data, [idx])
            return builder.load(builder.bitcast(ptr, ty.as_pointer()), align=4)

        fv = builder.insert_element(ir.Constant(_V8, ir.Undefined), f, ir.Constant(ir.IntType(32), 0))
        fv = builder.shuffle_vector(fv, ir.Constant(_V8, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), 8), None))
        d = builder.sub(fv, builder.shl(vload(0, _V8, a, ai), ir.Constant(_V8, [1] * 8)))
        sd = builder.mul(builder.sext(vload(3, v32, s, sj), _V8), d)
        bits = builder.icmp_signed("<", sd, builder.sext(vload(4, v32, t, sj), _V8))
        return builder.zext(builder.bitcast(bits, ir.IntType(8)), ir.IntType(64))

    return types.uint64(acc, i, types.int64, S, T, j), codegen
