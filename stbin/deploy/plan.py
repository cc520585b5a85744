"""The execution plan of a :class:`~stbin.deploy.engine.DeployedNet`: its ops bound to their run
functions once, with adjacent ops fused where a fused kernel exists (:data:`FUSIONS`).

A fusion ``(("linear", "sign"), make)`` replaces the two ops by ``make(ops, ctx_net)``, a function
``(x, ctx) -> y`` that must compute exactly what the two ops compute in sequence. The plan is
built per float backend; the file and ``net.ops`` are unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from stbin.deploy.ops import OPS, Op, RunContext

Step = Callable[[np.ndarray, RunContext], np.ndarray]


def _linear_sign(ops: list[Op], net: Any) -> Step | None:
    """First float layer fused with its folded batch norm + sign and the packing (one pass, small batches)."""
    lin, sign = ops
    if net.float_backend == "torch":
        return None  # torch's own linear: the logits stay bit for bit PyTorch's
    from stbin.deploy.ops.float_layers import dense_operands, engine_loop

    run_lin, run_sign = OPS.get("linear").run, OPS.get("sign").run

    def step(x: np.ndarray, ctx: RunContext) -> np.ndarray:
        if not engine_loop(len(x), lin.arrays["weight"]):
            return run_sign(sign, run_lin(lin, x, ctx), ctx)
        from stbin.deploy import kernels

        wt, b = dense_operands(lin, lin.arrays["weight"], lin.arrays.get("bias"), ctx)
        out = np.empty((len(x), -(-wt.shape[1] // 64)), np.uint64)
        kernels.float_dense_sign(np.ascontiguousarray(x.reshape(len(x), -1)), wt, b, sign.arrays["S"],
                                 sign.arrays["T"], out)
        return out
    return step


FUSIONS: dict[tuple[str, ...], Callable[[list[Op], Any], Step | None]] = {("linear", "sign"): _linear_sign}


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
