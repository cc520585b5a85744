r"""Exact folding of batch norm + sign into thresholds, found by evaluating PyTorch's own modules.

Folding batch norm and sign into thresholds
-------------------------------------------
In mode evaluation a hidden unit computes ``x' = sign(BN(y))`` with ``sign(0) = +1``, where
``y`` is the pre-activation of a linear/conv layer. For a binary layer with ±1 inputs and
weights, ``y = c * dot + b`` with an **integer** ``dot`` in [-K, K] (K = fan-in), so

    x' = +1  <=>  gamma * (c * dot + b - mu) / sqrt(var + eps) + beta >= 0.

In exact arithmetic this is ``dot >= t`` when ``gamma * c > 0``, ``dot <= t`` when
``gamma * c < 0`` and a constant when ``gamma * c = 0``. Float rounding can move the
boundary by one integer, so the threshold is not taken from the formula: it is found by
**evaluating PyTorch's own modules** (the batch norm and the sign module of the model, in
eval mode) on candidate integers, by a bisection over [-K, K] per channel. The decision is
a monotone function of ``dot`` (each float operation rounds monotonically), so the
bisection finds the exact switching point and the stored rule

    x' = +1  <=>  S * dot >= T        (S = +1 or -1, T an integer; constants use T = ±(K+1))

reproduces PyTorch's decision for **every** integer ``dot``. Float pre-activations (the
first layer) are folded the same way over float32 values (bisection on their ordered bit
patterns): ``x' = +1 <=> S * y >= T`` with a float32 ``T`` (``-inf``: always +1, NaN: always -1).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

_BIG = 1e30


def integer_thresholds(decide: Callable[[torch.Tensor], torch.Tensor], channels: int,
                       k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, T) int32 with ``plus <=> S * d >= T`` for every integer d in [-k_max, k_max].

    ``decide(d)`` takes an int64 tensor (channels,) of candidate dot products and returns
    the bool tensor "the unit outputs +1", computed by the PyTorch model itself.
    """
    lo = torch.full((channels,), -k_max, dtype=torch.int64)
    hi = torch.full((channels,), k_max, dtype=torch.int64)
    p_lo, p_hi = decide(lo), decide(hi)
    inc = p_hi & ~p_lo
    dec = p_lo & ~p_hi
    a, b = lo.clone(), hi.clone()  # invariant: decision(a) = p_lo, decision(b) = p_hi
    while bool(((b - a) > 1).any()):
        mid = torch.div(a + b, 2, rounding_mode="floor")
        pm = decide(mid)
        same_as_lo = pm == p_lo
        a = torch.where(same_as_lo, mid, a)
        b = torch.where(same_as_lo, b, mid)
    S = torch.ones(channels, dtype=torch.int64)
    T = torch.where(p_lo, torch.tensor(-(k_max + 1)), torch.tensor(k_max + 1))  # constants
    T = torch.where(inc, b, T)               # first +1 at b
    S = torch.where(dec, -S, S)
    T = torch.where(dec, -a, T)              # last +1 at a:  d <= a  <=>  -d >= -a
    _check_int(decide, S, T, k_max)
    return S.numpy().astype(np.int32), T.numpy().astype(np.int32)


def _check_int(decide: Callable[[torch.Tensor], torch.Tensor], S: torch.Tensor, T: torch.Tensor,
               k_max: int) -> None:
    """Verify the rule on a window of integers around each threshold (and the ends)."""
    centre = torch.clamp(S * T, -k_max, k_max)
    checks = [centre + off for off in (-2, -1, 0, 1, 2)]
    checks += [torch.full_like(centre, -k_max), torch.full_like(centre, k_max)]
    for d in checks:
        d = torch.clamp(d, -k_max, k_max)
        if not torch.equal(decide(d), S * d >= T):  # pragma: no cover - a non-monotone decision
            raise RuntimeError("threshold folding failed: the unit's decision is not monotone in the dot product")


def _f2key(v: np.ndarray) -> np.ndarray:
    i = np.asarray(v, np.float32).view(np.int32).astype(np.int64)
    return np.where(i >= 0, i, -(i & 0x7FFFFFFF))


def _key2f(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, np.int64)
    i = np.where(k >= 0, k, (-k) | 0x80000000).astype(np.uint32)
    return i.view(np.float32)


def float_thresholds(decide: Callable[[torch.Tensor], torch.Tensor], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, T) float32 with ``plus <=> S * y >= T`` for float32 pre-activations y in [-1e30, 1e30]."""
    def dec(keys: np.ndarray) -> np.ndarray:
        return decide(torch.from_numpy(_key2f(keys).copy())).numpy()

    lo = np.full(channels, _f2key(np.float32(-_BIG)), np.int64)
    hi = np.full(channels, _f2key(np.float32(_BIG)), np.int64)
    p_lo, p_hi = dec(lo), dec(hi)
    a, b = lo.copy(), hi.copy()
    while np.any(b - a > 1):
        mid = (a + b) // 2
        pm = dec(mid)
        same = pm == p_lo
        a = np.where(same, mid, a)
        b = np.where(same, b, mid)
    inc, dcr = p_hi & ~p_lo, p_lo & ~p_hi
    S = np.where(dcr, -1.0, 1.0).astype(np.float32)
    T = np.where(p_lo, -np.inf, np.nan).astype(np.float32)
    T = np.where(inc, _key2f(b), T)
    T = np.where(dcr, -_key2f(a), T).astype(np.float32)
    return S, T
