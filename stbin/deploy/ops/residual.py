"""Residual connections: ``save`` / ``load`` a tensor in a numbered slot, ``add`` a saved tensor,
``zero_pad_shortcut`` (the parameter-free "option A" shortcut of He et al.'s CIFAR ResNets).

A residual block ``y = f(x) + g(x)`` runs as: ``save`` x in slot s; the ops of ``f``;
``save`` f(x) in slot t; ``load`` slot s; the ops of ``g``; ``add`` slot t. Shape inference
tracks what each slot holds, so a file that reads an empty slot or adds tensors of different
shapes is refused at load.
"""

from __future__ import annotations

import numpy as np

from stbin.deploy.ops.base import GraphState, Op, OpType, RunContext, TensorSpec, int_attr, need_kind, pair_attr, register_op

MAX_SLOTS = 64


def _slot(op: Op) -> int:
    s = int_attr(op, "slot", 0)
    if s >= MAX_SLOTS:
        raise ValueError(f"attribute 'slot' must be below {MAX_SLOTS}, got {s}")
    return s


def _saved(op: Op, state: GraphState) -> TensorSpec:
    s = op.attrs["slot"]
    if s not in state.slots:
        raise ValueError(f"slot {s} is read before anything is saved in it")
    return state.slots[s]


class _SlotOp(OpType):
    """An op on a numbered slot (attribute ``slot`` in [0, MAX_SLOTS))."""

    def check(self, op: Op) -> None:
        _slot(op)


@register_op("save")
class Save(_SlotOp):
    """Keep the current tensor in slot ``slot`` (passes it on unchanged)."""

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        state.slots[op.attrs["slot"]] = x
        return x

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        ctx.slots[op.attrs["slot"]] = x
        return x


@register_op("load")
class Load(_SlotOp):
    """Continue with the tensor saved in slot ``slot``."""

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        return _saved(op, state)

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        return ctx.slots[op.attrs["slot"]]


@register_op("add")
class Add(_SlotOp):
    """Element-wise sum of the current float tensor and the float tensor in slot ``slot`` (same shape)."""

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "float")
        other = _saved(op, state)
        if other != x:
            raise ValueError(f"adds {other} (slot {op.attrs['slot']}) to {x}: the shapes differ")
        return x

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        from stbin.deploy import kernels

        out = np.empty(x.shape, np.float32)
        kernels.add(x, ctx.slots[op.attrs["slot"]], out)
        return out


@register_op("zero_pad_shortcut")
class ZeroPadShortcut(OpType):
    """Option-A shortcut: ``x[:, :, ::sh, ::sw]`` with ``channels_before`` / ``channels_after`` zero channels."""

    def check(self, op: Op) -> None:
        pair_attr(op, "stride", 1)
        int_attr(op, "channels_before", 0)
        int_attr(op, "channels_after", 0)

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "float", 3)
        c, h, w = x.shape
        sh, sw = op.attrs["stride"]
        return TensorSpec("float", (op.attrs["channels_before"] + c + op.attrs["channels_after"],
                                    -(-h // sh), -(-w // sw)))

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        from stbin.deploy import kernels

        (sh, sw), b, a = op.attrs["stride"], op.attrs["channels_before"], op.attrs["channels_after"]
        out = np.empty((len(x), b + x.shape[1] + a, -(-x.shape[2] // sh), -(-x.shape[3] // sw)), np.float32)
        kernels.zero_pad_shortcut(x, sh, sw, b, out)
        return out
