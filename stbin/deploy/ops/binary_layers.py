"""XNOR-popcount ops: ``bdense`` / ``bconv2d`` (packed bits out, batch norm + sign folded into
integer thresholds) and ``bdense_f`` / ``bconv2d_f`` (real-valued out: ``y = scale * dot + bias``)."""

from __future__ import annotations

import numpy as np

from stbin.deploy.ops.base import (GraphState, Op, OpType, RunContext, TensorSpec, conv_geometry, int_attr, need_kind,
                                   register_op, spatial_out, vec)
from stbin.deploy.packing import n_words


def _kernels():  # imported lazily: numba is an optional dependency
    from stbin.deploy import kernels

    return kernels


def _check_thresholds(op: Op, m: int) -> None:
    vec(op, "S", m)
    vec(op, "T", m)
    if not np.all(np.abs(op.arrays["S"].astype(np.int64)) == 1):
        raise ValueError("threshold directions S must be +1 or -1")


def _check_out_arrays(op: Op, m: int, threshold: bool) -> None:
    """The arrays of the output stage of ``m`` channels: thresholds S, T, or ``scale`` / ``bias`` (``*_f``)."""
    if threshold:
        _check_thresholds(op, m)
    else:
        vec(op, "scale", m)
        vec(op, "bias", m)


#: the arrays of the output stage after the packed weight: integer thresholds, or a real-valued ``scale * dot + bias``
_THRESHOLD_ARRAYS = {"S": (np.int32, 1, True), "T": (np.int32, 1, True)}
_REAL_ARRAYS = {"scale": (np.float32, 1, False), "bias": (np.float32, 1, False)}


def _scale_bias(op: Op, ctx: RunContext) -> tuple[np.ndarray, np.ndarray]:
    """``scale`` and ``bias`` of a real-valued output stage (ones / zeros where absent), made once per op."""
    m = op.arrays["weight"].shape[0]
    return ctx.cache(op, "scale-bias", lambda: (op.arrays.get("scale", np.ones(m, np.float32)),
                                                op.arrays.get("bias", np.zeros(m, np.float32))))


class _BDense(OpType):
    threshold = True

    def check(self, op: Op) -> None:
        k, m = int_attr(op, "in_features"), int_attr(op, "out_features")
        w = op.arrays["weight"]
        if w.shape[0] != m or not n_words(k) <= w.shape[1] <= k:
            raise ValueError(f"packed weight shape {w.shape} does not fit {k} -> {m}")
        _check_out_arrays(op, m, self.threshold)

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "bits", 1)
        k, kw = op.attrs["in_features"], op.arrays["weight"].shape[1]
        if x.shape[0] != k or x.words != kw:
            raise ValueError(f"input is {x}, the op expects {k} bits in {kw} words (in_features)")
        m = op.attrs["out_features"]
        return TensorSpec.bits((m,)) if self.threshold else TensorSpec("float", (m,))


@register_op
class BDense(_BDense):
    """Binary GEMM fused with integer thresholds: bits (N, KW) -> bits (N, ceil(M/64))."""

    name = "bdense"
    arrays = {"weight": (np.uint64, 2, True), **_THRESHOLD_ARRAYS}

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        w = op.arrays["weight"]
        out = np.empty((len(x), n_words(w.shape[0])), dtype=np.uint64)
        _kernels().bgemm_sign(x, w, int(op.attrs["in_features"]), op.arrays["S"], op.arrays["T"], out)
        return out


@register_op
class BDenseF(_BDense):
    """Binary GEMM with a real-valued output ``y = scale * dot + bias``: bits -> float (N, M)."""

    name = "bdense_f"
    threshold = False
    arrays = {"weight": (np.uint64, 2, True), **_REAL_ARRAYS}

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        w = op.arrays["weight"]
        dot = _kernels().scratch((len(x), w.shape[0]), np.int32)
        _kernels().bgemm(x, w, int(op.attrs["in_features"]), dot)
        out = np.empty(dot.shape, np.float32)
        _kernels().real_out(dot, *_scale_bias(op, ctx), out)
        return out


class _BConv(OpType):
    threshold = True

    def check(self, op: Op) -> None:
        c, m = int_attr(op, "in_channels"), int_attr(op, "out_channels")
        conv_geometry(op)
        w = op.arrays["weight"]
        if w.shape[0] != m or w.shape[3] != n_words(c) or min(w.shape) < 1:
            raise ValueError(f"packed weight shape {w.shape} does not fit {c} -> {m} channels")
        _check_out_arrays(op, m, self.threshold)

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "bits", 3)
        h, w, c = x.shape
        if c != op.attrs["in_channels"]:
            raise ValueError(f"input has {c} channels, in_channels is {op.attrs['in_channels']}")
        m, kh, kw = op.arrays["weight"].shape[:3]
        oh, ow = spatial_out(h, w, (kh, kw), op)
        return TensorSpec.bits((oh, ow, m)) if self.threshold else TensorSpec("float", (m, oh, ow))

    def out_hw(self, op: Op, x: np.ndarray) -> tuple[int, int]:
        from stbin.deploy.geometry import conv_out_hw

        _, kh, kw, _ = op.arrays["weight"].shape
        return conv_out_hw(x.shape[1], x.shape[2], kh, kw, op.attrs["stride"], op.attrs["padding"],
                           op.attrs["dilation"])


def _geometry_args(op: Op) -> tuple[int, int, int, int, int, int]:
    """The conv geometry as the kernels take it: ``stride_h, stride_w, pad_h, pad_w, dil_h, dil_w``."""
    (sh, sw), (ph, pw), (dh, dw) = op.attrs["stride"], op.attrs["padding"], op.attrs["dilation"]
    return sh, sw, ph, pw, dh, dw


def _tap_major(op: Op, ctx: RunContext) -> np.ndarray:
    """The packed weight (OC, KH, KW, CW) in the kernels' tap-major layout (KH, KW, CW, OC), made once per op."""
    return ctx.cache(op, "tap-major", lambda: np.ascontiguousarray(op.arrays["weight"].transpose(1, 2, 3, 0)))


@register_op
class BConv2d(_BConv):
    """Binary conv fused with integer thresholds: bits NHWC -> bits NHWC."""

    name = "bconv2d"
    arrays = {"weight": (np.uint64, 4, True), **_THRESHOLD_ARRAYS}

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        oh, ow = self.out_hw(op, x)
        out = np.empty((len(x), oh, ow, n_words(op.arrays["weight"].shape[0])), dtype=np.uint64)
        _kernels().bconv2d_sign(x, _tap_major(op, ctx), int(op.attrs["in_channels"]), *_geometry_args(op),
                                op.arrays["S"], op.arrays["T"], out)
        return out


@register_op
class BConv2dF(_BConv):
    """Binary conv with a real-valued output ``y = scale * dot + bias``: bits NHWC -> float NCHW."""

    name = "bconv2d_f"
    threshold = False
    arrays = {"weight": (np.uint64, 4, True), **_REAL_ARRAYS}

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        oh, ow = self.out_hw(op, x)
        out = np.empty((len(x), op.arrays["weight"].shape[0], oh, ow), dtype=np.float32)
        _kernels().bconv2d_float(x, _tap_major(op, ctx), int(op.attrs["in_channels"]), *_geometry_args(op),
                                 *_scale_bias(op, ctx), out)
        return out
