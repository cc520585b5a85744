"""Pooling: ``maxpool2d`` on packed bits, ``avgpool2d`` on real values (also global average pooling)."""

from __future__ import annotations

import numpy as np

from stbin.deploy.ops.base import (GraphState, Op, OpType, RunContext, TensorSpec, need_kind, pair_attr, register_op,
                                   spatial_out)
from stbin.deploy.packing import n_words


@register_op("maxpool2d", any_mask=(np.uint64, 1, False))
class MaxPool2d(OpType):
    """Max pooling on packed NHWC bits (``any_mask``: see :func:`stbin.deploy.kernels.bmaxpool2d`)."""

    def check(self, op: Op) -> None:
        pair_attr(op, "kernel_size", 1)
        pair_attr(op, "stride", 1), pair_attr(op, "padding", 0), pair_attr(op, "dilation", 1)

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "bits", 3)
        h, w, c = x.shape
        m = op.arrays.get("any_mask")
        if m is not None and m.shape != (n_words(c),):
            raise ValueError(f"array 'any_mask' has shape {m.shape}, the input's {c} channels need ({n_words(c)},)")
        return TensorSpec.bits((*spatial_out(h, w, tuple(op.attrs["kernel_size"]), op), c))

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        from stbin.deploy import kernels
        from stbin.deploy.geometry import conv_out

        n, h, w, cw = x.shape
        a = op.attrs
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel_size"], a["stride"], a["padding"], a["dilation"]
        out = np.empty((n, conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw), cw), dtype=np.uint64)
        mask = op.arrays["any_mask"] if "any_mask" in op.arrays else ctx.cache(
            op, "any-mask", lambda: np.full(cw, ~np.uint64(0), dtype=np.uint64))
        kernels.bmaxpool2d(x, mask, kh, kw, sh, sw, ph, pw, dh, dw, out)
        return out


@register_op("avgpool2d")
class AvgPool2d(OpType):
    """Average pooling of a float NCHW map without padding (``kernel_size`` = (H, W): global pooling).

    Sums the taps in PyTorch's order (row by row) in float32 and divides by their number, as
    PyTorch's CPU ``avg_pool2d`` does (bit for bit). A window covering the whole map (global
    pooling) runs PyTorch's ``adaptive_avg_pool2d`` unless the float backend is ``"numpy"``
    (its vectorised sum has its own order).
    """

    def check(self, op: Op) -> None:
        pair_attr(op, "kernel_size", 1)
        pair_attr(op, "stride", 1)

    @staticmethod
    def out_hw(op: Op, h: int, w: int) -> tuple[int, int]:
        """Output size over an (h, w) map: no padding, floor mode."""
        (kh, kw), (sh, sw) = op.attrs["kernel_size"], op.attrs["stride"]
        return (h - kh) // sh + 1, (w - kw) // sw + 1

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "float", 3)
        c, h, w = x.shape
        kh, kw = op.attrs["kernel_size"]
        if kh > h or kw > w:
            raise ValueError(f"a {kh}x{kw} window does not fit the {h}x{w} input")
        return TensorSpec("float", (c, *self.out_hw(op, h, w)))

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        (kh, kw), (sh, sw) = op.attrs["kernel_size"], op.attrs["stride"]
        n, c, h, w = x.shape
        if (kh, kw) == (h, w) and ctx.net.float_backend != "numpy":
            import torch

            from stbin.deploy.ops.float_math import torch_rows

            return torch_rows(lambda t: torch.nn.functional.adaptive_avg_pool2d(t, 1), x)
        from stbin.deploy import kernels

        out = np.empty((n, c, *self.out_hw(op, h, w)), np.float32)
        kernels.avgpool2d(x, kh, kw, sh, sw, out)
        return out
