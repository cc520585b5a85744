"""The execution plan of a :class:`~stbin.deploy.engine.DeployedNet`: its ops bound to their run
functions once, with adjacent ops fused where a fused kernel exists (:data:`FUSIONS`).

A fusion ``(("linear", "sign"), make)`` replaces the two ops by ``make(ops, ctx_net)``, a function
``(x, ctx) -> y`` that must compute exactly what the two ops compute in sequence. The plan is
built per float backend; the file and ``net.ops`` are unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from stbin.deploy.input_grid import blinear_sign
from stbin.deploy.ops import OPS, Op, RunContext

Step = Callable[[np.ndarray, RunContext], np.ndarray]


def _torch_weights(lin: Op, ctx: RunContext) -> tuple[Any, Any]:
    """(weight, bias or None) of a ``linear`` op as torch tensors sharing its arrays, made once per op."""
    def make() -> tuple[Any, Any]:
        import torch

        b = lin.arrays.get("bias")
        return torch.from_numpy(lin.arrays["weight"]), None if b is None else torch.from_numpy(b)
    return ctx.cache(lin, "torch-linear", make)


def _linear_sign(ops: list[Op], net: Any) -> Step | None:
    """First float layer fused with its folded batch norm + sign and the packing.

    Small batches: one pass per row in the engine's own loop (``kernels.float_dense_sign``, part of the compiled
    plan), screened where the CPU allows it (:mod:`stbin.deploy.screened`: the same bits from a quarter of the
    weight bytes). Larger batches, float backend ``"auto"``: PyTorch's own ``linear`` (so the pre-activations before the
    folded thresholds are PyTorch's, bit for bit) on one torch thread per part of the rows, each part packing
    its rows (:mod:`stbin.deploy.row_parts`); measured faster than single-threaded numpy BLAS here
    (``benchmarks/bench_first_layer.py``).
    """
    lin, sign = ops
    if net.float_backend == "torch":
        return None  # torch's own linear: the logits stay bit for bit PyTorch's
    from stbin.deploy.ops.float_layers import dense_operands, engine_loop

    run_lin, run_sign = OPS.get("linear").run, OPS.get("sign").run

    def large(x: np.ndarray, ctx: RunContext) -> np.ndarray:
        from stbin.deploy import dense_kernels
        from stbin.deploy.row_parts import torch_linear

        x2 = np.ascontiguousarray(x.reshape(len(x), -1))
        out = np.empty((len(x), -(-lin.arrays["weight"].shape[0] // 64)), np.uint64)
        S, T = sign.arrays["S"], sign.arrays["T"]
        torch_linear(x2, *_torch_weights(lin, ctx),
                     lambda y, lo, hi: dense_kernels.sign_pack_rows(y, S, T, out[lo:hi]))
        return out

    def step(x: np.ndarray, ctx: RunContext) -> np.ndarray:
        if not engine_loop(len(x), lin.arrays["weight"]):
            if net.float_backend == "auto":
                return large(x, ctx)
            return run_sign(sign, run_lin(lin, x, ctx), ctx)
        from stbin.deploy import kernels, screened

        wt, b = dense_operands(lin, lin.arrays["weight"], lin.arrays.get("bias"), ctx)
        S, T = sign.arrays["S"], sign.arrays["T"]
        out = np.empty((len(x), -(-wt.shape[1] // 64)), np.uint64)
        x2 = np.ascontiguousarray(x.reshape(len(x), -1))
        scr = ctx.cache(lin, "screen", lambda: screened.screen_operands(lin.arrays["weight"], wt, b, S, T))
        if scr is not None:  # the same bits from a quarter of the weight bytes (stbin.deploy.screened)
            screened.screened_dense_sign(x2, scr, b, S, T, out)
        else:
            kernels.float_dense_sign(x2, wt, b, S, T, out)
        return out
    return step


#: up to this many multiply-adds a large batch's last layer on flat bits runs the engine's own ``bits_dense``
#: (serial: no thread woken) instead of unpacking to float32 for PyTorch's ``linear``
BITS_DENSE_MACS = 1 << 22


def _bits_linear(ops: list[Op], net: Any) -> Step | None:
    """Unpacking of flat bits fused with the float layer after it (a binary MLP's last layer).

    Small batches, and any batch of at most ``BITS_DENSE_MACS`` multiply-adds (a classifier's last layer: 64 x 512
    x 10: the demo MLP at batch 64 took 0.46 against 0.52 ms through torch, docs/performance-deploy.md):
    ``dense_kernels.bits_dense`` does the same operations in the same order as ``bits_float`` then the engine's own
    ``linear`` loop (bit for bit theirs) without the float intermediate, inside the compiled plan, on the products
    of the weights with both signs (``signed_weights``, cached per op); the logits are PyTorch's within float
    rounding (a sum in the order of the inputs). Larger layers (backend ``"auto"``): the unpacked rows through
    PyTorch's own ``linear`` (:mod:`stbin.deploy.row_parts`), the logits PyTorch's for these bits, bit for bit.
    """
    unpack, lin = ops
    if net.float_backend == "torch":
        return None
    from stbin.deploy.ops.float_layers import LATENCY_ROWS, dense_operands

    run_unpack, run_lin = OPS.get("bits_float").run, OPS.get("linear").run

    def step(x: np.ndarray, ctx: RunContext) -> np.ndarray:
        w = lin.arrays["weight"]
        if x.ndim != 2 or (len(x) > LATENCY_ROWS and net.float_backend == "numpy"):  # NHWC maps: NCHW first
            return run_lin(lin, run_unpack(unpack, x, ctx), ctx)
        from stbin.deploy import dense_kernels

        if len(x) > LATENCY_ROWS and len(x) * w.shape[0] * w.shape[1] > BITS_DENSE_MACS:
            # torch's linear on the unpacked rows: PyTorch's logits for these bits, exactly
            from stbin.deploy.row_parts import torch_linear

            xf = run_unpack(unpack, x, ctx)
            out = np.empty((len(x), w.shape[0]), np.float32)
            torch_linear(xf, *_torch_weights(lin, ctx), lambda y, lo, hi: out.__setitem__(slice(lo, hi), y))
            return out

        wt, b = dense_operands(lin, w, lin.arrays.get("bias"), ctx)
        wpm = ctx.cache(lin, "signed-t", lambda: dense_kernels.signed_weights(wt))
        out = np.empty((len(x), w.shape[0]), np.float32)
        dense_kernels.bits_dense(x, int(unpack.attrs["features"]), wpm, b, out)
        return out
    return step


FUSIONS: dict[tuple[str, ...], Callable[[list[Op], Any], Step | None]] = {("linear", "sign"): _linear_sign,
                                                                         ("bits_float", "linear"): _bits_linear,
                                                                         ("blinear", "sign"): blinear_sign}


def build_plan(ops: list[Op], net: Any) -> list[Step]:
    steps: list[Step] = []
    i = 0
    while i < len(ops):
        for pattern, make in FUSIONS.items():
            k = len(pattern)
            if tuple(o.type for o in ops[i: i + k]) == pattern:
                step = make(ops[i: i + k], net)
                if step is not None:
                    steps.append(step)
                    i += k
                    break
        else:
            op, run = ops[i], OPS.get(ops[i].type).run
            steps.append(lambda x, ctx, op=op, run=run: run(op, x, ctx))
            i += 1
    return steps
