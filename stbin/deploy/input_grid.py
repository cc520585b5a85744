"""Inputs on a declared 8-bit grid: the bit-serial first layer of binary-weight networks.

A network whose inputs are raw 8-bit pixels after a fixed normalisation sees only values
``x = offset + scale * q`` with integer ``q`` in 0..255. Declared in the network's metadata,

    meta["input_grid"] = {"scale": scale, "offset": offset}     # e.g. input_grid_for(0.1307, 0.3081)

(``compile_model(model, shape, meta={...})``; stored in the deploy file and checked when it is loaded), it
lets a first layer with **binary** weights (the ``blinear`` op) followed by its sign run bit-serially: per
input row, the exact integer dot products ``z_j = sum_k q_k w_jk`` over the 8 bit-planes of ``q``
(XOR-popcounts against the packed weights, :func:`stbin.deploy._dense_loops.bitserial_sign`), reading the
packed weights (K*M/8 bytes) instead of float32 ones (4*K*M), then the pre-activation

    y_j = c_j * (scale * z_j + offset * sum_k w_jk) + bias_j      (c_j: the weight scale, 1 without one)

in float64 against the folded thresholds. Every input value is checked: a value farther than
``TOLERANCE * scale`` from the grid raises a ValueError.

**Rounding.** ``y_j`` above is the exact pre-activation of the grid values; PyTorch computes the same sum in
float32 from the float32 inputs (which lie within float32 rounding of the grid). The two differ by float32
rounding only, so a unit's sign can differ from PyTorch's only where its pre-activation lies within that
rounding (~1e-6 relative) of its threshold; tests compare predictions with PyTorch on trained networks.
Without the declaration (or with ``float_backend="torch"``) the layer runs in float32 as before.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

#: how far (as a fraction of the grid step) an input may lie from the grid: float32 normalisation rounds
#: raw pixels by ~1e-7 of their value, about 1e-5 of MNIST's step
TOLERANCE = 1e-3


def input_grid_for(mean: float, std: float) -> dict[str, float]:
    """The grid of inputs normalised as ``(pixel / 255 - mean) / std`` (one channel)."""
    return {"scale": 1.0 / (255.0 * float(std)), "offset": -float(mean) / float(std)}


def check_input_grid(grid: Any) -> None:
    """ValueError naming the field unless ``grid`` is {"scale": finite > 0, "offset": finite}."""
    if not isinstance(grid, dict) or set(grid) != {"scale", "offset"}:
        raise ValueError(f"meta 'input_grid' must be an object with exactly 'scale' and 'offset', got {grid!r}")
    for key in ("scale", "offset"):
        v = grid[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"meta 'input_grid' {key} must be a finite number, got {v!r}")
    if not grid["scale"] > 0:
        raise ValueError(f"meta 'input_grid' scale must be > 0, got {grid['scale']!r}")


def blinear_sign(ops: list[Any], net: Any) -> Callable[[np.ndarray, Any], np.ndarray] | None:
    """The plan step of ``blinear`` + ``sign`` on a declared input grid (None: not declared, or the torch backend)."""
    grid = net.meta.get("input_grid")
    if grid is None or net.float_backend == "torch":
        return None
    lin, sign = ops
    k = int(lin.attrs["in_features"])

    def operands() -> tuple[np.ndarray, ...]:
        from stbin.deploy.packing import unpack_bits

        w = lin.arrays["weight"]
        m = w.shape[0]
        neg = (unpack_bits(w, k) < 0).sum(1).astype(np.int64)
        c = lin.arrays.get("scale", np.ones(m, np.float32)).astype(np.float64)
        b = lin.arrays.get("bias", np.zeros(m, np.float32)).astype(np.float64)
        coef = np.stack([c * grid["scale"], c * grid["offset"] * (k - 2 * neg) + b])
        g = np.array([grid["scale"], grid["offset"], TOLERANCE * grid["scale"]], np.float64)
        return g, np.ascontiguousarray(w.T), neg, np.ascontiguousarray(coef)

    def step(x: np.ndarray, ctx: Any) -> np.ndarray:
        from stbin.deploy import dense_kernels

        g, wt, neg, coef = ctx.cache(lin, "bit-serial", operands)
        out = np.empty((len(x), -(-lin.arrays["weight"].shape[0] // 64)), np.uint64)
        dense_kernels.bitserial_sign(np.ascontiguousarray(x.reshape(len(x), -1)), g, wt, neg, coef,
                                     sign.arrays["S"], sign.arrays["T"], out)
        return out
    return step
