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


def _dense():  # imported lazily, as _kernels
    from stbin.deploy import dense_kernels

    return dense_kernels


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


def check_binary_conv(op: Op) -> int:
    """Check a binary convolution's channels, geometry and packed tap-major weight (KH, KW, ceil(C/64), M);
    returns M, the output channels."""
    c, m = int_attr(op, "in_channels"), int_attr(op, "out_channels")
    conv_geometry(op)
    w = op.arrays["weight"]
    if w.shape[0] != m or w.shape[3] != n_words(c) or min(w.shape) < 1:
        raise ValueError(f"packed weight shape {w.shape} does not fit {c} -> {m} channels")
    return m


def binary_conv_out(op: Op, x: TensorSpec) -> tuple[int, int, int]:
    """(output channels, height, width) of a binary convolution ``op`` on the packed feature map ``x``
    (ValueError if ``x`` is not a bit map with the op's ``in_channels``)."""
    need_kind(x, "bits", 3)
    h, w, c = x.shape
    if c != op.attrs["in_channels"]:
        raise ValueError(f"input has {c} channels, in_channels is {op.attrs['in_channels']}")
    m, kh, kw = op.arrays["weight"].shape[:3]
    oh, ow = spatial_out(h, w, (kh, kw), op)
    return m, oh, ow


class _BDense(OpType):
    """Binary GEMM on packed rows (N, KW): ``bdense`` -> bits (N, ceil(M/64)) through integer
    thresholds, ``bdense_f`` -> float (N, M) ``y = scale * dot + bias``."""

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

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        w, k = op.arrays["weight"], int(op.attrs["in_features"])
        # word-major (KW, M): eight outputs per vector popcount (kernels.bdense_sign), made once per op
        wt = ctx.cache(op, "word-major", lambda: np.ascontiguousarray(w.T))
        x = np.ascontiguousarray(x)
        if self.threshold:
            out = np.empty((len(x), n_words(w.shape[0])), dtype=np.uint64)
            _dense().bdense_sign(x, wt, k, op.arrays["S"], op.arrays["T"], out)
            return out
        dot = _kernels().scratch((len(x), w.shape[0]), np.int32)
        _dense().bdense_dot(x, wt, k, dot)
        out = np.empty(dot.shape, np.float32)
        _kernels().real_out(dot, *_scale_bias(op, ctx), out)
        return out


class _BConv(OpType):
    """Binary conv on channel-packed NHWC bits: ``bconv2d`` -> NHWC bits through integer thresholds,
    ``bconv2d_f`` -> NCHW float ``y = scale * dot + bias``."""

    threshold = True

    def check(self, op: Op) -> None:
        _check_out_arrays(op, check_binary_conv(op), self.threshold)

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        m, oh, ow = binary_conv_out(op, x)
        return TensorSpec.bits((oh, ow, m)) if self.threshold else TensorSpec("float", (m, oh, ow))

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        from stbin.deploy.geometry import conv_out_hw

        m, kh, kw, _ = op.arrays["weight"].shape
        a = op.attrs
        oh, ow = conv_out_hw(x.shape[1], x.shape[2], kh, kw, a["stride"], a["padding"], a["dilation"])
        (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
        wt = ctx.cache(op, "tap-major", lambda: np.ascontiguousarray(op.arrays["weight"].transpose(1, 2, 3, 0)))
        if self.threshold:
            out = np.empty((len(x), oh, ow, n_words(m)), dtype=np.uint64)
            _kernels().bconv2d_sign(x, wt, int(a["in_channels"]), sh, sw, ph, pw, dh, dw, op.arrays["S"],
                                    op.arrays["T"], out)
            return out
        out = np.empty((len(x), m, oh, ow), dtype=np.float32)
        _kernels().bconv2d_float(x, wt, int(a["in_channels"]), sh, sw, ph, pw, dh, dw, *_scale_bias(op, ctx), out)
        return out


#: the four op types: (name, base, weight axes, thresholded output)
_TYPES = (("bdense", _BDense, 2, True), ("bdense_f", _BDense, 2, False),
          ("bconv2d", _BConv, 4, True), ("bconv2d_f", _BConv, 4, False))
for _name, _base, _ndim, _threshold in _TYPES:
    register_op(_name, weight=(np.uint64, _ndim, True), **(_THRESHOLD_ARRAYS if _threshold else _REAL_ARRAYS))(
        type(_base.__name__.lstrip("_") + ("" if _threshold else "F"), (_base,), {"threshold": _threshold}))
