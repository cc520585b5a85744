"""Between real values and packed bits: ``sign`` / ``sign2d`` (threshold and pack) and ``bits_float`` (unpack)."""

from __future__ import annotations

import numpy as np

from stbin.deploy.ops.base import GraphState, Op, OpType, RunContext, TensorSpec, int_attr, need_kind, register_op
from stbin.deploy.packing import n_words


def _kernels():  # imported lazily: numba is an optional dependency
    from stbin.deploy import kernels

    return kernels


class _Sign(OpType):
    arrays = {"S": (np.float32, 1, True), "T": (np.float32, 1, True)}
    ndim = 1

    per_row = {"T": "S"}

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "float", self.ndim)
        c = op.arrays["S"].shape[0]
        if x.shape[0] != c:
            raise ValueError(f"input has {x.shape[0]} {'channels' if self.ndim == 3 else 'features'}, "
                             f"S and T have {c}")
        return TensorSpec.bits(x.shape if self.ndim == 1 else (x.shape[1], x.shape[2], c))


@register_op("sign")
class Sign(_Sign):
    """Folded batch norm + sign on float rows (N, F): bit j = not (S[j] * y_j >= T[j]) -> bits (N, ceil(F/64))."""

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        out = np.empty((len(x), n_words(x.shape[1])), dtype=np.uint64)
        _kernels().float_sign_pack(np.ascontiguousarray(x), op.arrays["S"], op.arrays["T"], out)
        return out


@register_op("sign2d")
class Sign2d(_Sign):
    """As ``sign`` per channel of an NCHW float map -> NHWC bits (N, H, W, ceil(C/64)).

    The per-channel float threshold covers any monotone per-channel chain before the sign:
    batch norm, a learnable shift (ReActNet's RSign, ``sign(x - b_c)``), or both.
    """
    ndim = 3

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        n, c, h, w = x.shape
        out = np.empty((n, h, w, n_words(c)), dtype=np.uint64)
        _kernels().float_sign_pack_nchw(np.ascontiguousarray(x), op.arrays["S"], op.arrays["T"], out)
        return out


@register_op("bits_float")
class BitsFloat(OpType):
    """Unpack ±1 values for a float consumer: bits (N, ceil(F/64)) -> float (N, F); NHWC bits -> NCHW float."""

    def check(self, op: Op) -> None:
        int_attr(op, "features")

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "bits")
        f = op.attrs["features"]
        if len(x.shape) == 3:
            if x.shape[2] != f:
                raise ValueError(f"input has {x.shape[2]} channels, features is {f}")
            return TensorSpec("float", (f, x.shape[0], x.shape[1]))
        if x.shape[0] != f or x.words != n_words(f):
            raise ValueError(f"input is {x}, features is {f} ({n_words(f)} words)")
        return TensorSpec("float", (f,))

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        f = int(op.attrs["features"])
        if x.ndim == 2:
            out = np.empty((len(x), f), np.float32)
            _kernels().unpack_float(x, f, out)
            return out
        n, h, w, _ = x.shape
        out = np.empty((n, f, h, w), np.float32)
        _kernels().unpack_float_nchw(x, f, out)
        return out
