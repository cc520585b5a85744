"""LLVM vector intrinsics for numba: a ``u64x8`` type (eight uint64 lanes in one LLVM ``<8 x i64>``
value, a 512-bit zmm register with AVX-512) and the operations the register-blocked binary loops of
:mod:`stbin.deploy._conv_loops`, :mod:`stbin.deploy._dense_loops` and :mod:`stbin.deploy._fused_loops`
build on: :func:`v8_zero`, :func:`v8_xorpop` (one load, XOR with a broadcast word, ``vpopcntq`` through
LLVM's portable ``llvm.ctpop.v8i64``, add), :func:`load_u64` and :func:`v8_store` (the threshold comparisons on
these lanes are in :mod:`stbin.deploy._simd_thresholds`); and an ``f32x16`` type (sixteen float32 lanes) with the
operations of the fused ops' real-valued stages (:func:`f16_madd`, :func:`f16_dot_affine`, :func:`f16_sign_bits`,
...).
LLVM did not vectorise eight scalar accumulators itself (checked in the assembly), hence the explicit
vector types. Every float operation is the scalar one on each lane (no fused multiply-add, except in :func:`f16_fma`).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
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


def _ptr(context, builder, aty, ary, idx):  # type: ignore[no-untyped-def]
    """The address of ``ary.flat[idx]`` (``aty``: the array's numba type)."""
    return builder.gep(context.make_array(aty)(context, builder, ary).data, [idx])


def _splat(builder, vty, x):  # type: ignore[no-untyped-def]
    """The scalar ``x`` in every lane of a vector of type ``vty``."""
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), vty.count), None))


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
        ptr = _ptr(context, builder, sig.args[1], ary, idx)
        w = builder.load(builder.bitcast(ptr, _V8.as_pointer()), align=8)
        xs = _splat(builder, _V8, xv)
        fn = builder.module.declare_intrinsic("llvm.ctpop.v8i64", fnty=ir.FunctionType(_V8, [_V8]))
        return builder.add(a, builder.call(fn, [builder.xor(w, xs)]))

    return u64x8(acc, arr, i, types.uint64), codegen


@intrinsic
def load_u64(typingctx, arr, i):  # type: ignore[no-untyped-def]
    """``arr.flat[i]`` without the negative-index wraparound; unchecked like :func:`v8_xorpop`."""
    if not _c_u64(arr) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.load(_ptr(context, builder, sig.args[0], args[0], args[1]))

    return types.uint64(arr, i), codegen


def vector_store(vty: types.Type, vec: ir.VectorType, dtype: types.Type, align: int, name: str):  # type: ignore[no-untyped-def]
    """An intrinsic ``name(acc, arr, i)``: ``arr.flat[i:i + lanes] = acc`` for a vector value of numba type ``vty``
    (LLVM ``vec``) into a C-contiguous array of ``dtype``; unchecked like :func:`v8_xorpop` (the caller keeps
    ``i .. i + lanes - 1`` inside ``arr``). One definition for every vector type of the deploy loops."""
    def store(typingctx, acc, arr, i):  # type: ignore[no-untyped-def]
        if acc != vty or not (isinstance(arr, types.Array) and arr.dtype == dtype and arr.layout == "C") \
                or not isinstance(i, types.Integer):
            return None

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            a, ary, idx = args
            builder.store(a, builder.bitcast(_ptr(context, builder, sig.args[1], ary, idx), vec.as_pointer()), align=align)
            return context.get_dummy_value()

        return types.none(acc, arr, i), codegen

    store.__name__ = store.__qualname__ = name
    store.__doc__ = f"``arr.flat[i:i + {vec.count}] = acc`` ({vty} into {dtype}; unchecked)."
    return intrinsic(store)


v8_store = vector_store(u64x8, _V8, types.uint64, 8, "v8_store")


# -- sixteen float32 lanes (the fused ops' real-valued stages) ----------------------------------------

_V16 = ir.VectorType(ir.FloatType(), 16)


class F32x16(types.Type):
    """Sixteen float32 lanes in one LLVM vector value (a 512-bit zmm register with AVX-512)."""

    def __init__(self) -> None:
        super().__init__(name="f32x16")


