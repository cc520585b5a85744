r"""Logistic sampling in one pass: the kernel's decisions plus an exact fix-up of the undecided few.

:mod:`stbin.estimators._logistic_sampling_numba` writes every sample whose side of ``u``
is certain (all but about one in 20 000) and records the others; here those get
``p = sigmoid(a / s)`` **evaluated exactly as the two-pass path evaluates it** (the same
torch operations on the same values) and the stream's comparison ``word * 2^-32 < p``.
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

import numpy as np
import torch

from stbin.estimators import _logistic_sampling_numba as _kernel
from stbin.estimators._common import scaled

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
                threads: int | None, redo) -> None:
    """``out`` (flat) <- the logistic samples of ``a`` (flat, same dtype) under ``seed``.

    ``redo(lo, hi)`` computes elements ``lo .. hi-1`` the two-pass way (for a work item
    whose undecided elements overflowed their row; ``lo`` is a multiple of 1024).
    """
    a_np = a.detach().numpy()
    idx, words, counts = _kernel.decide(a_np, out.detach().numpy(), scale, seed.numpy(), parallel, threads)
    cap = idx.shape[1]
    over = np.flatnonzero(counts > cap)
    for item in over.tolist():
        lo = item * _kernel.ITEM_ELEMENTS
        redo(lo, min(lo + _kernel.ITEM_ELEMENTS, a.numel()))
        counts[item] = 0
    if not counts.any():
        return
    rows = np.arange(cap) < counts[:, None]
    fix_exact(out, a, scale, torch.from_numpy(idx[rows]), torch.from_numpy(words[rows].astype(np.int64)))


def fix_exact(out: torch.Tensor, a: torch.Tensor, scale: float, idx: torch.Tensor, words: torch.Tensor) -> None:
    """``out[idx]`` <- ``+1`` where ``words * 2^-32 < sigmoid(a[idx] / s)`` (torch's value at that position), else -1."""
    n = a.numel()
    tail = n - n % _ALIGN
    p = torch.empty(idx.numel(), dtype=a.dtype)
    body = idx < tail
    pos = torch.nonzero(body).view(-1)
    for lo in range(0, pos.numel(), _PIECE):
        sel = pos[lo: lo + _PIECE]
        v = torch.zeros((sel.numel() + _ALIGN - 1) // _ALIGN * _ALIGN, dtype=a.dtype)
        v[: sel.numel()] = a[idx[sel]]
        p[sel] = _sigmoid(v, scale)[: sel.numel()]
    rest = torch.nonzero(~body).view(-1)
    if rest.numel():
        last = _sigmoid(a[tail:].clone(), scale)
        p[rest] = last[idx[rest] - tail]
    u = words.to(torch.float64) * 2.0 ** -32
    x = torch.where(u < p.to(torch.float64), 1.0, -1.0).to(a.dtype)
    out[idx] = torch.where(torch.isnan(p), p, x)


def _sigmoid(v: torch.Tensor, scale: float) -> torch.Tensor:
    """``sigmoid(v / s)`` by the operations of the two-pass path (``v`` fresh: modified in place)."""
    t, _ = scaled(v, scale)
    return torch.sigmoid(t, out=t)
