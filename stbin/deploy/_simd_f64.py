"""Eight float64 lanes for numba (an LLVM ``<8 x double>``, one zmm register with AVX-512): the operations of
the screened first layer's row set-up (:mod:`stbin.deploy._screen_loops`), whose float64 sums over a row
(``sum x_k^2``, ``sum e_k^2``, ``sum p_k^2``) numba would otherwise keep in scalar registers: without
reassociation LLVM may not vectorise a float64 reduction, so each sum is one chain of dependent additions.
Here every lane keeps its own partial sum (eight chains), added up at the end. The screen's bounds allow any
summation order (its factor ``up`` covers the relative rounding error of any order); every lane operation is
the scalar one (no fused multiply-add). Loads of the last, partial block are masked (``llvm.masked.load``):
nothing past the row's end is read, and the missing lanes are +0.0.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from stbin.deploy._simd import _first_lanes, _ptr, _splat

_D8 = ir.VectorType(ir.DoubleType(), 8)
_M8 = ir.VectorType(ir.IntType(1), 8)


class F64x8(types.Type):
    """Eight float64 lanes in one LLVM vector value."""

    def __init__(self) -> None:
        super().__init__(name="f64x8")


f64x8 = F64x8()
register_model(F64x8)(lambda dmm, fe_type: models.PrimitiveModel(dmm, fe_type, _D8))


@intrinsic
def d8_zero(typingctx):  # type: ignore[no-untyped-def]
    """Eight +0.0 lanes."""
    return f64x8(), lambda context, builder, sig, args: ir.Constant(_D8, None)


def _masked_load(context, builder, sig, args, elem: ir.Type):  # type: ignore[no-untyped-def]
    """Lanes ``arr.flat[i:i + min(n, 8)]`` (``elem`` typed), +0.0 elsewhere, nothing else read."""
    vty = ir.VectorType(elem, 8)
    ptr = builder.bitcast(_ptr(context, builder, sig.args[0], args[0], args[1]), vty.as_pointer())
    mask = _first_lanes(context, builder, args[2], sig.args[2], 8)
    f32 = isinstance(elem, ir.FloatType)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [ptr.type, ir.IntType(32), _M8, vty]),
                                        f"llvm.masked.load.{'v8f32' if f32 else 'v8f64'}.p0")
    return builder.call(fn, [ptr, ir.Constant(ir.IntType(32), 4 if f32 else 8), mask, ir.Constant(vty, None)])


def _c_array(a, dtype):  # type: ignore[no-untyped-def]
    return isinstance(a, types.Array) and a.dtype == dtype and a.layout == "C"


@intrinsic
def d8_load_n(typingctx, arr, i, n):  # type: ignore[no-untyped-def]
    """``arr.flat[i:i + n]`` (float32 widened exactly, or float64) in lanes ``0 .. n - 1``, +0.0 in the others.
    Unchecked: the caller keeps ``i .. i + min(n, 8) - 1`` inside ``arr`` (C-contiguous)."""
    if not (_c_array(arr, types.float32) or _c_array(arr, types.float64)) \
            or not isinstance(i, types.Integer) or not isinstance(n, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        if sig.args[0].dtype == types.float32:
            return builder.fpext(_masked_load(context, builder, sig, args, ir.FloatType()), _D8)
        return _masked_load(context, builder, sig, args, ir.DoubleType())

    return f64x8(arr, i, n), codegen


def _binary(name: str, doc: str, op):  # type: ignore[no-untyped-def]
    def fn(typingctx, a, b):  # type: ignore[no-untyped-def]
        if a != f64x8 or b not in (f64x8, types.float64):
            return None

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            y = args[1] if sig.args[1] == f64x8 else _splat(builder, _D8, args[1])
            return op(builder, args[0], y)

        return f64x8(a, b), codegen

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return intrinsic(fn)


d8_add = _binary("d8_add", "``a + b`` lane by lane (``b`` a vector or a float64 broadcast).", lambda b, x, y: b.fadd(x, y))
d8_sub = _binary("d8_sub", "``a - b`` lane by lane (``b`` a vector or a float64 broadcast).", lambda b, x, y: b.fsub(x, y))
d8_mul = _binary("d8_mul", "``a * b`` lane by lane (``b`` a vector or a float64 broadcast).", lambda b, x, y: b.fmul(x, y))
d8_absmax = _binary("d8_absmax", "``max(a, |b|)`` lane by lane (a NaN lane may give either operand: callers detect "
                    "NaN through a sum).", lambda b, x, y: b.select(
                        b.fcmp_ordered(">=", x, _fabs(b, y)), x, _fabs(b, y)))


def _fabs(builder, v):  # type: ignore[no-untyped-def]
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_D8, [_D8]), "llvm.fabs.v8f64")
    return builder.call(fn, [v])


def _reduce(name: str, doc: str, op):  # type: ignore[no-untyped-def]
    def fn(typingctx, a):  # type: ignore[no-untyped-def]
        if a != f64x8:
            return None

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            lanes = [builder.extract_element(args[0], ir.Constant(ir.IntType(32), t)) for t in range(8)]
            while len(lanes) > 1:  # a pairwise tree: ((l0 . l1) . (l2 . l3)) . ...
                lanes = [op(builder, lanes[t], lanes[t + 1]) for t in range(0, len(lanes), 2)]
            return lanes[0]

        return types.float64(a), codegen

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return intrinsic(fn)


d8_sum = _reduce("d8_sum", "The sum of the eight lanes (a pairwise tree).", lambda b, x, y: b.fadd(x, y))
d8_max = _reduce("d8_max", "The largest of the eight lanes (NaN lanes: see :func:`d8_absmax`).",
                 lambda b, x, y: b.select(b.fcmp_ordered(">=", x, y), x, y))
