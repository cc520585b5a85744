"""Float32 ops: ``linear``, ``blinear`` (bit-packed weights on a real input), ``conv2d``, ``affine``."""

from __future__ import annotations

import math

import numpy as np

from stbin.deploy.ops.base import (GraphState, Op, OpType, RunContext, TensorSpec, conv_geometry, int_attr, need_kind,
                                   register_op, spatial_out, vec)
from stbin.deploy.ops.float_math import float_conv2d, matmul, torch_rows
from stbin.deploy.packing import n_words, unpack_bits


#: up to this many rows (or SMALL_MACS multiply-adds) a float dense layer runs the engine's own loop
#: (kernels.float_dense): no BLAS round trip (tens of microseconds), and it joins the compiled plan;
#: measured by benchmarks/bench_first_layer.py: the loop is faster at batch 1, BLAS from batch ~8 on
LATENCY_ROWS = 8
SMALL_MACS = 1 << 20


def engine_loop(rows: int, w: np.ndarray) -> bool:
    """Whether a dense layer with weight ``w`` (M, K) on ``rows`` rows runs the engine's own loop."""
    return rows <= LATENCY_ROWS or rows * w.shape[0] * w.shape[1] <= SMALL_MACS


def dense_operands(op: Op, w: np.ndarray, b: np.ndarray | None, ctx: RunContext) -> tuple[np.ndarray, np.ndarray]:
    """(W^T contiguous (K, M), bias or zeros (M,)) for the engine's own float loops, made once per op."""
    return ctx.cache(op, "dense-t", lambda: (np.ascontiguousarray(w.T),
                                             np.zeros(w.shape[0], np.float32) if b is None else b))


def _dense(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, ctx: RunContext, op: Op) -> np.ndarray:
    if ctx.net.float_backend != "torch" and engine_loop(len(x), w):
        from stbin.deploy import kernels

        wt, bb = dense_operands(op, w, b, ctx)
        out = np.empty((len(x), w.shape[0]), np.float32)
        kernels.float_dense(np.ascontiguousarray(x.reshape(len(x), -1)), wt, bb, out)
        return out
    if ctx.net.float_backend == "torch":  # "auto": numpy
        import torch

        T_ = ctx.cache(op, "torch", lambda: (torch.from_numpy(w), None if b is None else torch.from_numpy(b)))
        return torch_rows(lambda t: torch.nn.functional.linear(t, *T_), x.reshape(len(x), -1))
    y = matmul(x.reshape(len(x), -1), w.T)
    if b is not None:
        y += b
    return y


@register_op("linear", weight=(np.float32, 2, True), bias=(np.float32, 1, False))
class Linear(OpType):
    """``y = x W^T + b`` in float32 (first / last layers); input (N, ...) with K values per sample."""

    per_row = {"bias": "weight"}

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "float")
        m, k = op.arrays["weight"].shape
        if math.prod(x.shape) != k:
            raise ValueError(f"input has {math.prod(x.shape)} features, weight expects {k}")
        return TensorSpec("float", (m,))

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        return _dense(x, op.arrays["weight"], op.arrays.get("bias"), ctx, op)


@register_op("blinear", weight=(np.uint64, 2, True), scale=(np.float32, 1, False), bias=(np.float32, 1, False))
class BLinear(OpType):
    """Bit-packed ±1 weights (times ``scale``) on a real input: unpacked once to float32, then ``linear``."""

    def check(self, op: Op) -> None:
        k, m = int_attr(op, "in_features"), int_attr(op, "out_features")
        if op.arrays["weight"].shape != (m, n_words(k)):
            raise ValueError(f"array 'weight' has shape {op.arrays['weight'].shape}, expected ({m}, {n_words(k)}) "
                             f"for {k} -> {m}")
        vec(op, "scale", m)
        vec(op, "bias", m)

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "float")
        if math.prod(x.shape) != op.attrs["in_features"]:
            raise ValueError(f"input has {math.prod(x.shape)} features, in_features is {op.attrs['in_features']}")
        return TensorSpec("float", (op.attrs["out_features"],))

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        def unpack() -> np.ndarray:  # exactly PyTorch's w * c
            w = unpack_bits(op.arrays["weight"], int(op.attrs["in_features"]), np.float32)
            if "scale" in op.arrays:
                w = w * op.arrays["scale"][:, None]
            return np.ascontiguousarray(w)
        w = ctx.cache(op, "dense", unpack)
        return _dense(x, w, op.arrays.get("bias"), ctx, op)


@register_op("conv2d", weight=(np.float32, 4, True), bias=(np.float32, 1, False))
class Conv2d(OpType):
    """Float32 convolution NCHW -> NCHW (first layer, real shortcuts)."""

    per_row = {"bias": "weight"}

    def check(self, op: Op) -> None:
        conv_geometry(op)
        if min(op.arrays["weight"].shape) < 1:
            raise ValueError(f"array 'weight' has an empty axis: {op.arrays['weight'].shape}")

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "float", 3)
        oc, c, kh, kw = op.arrays["weight"].shape
        if x.shape[0] != c:
            raise ValueError(f"input has {x.shape[0]} channels, weight expects {c}")
        return TensorSpec("float", (oc, *spatial_out(x.shape[1], x.shape[2], (kh, kw), op)))

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        a, A = op.attrs, op.arrays
        one_by_one = A["weight"].shape[2:] == (1, 1)
        if ctx.net.float_backend == "torch" or (ctx.net.float_backend == "auto" and not one_by_one):
            import torch

            T_ = ctx.cache(op, "torch", lambda: {k: torch.from_numpy(v) for k, v in A.items()})
            geo = tuple(a["stride"]), tuple(a["padding"]), tuple(a["dilation"])
            return torch_rows(lambda t: torch.nn.functional.conv2d(t, T_["weight"], T_.get("bias"), *geo), x)
        return float_conv2d(x, A["weight"], A.get("bias"), a["stride"], a["padding"], a["dilation"])


@register_op("affine", alpha=(np.float32, 1, True), beta=(np.float32, 1, True))
class Affine(OpType):
    """Per-channel ``y * alpha + beta`` (a batch norm with no sign after it), float -> float."""

    per_row = {"beta": "alpha"}

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "float")
        if x.shape[0] != op.arrays["alpha"].shape[0]:
            raise ValueError(f"input has {x.shape[0]} channels, alpha has {op.arrays['alpha'].shape[0]}")
        return x

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        from stbin.deploy import kernels

        out = np.empty(x.shape, np.float32)
        kernels.affine(x, op.arrays["alpha"], op.arrays["beta"], out)
        return out
