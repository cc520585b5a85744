"""``flatten``: (N, ...) -> (N, F); packed NHWC bits -> (N, H*W*ceil(C/64)) words."""

from __future__ import annotations

import math

import numpy as np

from stbin.deploy.ops.base import GraphState, Op, OpType, RunContext, TensorSpec, register_op
from stbin.deploy.packing import n_words


@register_op("flatten")
class Flatten(OpType):
    """Flatten one sample; on NHWC bits the words of each pixel stay together (a bdense reads them so)."""

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        if x.kind == "float":
            return TensorSpec("float", (math.prod(x.shape),))
        if len(x.shape) == 3:
            h, w, c = x.shape
            return TensorSpec.bits((h * w * c,), h * w * n_words(c))
        return x

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        return x.reshape(len(x), -1)
