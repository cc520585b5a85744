"""Helpers shared by the estimator Functions: dtype handling, scaling, ±1 sampling.

They sit on the hot path of a training step (see ``benchmarks/bench_layers.py`` and
``docs/performance-layers.md``): they skip exact no-ops (division by a scale of 1), work in
place on tensors they have just allocated, allocate as little at full size as they can,
and never modify a tensor they were given.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Iterator

import torch

from stbin._validation import compute_dtype
from stbin.estimators.noise import Noise


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype used for elementwise factors (float32 for float16/bfloat16)."""
    cdt = compute_dtype(x.dtype)
    return x if x.dtype == cdt else x.to(cdt)


def scaled(x: torch.Tensor, scale: float) -> tuple[torch.Tensor, bool]:
    """``upcast(x) / scale``, and whether that is a new tensor (free to modify in place).

    With ``scale == 1`` the division is skipped (``x / 1 == x`` exactly), so the result may
    be ``x`` itself; the caller must then not modify it.
    """
    t = upcast(x)
    fresh = t is not x
    if scale != 1.0:
        t = t.div_(scale) if fresh else t / scale
        fresh = True
    return t, fresh


def scaled_grad(grad: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``grad * factor`` computed in the factor's dtype and returned in ``grad``'s dtype."""
    if grad.dtype == factor.dtype:
        return grad * factor
    return (grad.to(factor.dtype) * factor).to(grad.dtype)


def plus_minus_one(positive: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Map a boolean tensor to +1 (True) / -1 (False) in ``dtype``."""
    return positive.to(dtype).mul_(2).sub_(1)


def sign_pm1(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``sign(x)`` in {-1, +1} with sign(0) = sign(-0) = +1 and **NaN -> NaN** (the library's NaN policy).

    A NaN pre-activation or latent weight means the run has diverged; mapping it to -1 (as
    a comparison ``x >= 0`` would) hides that, so it propagates to the output instead.
    """
    out = plus_minus_one(x >= 0, x.dtype if dtype is None else dtype)
    return out.masked_fill_(torch.isnan(x), float("nan"))


# Size-dependent code paths. CPU sampling by 64-bit words (see _sample_sign_words) is used
# from ``word_sampling_min_numel`` elements on (below, torch.rand does as well with fewer
# ops); elementwise passes run on blocks of ``block_numel`` elements (8 MB of float32,
# within the last-level cache) and chunks of ``chunk_numel`` (512 KB, within L2), so large
# tensors are not streamed through memory pass after pass, and small ones take few
# operator calls. The values are read at every call, so tests force each path on small
# tensors with :func:`path_thresholds` (every path must give the closed form by value).


@dataclass
class PathThresholds:
    """Element counts from which the size-dependent fast paths are taken (read at every call)."""

    word_sampling_min_numel: int = 1 << 15
    chunk_numel: int = 1 << 17
    block_numel: int = 1 << 21


THRESHOLDS = PathThresholds()


@contextlib.contextmanager
def path_thresholds(**values: int) -> Iterator[PathThresholds]:
    """Temporarily set fields of :data:`THRESHOLDS` (for tests that force a path on small tensors)."""
    saved = dataclasses.asdict(THRESHOLDS)
    for k, v in values.items():
        if k not in saved:
            raise ValueError(f"unknown path threshold {k!r}; expected one of {sorted(saved)}")
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"path threshold {k} must be an int >= 1, got {v!r}")
        setattr(THRESHOLDS, k, v)
    try:
        yield THRESHOLDS
    finally:
        for k, v in saved.items():
            setattr(THRESHOLDS, k, v)


_TWO_POW_MINUS_24 = 2.0 ** -24
_WORD_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def noisy_sign(a: torch.Tensor, noise: Noise, scale: float, mode: str,
               generator: torch.Generator | None) -> torch.Tensor:
    """The forward of a noise-injected sign, ``x = sign(a - s z)``, in one of three modes.

    ``"mode"``: sign(a) with sign(0) = +1; ``"mean"``: 2F(a/s) - 1; ``"sample"``:
    :func:`sample_sign`. Shared by the stochastic activation and the Bernoulli weights,
    which differ only in their backward.
    """
    if mode == "mode":
        return sign_pm1(a)
    if mode == "mean":
        return noise.mean(upcast(a) / scale).to(a.dtype)
    return sample_sign(a, noise, scale, generator)


def sample_sign(a: torch.Tensor, noise: Noise, scale: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """``sign(a - s z)``, ``z`` i.i.d. standard noise of CDF ``F``: +1 with probability ``F(a / s)``.

    Returned in ``a``'s dtype; ``a`` is not modified. The sample is ``+1`` where ``u < F(a/s)``
    for ``u`` uniform on [0, 1) with the distribution of ``torch.rand`` in the compute dtype
    (24 random bits in float32, 53 in float64), drawn from ``generator``; contiguous CPU
    tensors of at least 32768 elements and a float32 compute dtype draw ``u`` by
    :func:`_sample_sign_words` (same distribution, a different stream of numbers).
    """
    if (a.device.type == "cpu" and a.dtype in _WORD_DTYPES and a.numel() >= THRESHOLDS.word_sampling_min_numel
            and a.is_contiguous()):
        return _sample_sign_words(a, noise, scale, generator).masked_fill_(torch.isnan(a), float("nan"))
    t, fresh = scaled(a, scale)
    if noise.cdf is torch.sigmoid:
        p = t.sigmoid_() if fresh else torch.sigmoid(t)
    else:
        p = noise.cdf(t)
    u = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
    x = u.lt_(p).mul_(2).sub_(1)  # the uniform draw's buffer receives 1.0 / 0.0, then 2x - 1
    x.masked_fill_(torch.isnan(p), float("nan"))
    return x if x.dtype == a.dtype else x.to(a.dtype)


def _sample_sign_words(a: torch.Tensor, noise: Noise, scale: float,
                       generator: torch.Generator | None) -> torch.Tensor:
    """:func:`sample_sign` for a contiguous CPU tensor of a float32 compute dtype.

    Sampling is serial on CPU and, with ``torch.rand``, most of the cost of a stochastic
    layer. Here the uniforms come from full-range 64-bit words (``random_``), each split into
    two 32-bit halves masked to 24 bits: ``k`` uniform on ``{0, ..., 2**24 - 1}``, so
    ``u = k / 2**24`` has exactly the distribution of ``torch.rand(dtype=torch.float32)``
    (a different stream of numbers) at one generator call per two elements, about 1.7x
    faster.

    The word buffer becomes the output: the halves are converted to float32 in place (an
    elementwise copy between two full views of one memory block, which ``copy_`` allows)
    and scaled to ``u``; ``F(a/s)`` is computed chunk by chunk into a small reused buffer
    and compared with ``u`` in place; a last pass maps {0, 1} to {-1, +1}. So the draw
    allocates one tensor of the output's size (fresh pages of large tensors are costly).
    """
    n = a.numel()
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device="cpu")
    words.random_(-(1 << 63), None, generator=generator)  # all 64 bits uniform
    k_all = words.view(torch.int32)[:n]
    u_all = words.view(torch.float32)[:n]
    a_flat = a.view(-1)
    chunk, block = THRESHOLDS.chunk_numel, THRESHOLDS.block_numel
    buf = torch.empty(min(n, chunk), dtype=torch.float32)
    logistic = noise.cdf is torch.sigmoid
    for lo_block in range(0, n, block):  # blocks that stay in the last-level cache
        hi_block = min(lo_block + block, n)
        u = u_all[lo_block:hi_block]
        u.copy_(k_all[lo_block:hi_block].bitwise_and_(0xFFFFFF)).mul_(_TWO_POW_MINUS_24)  # exact
        for lo in range(lo_block, hi_block, chunk):  # chunks that stay in L2
            hi = min(lo + chunk, hi_block)
            src, p = a_flat[lo:hi], buf[: hi - lo]
            if src.dtype != torch.float32:
                src = p.copy_(src)  # upcast first, then divide, as upcast(a) / scale
            if scale != 1.0:
                src = torch.div(src, scale, out=p)
            if logistic:
                torch.sigmoid(src, out=p)
            else:
                p.copy_(noise.cdf(src))
            u_all[lo:hi].lt_(p)  # 1.0 where u < F(a/s), else 0.0
        u.mul_(2).sub_(1)
    out = u_all.view(a.shape)
    return out if a.dtype == torch.float32 else out.to(a.dtype)
