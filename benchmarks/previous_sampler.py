"""The CPU weight sampler stbin used before the Philox stream (commit c685bb9), kept as a baseline.

``benchmarks/bench_layers.py`` times it in the same run as the current sampler, so the
speed-up is a ratio measured under the same load. Uniforms from ``Tensor.random_`` over
full-range 64-bit words (two 24-bit uniforms per word, through an int64 -> float32 view of
one buffer), ``F(a/s)`` on cache-sized chunks, compared in place. Logistic noise, float32.
"""

from __future__ import annotations

import torch

CHUNK_NUMEL = 1 << 17
BLOCK_NUMEL = 1 << 21
_TWO_POW_MINUS_24 = 2.0 ** -24


def previous_sample_sign(a: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """±1 with P(+1) = sigmoid(a / scale): the previous implementation (float32, contiguous, CPU)."""
    n = a.numel()
    words = torch.empty((n + 1) // 2, dtype=torch.int64)
    words.random_(-(1 << 63), None, generator=generator)
    k_all = words.view(torch.int32)[:n]
    u_all = words.view(torch.float32)[:n]
    a_flat = a.view(-1)
    buf = torch.empty(min(n, CHUNK_NUMEL), dtype=torch.float32)
    for lo_block in range(0, n, BLOCK_NUMEL):
        hi_block = min(lo_block + BLOCK_NUMEL, n)
        u = u_all[lo_block:hi_block]
        u.copy_(k_all[lo_block:hi_block].bitwise_and_(0xFFFFFF)).mul_(_TWO_POW_MINUS_24)
        for lo in range(lo_block, hi_block, CHUNK_NUMEL):
            hi = min(lo + CHUNK_NUMEL, hi_block)
            src, p = a_flat[lo:hi], buf[: hi - lo]
            if scale != 1.0:
                src = torch.div(src, scale, out=p)
            torch.sigmoid(src, out=p)
            u_all[lo:hi].lt_(p)
        u.mul_(2).sub_(1)
    return u_all.view(a.shape)
