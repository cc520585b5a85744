r"""Logistic sampling in one pass: the kernel's decisions plus an exact fix-up of the undecided few.

:mod:`stbin.estimators._logistic_sampling_numba` writes every sample whose side of ``u``
is certain (all but about one in 10 000) and records the others; here those get
``p = sigmoid(a / s)`` **evaluated exactly as the two-pass path evaluates it** (the same
torch operations on the same values) and the stream's comparison ``u < p`` (the half-word
decides it, or the tie word where ``p`` falls in the half-word's own interval).
So the result is bit for bit the two-pass result, ``torch.sigmoid`` over the whole tensor
followed by the comparison kernel (:mod:`stbin.estimators._philox_numba`), with one
thread.

torch's CPU sigmoid is elementwise but not position-independent: its vectorised loop
takes ``2 * V`` elements a step (``V`` lanes of the CPU's vectors) and the last
``n mod 2V`` elements go through a scalar formula that differs from the vector one by an
ulp now and then. The fix-up reproduces that: the undecided elements below
``n - n mod 64`` are evaluated in a tensor whose length is a multiple of 64 (the vector
path only, for every ``V`` dividing 32), the last ``n mod 64`` elements of the call in a
tensor of exactly those elements (the same positions mod ``2V``: the scalar formula
where the whole-tensor call took it), in pieces below torch's parallel grain (one
chunk, one loop). (With several threads torch splits a large tensor into chunks whose own
tails take the scalar formula, so the two-pass path's ulp-level choice depended on the
thread count where a chunk boundary is not a multiple of ``2V``; this path takes the
one-thread choice whatever the thread count.)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from stbin.estimators import _fixup_numba as _fixup
from stbin.estimators import _logistic_sampling_numba as _kernel
from stbin.estimators._common import scaled
from stbin.estimators._twin_numba import NO_TWIN as _NO_TWIN

#: positions mod 64 of the call are kept by the fix-up (a multiple of every ``2V``)
_ALIGN = 64
#: fix-up piece length: a multiple of 64 below torch's parallel grain (32768)
_PIECE = 1 << 14


def usable(a: torch.Tensor, out: torch.Tensor, scale: float) -> bool:
    """Whether this path applies: contiguous float32/float64 CPU tensors of one dtype, ``1/s`` a normal float32."""
    inv = 1.0 / scale
    return (a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64) and out.dtype == a.dtype
            and a.is_contiguous() and 2.0 ** -100 < inv < 2.0 ** 100)


def sample_into(out: torch.Tensor, a: torch.Tensor, scale: float, seed: torch.Tensor, parallel: bool,
                threads: int | None, redo: Callable[[int, int], None], twin: torch.Tensor | None = None) -> bool:
    """``out`` (flat) <- the logistic samples of ``a`` (flat, same dtype) under ``seed``.

    ``redo(lo, hi)`` computes elements ``lo .. hi-1`` the two-pass way (for a work item
    whose undecided elements overflowed their row; ``lo`` is a multiple of 2048). With
    ``twin`` (flat int8, ``a``'s size): ``twin <- sign(out)`` as well — written by the kernel,
    then by the fix-up and after every ``redo`` on the elements they rewrite. Returns whether
    the twin is valid (a twin was given and no sample is NaN).
    """
    a_np, out_np = a.detach().numpy(), out.detach().numpy()
    tw = None if twin is None else twin.numpy()
    idx, words, counts, nan = _kernel.decide(a_np, out_np, scale, seed.numpy(), parallel, threads, twin=tw)
    cap = idx.shape[1]
    if not counts.any():
        return tw is not None and not nan
    if counts.max() > cap:  # rare: an overflowed row, redone the two-pass way
        for item in np.flatnonzero(counts > cap).tolist():
            lo = item * _kernel.ITEM_ELEMENTS
            hi = min(lo + _kernel.ITEM_ELEMENTS, a.numel())
            redo(lo, hi)
            if tw is not None:
                nan |= _sign_into(tw[lo:hi], out_np[lo:hi])
    nan |= fix_exact(out_np, a_np, scale, idx, words, counts, seed, tw)
    return tw is not None and not nan


def _sign_into(twin: np.ndarray, x: np.ndarray) -> bool:
    """``twin <- sign(x)`` (int8; 0 for NaN); whether some ``x`` is NaN."""
    bad = np.isnan(x)
    np.sign(np.where(bad, 0, x), out=twin, casting="unsafe")
    return bool(bad.any())


def fix_exact(out: np.ndarray, a: np.ndarray, scale: float, idx: np.ndarray, halves: np.ndarray,
              counts: np.ndarray, seed: torch.Tensor, twin: np.ndarray | None = None) -> bool:
    """``out[i]`` <- ``+1`` where ``u < p = sigmoid(a[i] / s)`` (torch's value at that position), else -1, for the
    recorded elements ``i``.

    ``idx``, ``halves``: the kernel's rows (indices into the call of ``seed`` and their 16-bit half-words),
    ``counts``: how many of each row are recorded (rows with more than ``idx.shape[1]`` are skipped: the
    caller redoes them). ``u`` is the stream's uniform: the tie word is drawn only where ``p`` lies in the
    half-word's interval. NaN where ``p`` is NaN. With ``twin``: ``twin[i] <- sign(out[i])`` too. Returns
    whether a fixed sample is NaN. (The index work is compiled, and most elements are settled without
    torch's value, with a proven margin: :mod:`stbin.estimators._fixup_numba`.)
    """
    n = a.size
    tail = n - n % _ALIGN
    tw = _NO_TWIN if twin is None else twin
    s, divide = a.dtype.type(scale), scale != 1.0
    index, half, below, nan, pending = _fixup.collect_and_settle(out, tw, a, idx, halves, counts, tail, s, divide,
                                                                 seed.numpy())
    if not pending.size:  # the usual case: no element within 2^-20 of its uniform, so no torch call
        return bool(nan)
    values = _fixup.body_values(a, index, below, _ALIGN, s, divide)
    p = np.empty(index.size, dtype=a.dtype)
    for lo in range(0, below, _PIECE):  # pieces below torch's parallel grain: one chunk, one loop
        piece = torch.from_numpy(values[lo: lo + _PIECE])  # a / s, computed as torch computes it
        p[lo: min(lo + _PIECE, below)] = torch.sigmoid(piece, out=piece).numpy()[: min(_PIECE, below - lo)]
    if below < index.size:
        p[below:] = _sigmoid(a[tail:].copy(), scale)[index[below:] - tail]
    return bool(nan) | _fixup.settle(out, tw, index[pending], half[pending], p[pending], seed.numpy())


def _sigmoid(v: np.ndarray, scale: float) -> np.ndarray:
    """``sigmoid(v / s)`` by the torch operations of the two-pass path (``v`` fresh: modified in place)."""
    t, _ = scaled(torch.from_numpy(v), scale)
    return torch.sigmoid(t, out=t).numpy()