f32x16 = F32x16()
register_model(F32x16)(lambda dmm, fe_type: models.PrimitiveModel(dmm, fe_type, _V16))


def _c_f32(a):  # type: ignore[no-untyped-def]
    return isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C"


@intrinsic
def f16_zero(typingctx):  # type: ignore[no-untyped-def]
    """Sixteen +0.0 lanes."""
    return f32x16(), lambda context, builder, sig, args: ir.Constant(_V16, None)


@intrinsic
def f16_madd(typingctx, acc, arr, i, x):  # type: ignore[no-untyped-def]
    """``acc + arr.flat[i:i + 16] * x`` lane by lane: a float32 product then a float32 sum, each rounded (no
    fused multiply-add). Unchecked: the caller guarantees ``0 <= i`` and ``i + 16 <= arr.size`` (C-contiguous)."""
    if acc != f32x16 or not _c_f32(arr) or not isinstance(i, types.Integer) or x != types.float32:
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        a, ary, idx, xv = args
        w = builder.load(builder.bitcast(_ptr(context, builder, sig.args[1], ary, idx), _V16.as_pointer()), align=4)
        return builder.fadd(a, builder.fmul(w, _splat(builder, _V16, xv)))

    return f32x16(acc, arr, i, types.float32), codegen


@intrinsic
def f16_fma(typingctx, acc, arr, i, x):  # type: ignore[no-untyped-def]
    """``acc + arr.flat[i:i + 16] * x`` lane by lane as one fused multiply-add (``llvm.fma.v16f32``: the exact
    product plus ``acc``, rounded once). Unchecked like :func:`f16_madd`."""
    if acc != f32x16 or not _c_f32(arr) or not isinstance(i, types.Integer) or x != types.float32:
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        a, ary, idx, xv = args
        w = builder.load(builder.bitcast(_ptr(context, builder, sig.args[1], ary, idx), _V16.as_pointer()), align=4)
        fn = builder.module.declare_intrinsic("llvm.fma.v16f32", fnty=ir.FunctionType(_V16, [_V16, _V16, _V16]))
        return builder.call(fn, [w, _splat(builder, _V16, xv), a])

    return f32x16(acc, arr, i, types.float32), codegen


f16_store = vector_store(f32x16, _V16, types.float32, 4, "f16_store")


@intrinsic
def load_f32(typingctx, arr, i):  # type: ignore[no-untyped-def]
    """``arr.flat[i]`` without the negative-index wraparound; unchecked like :func:`f16_madd`."""
    if not _c_f32(arr) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.load(_ptr(context, builder, sig.args[0], args[0], args[1]))

    return types.float32(arr, i), codegen


@intrinsic
def f16_sign_bits(typingctx, y, i, S, T, j):  # type: ignore[no-untyped-def]
    """The 16 threshold bits of 16 channels as one integer: bit ``l`` is set (-1) unless
    ``S[j + l] * y.flat[i + l] >= T[j + l]`` (float32 product, ordered comparison: a NaN gives -1, as
    :func:`stbin.deploy._float_loops.float_sign_pack` does). Unchecked like :func:`f16_madd`."""
    if not (_c_f32(y) and _c_f32(S) and _c_f32(T) and isinstance(i, types.Integer) and isinstance(j, types.Integer)):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ya, yi, sa, ta, sj = args

        def vload(k, arr, idx):  # type: ignore[no-untyped-def]
            return builder.load(builder.bitcast(_ptr(context, builder, sig.args[k], arr, idx), _V16.as_pointer()),
                                align=4)

        sy = builder.fmul(vload(2, sa, sj), vload(0, ya, yi))
        bits = builder.fcmp_unordered("<", sy, vload(3, ta, sj))  # not (S * y >= T)
        return builder.zext(builder.bitcast(bits, ir.IntType(16)), ir.IntType(64))

    return types.uint64(y, i, S, T, j), codegen


@intrinsic
def f16_add_signs(typingctx, y, i, word):  # type: ignore[no-untyped-def]
    """``y.flat[i + l] += (-1.0 if bit l of word else 1.0)`` for l = 0..15 (a float32 sum each, as adding the
    unpacked ±1 values). Unchecked like :func:`f16_madd`."""
    if not _c_f32(y) or not isinstance(i, types.Integer) or not isinstance(word, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ya, yi, w = args
        ptr = builder.bitcast(_ptr(context, builder, sig.args[0], ya, yi), _V16.as_pointer())
        mask = builder.bitcast(builder.trunc(w, ir.IntType(16)), ir.VectorType(ir.IntType(1), 16))
        signs = builder.select(mask, ir.Constant(_V16, [-1.0] * 16), ir.Constant(_V16, [1.0] * 16))
        builder.store(builder.fadd(builder.load(ptr, align=4), signs), ptr, align=4)
        return context.get_dummy_value()

    return types.none(y, i, types.uint64), codegen


def _vload(context, builder, aty, ary, idx, vty, align):  # type: ignore[no-untyped-def]
    return builder.load(builder.bitcast(_ptr(context, builder, aty, ary, idx), vty.as_pointer()), align=align)


@intrinsic
def f16_load(typingctx, arr, i):  # type: ignore[no-untyped-def]
    """``arr.flat[i:i + 16]`` as sixteen lanes; unchecked like :func:`f16_madd`."""
    if not _c_f32(arr) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return _vload(context, builder, sig.args[0], args[0], args[1], _V16, 4)

    return f32x16(arr, i), codegen


@intrinsic
def f16_add(typingctx, a, b):  # type: ignore[no-untyped-def]
    """``a + b`` lane by lane (a float32 sum each)."""
    if a != f32x16 or b != f32x16:
        return None
    return f32x16(a, b), lambda context, builder, sig, args: builder.fadd(args[0], args[1])


@intrinsic
def f16_dot_affine(typingctx, acc, i, full, scale, bias, alpha, beta, j):  # type: ignore[no-untyped-def]
    """Lane ``l``: ``(float32(full - 2 * acc.flat[i + l]) * scale[j + l] + bias[j + l]) * alpha[j + l] + beta[j + l]``
    (the dot product from the XOR popcount, int64 then one rounding to float32, then four float32 operations each
    rounded, in that order: the scalar epilogue's values bit for bit). Unchecked like :func:`f16_madd`."""
    if not (_c_u64(acc) and all(_c_f32(a) for a in (scale, bias, alpha, beta))
            and all(isinstance(a, types.Integer) for a in (i, full, j))):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        a, ai, f, s, b, al, be, sj = args
        v16 = ir.VectorType(ir.IntType(64), 16)
        fv = _splat(builder, v16, f)
        d = builder.sub(fv, builder.shl(_vload(context, builder, sig.args[0], a, ai, v16, 8), ir.Constant(v16, [1] * 16)))
        y = builder.sitofp(d, _V16)
        y = builder.fadd(builder.fmul(y, _vload(context, builder, sig.args[3], s, sj, _V16, 4)),
                         _vload(context, builder, sig.args[4], b, sj, _V16, 4))
        return builder.fadd(builder.fmul(y, _vload(context, builder, sig.args[5], al, sj, _V16, 4)),
                            _vload(context, builder, sig.args[6], be, sj, _V16, 4))

    return f32x16(acc, i, types.int64, scale, bias, alpha, beta, j), codegen


@intrinsic
def f16_affine(typingctx, a, bias, alpha, beta, j):  # type: ignore[no-untyped-def]
    """Lane ``l``: ``(a[l] + bias[j + l]) * alpha[j + l] + beta[j + l]``, three float32 operations each rounded, in
    that order (the scalar ``(y + b) * alpha + beta`` bit for bit). Unchecked: ``j + 16 <= len`` of each array."""
    if a != f32x16 or not (all(_c_f32(x) for x in (bias, alpha, beta)) and isinstance(j, types.Integer)):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        v, b, al, be, sj = args
        y = builder.fadd(v, _vload(context, builder, sig.args[1], b, sj, _V16, 4))
        return builder.fadd(builder.fmul(y, _vload(context, builder, sig.args[2], al, sj, _V16, 4)),
                            _vload(context, builder, sig.args[3], be, sj, _V16, 4))

    return f32x16(a, bias, alpha, beta, j), codegen


@intrinsic
def f16_plus_signs(typingctx, a, word):  # type: ignore[no-untyped-def]
    """Lane ``l``: ``a[l] + (-1.0 if bit l of word else 1.0)`` (as :func:`f16_add_signs`, in a register)."""
    if a != f32x16 or not isinstance(word, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        mask = builder.bitcast(builder.trunc(args[1], ir.IntType(16)), ir.VectorType(ir.IntType(1), 16))
        return builder.fadd(args[0], builder.select(mask, ir.Constant(_V16, [-1.0] * 16), ir.Constant(_V16, [1.0] * 16)))

    return f32x16(a, types.uint64), codegen


@intrinsic
def f16_bits_of(typingctx, a, S, T, j):  # type: ignore[no-untyped-def]
    """As :func:`f16_sign_bits` on the lanes of ``a``: bit ``l`` set unless ``S[j + l] * a[l] >= T[j + l]``."""
    if a != f32x16 or not (_c_f32(S) and _c_f32(T) and isinstance(j, types.Integer)):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        v, sa, ta, sj = args
        sy = builder.fmul(_vload(context, builder, sig.args[1], sa, sj, _V16, 4), v)
        bits = builder.fcmp_unordered("<", sy, _vload(context, builder, sig.args[2], ta, sj, _V16, 4))
        return builder.zext(builder.bitcast(bits, ir.IntType(16)), ir.IntType(64))

    return types.uint64(a, S, T, j), codegen


# -- masked lanes: a block of fewer than 16 outputs without padding the arrays ----------------------------

_M16 = ir.VectorType(ir.IntType(1), 16)


def _first_lanes(context, builder, n, nty, lanes: int = 16):  # type: ignore[no-untyped-def]
    """The mask of lanes ``0 .. n - 1`` of a ``lanes``-wide vector (all of them for ``n >= lanes``, none for
    ``n <= 0``)."""
    v64 = ir.VectorType(ir.IntType(64), lanes)
    return builder.icmp_signed("<", ir.Constant(v64, list(range(lanes))),
                               _splat(builder, v64, context.cast(builder, n, nty, types.int64)))


@intrinsic
def f16_load_n(typingctx, arr, i, n):  # type: ignore[no-untyped-def]
    """``arr.flat[i:i + n]`` in lanes ``0 .. n - 1`` and +0.0 in the others (``llvm.masked.load``: the masked lanes are
    never read, so the block may end at the array's end). Unchecked: the caller keeps ``i .. i + min(n, 16) - 1``
    inside ``arr`` (C-contiguous float32)."""
    if not _c_f32(arr) or not isinstance(i, types.Integer) or not isinstance(n, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ptr = builder.bitcast(_ptr(context, builder, sig.args[0], args[0], args[1]), _V16.as_pointer())
        fnty = ir.FunctionType(_V16, [ptr.type, ir.IntType(32), _M16, _V16])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.load.v16f32.p0")
        return builder.call(fn, [ptr, ir.Constant(ir.IntType(32), 4), _first_lanes(context, builder, args[2], sig.args[2]),
                                 ir.Constant(_V16, None)])

    return f32x16(arr, i, n), codegen


@intrinsic
def f16_store_n(typingctx, a, arr, i, n):  # type: ignore[no-untyped-def]
    """``arr.flat[i:i + n] = a[:n]`` (``llvm.masked.store``: nothing is written past the first ``n`` lanes);
    unchecked like :func:`f16_load_n`."""
    if a != f32x16 or not _c_f32(arr) or not isinstance(i, types.Integer) or not isinstance(n, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ptr = builder.bitcast(_ptr(context, builder, sig.args[1], args[1], args[2]), _V16.as_pointer())
        fnty = ir.FunctionType(ir.VoidType(), [_V16, ptr.type, ir.IntType(32), _M16])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.store.v16f32.p0")
        builder.call(fn, [args[0], ptr, ir.Constant(ir.IntType(32), 4), _first_lanes(context, builder, args[3], sig.args[3])])
        return context.get_dummy_value()

    return types.none(a, arr, i, n), codegen

