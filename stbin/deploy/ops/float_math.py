"""Float32 helpers of the float ops: a GEMM split over the engine's threads and an im2col convolution."""

from __future__ import annotations

from typing import Any

import numpy as np

from stbin.deploy.geometry import conv_out

_FLOAT_POOL: dict[str, Any] = {}  # the threadpoolctl controller, made once
#: multiply-adds per part below which a GEMM is not split over threads: handing a part to a Python thread
#: costs ~0.1-0.5 ms on a busy machine (measured: 64x784x512 in 0.46 ms on one thread, 1.03 ms split in two)
SPLIT_MACS = 32_000_000


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in float32 for the float layers, split by rows over the engine's threads.

    Each part runs single-threaded BLAS (via threadpoolctl, when installed): the binary
    kernels and BLAS then never wake two thread pools against each other, which on a busy
    machine cost up to tens of milliseconds per call (see docs/deploy.md).
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is optional
        return a @ b
    from stbin.deploy import kernels
    from stbin.deploy.thread_pools import worker_pool

    threads = kernels.get_threads()
    if "ctl" not in _FLOAT_POOL:
        _FLOAT_POOL["ctl"] = ThreadpoolController()
    n = a.shape[0]
    out = np.empty((n, b.shape[1]), dtype=np.result_type(a, b))
    parts = min(threads, max(1, (n * a.shape[1] * b.shape[1]) // SPLIT_MACS), n)
    with _FLOAT_POOL["ctl"].limit(limits=1, user_api="blas"):
        if parts <= 1:
            np.matmul(a, b, out=out)
            return out
        bounds = np.linspace(0, n, parts + 1).astype(int)
        pool = worker_pool("float", parts - 1)
        futures = [pool.submit(np.matmul, a[lo:hi], b, out=out[lo:hi]) for lo, hi in zip(bounds[1:-1], bounds[2:])]
        np.matmul(a[: bounds[1]], b, out=out[: bounds[1]])
        for f in futures:
            f.result()
    return out


def float_conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride, padding, dilation) -> np.ndarray:
    """NCHW float32 convolution by im2col and :func:`matmul` (zero padding)."""
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    oh, ow = conv_out(h, kh, sh, ph, dh), conv_out(wd, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, oh, ow, c, kh, kw), dtype=np.float32)
    for u in range(kh):
        for v in range(kw):
            patch = xp[:, :, u * dh: u * dh + sh * (oh - 1) + 1: sh, v * dw: v * dw + sw * (ow - 1) + 1: sw]
            cols[:, :, :, :, u, v] = patch.transpose(0, 2, 3, 1)
    y = matmul(cols.reshape(n * oh * ow, c * kh * kw), w.reshape(oc, -1).T)
    if b is not None:
        y += b
    return np.ascontiguousarray(y.reshape(n, oh, ow, oc).transpose(0, 3, 1, 2))


def torch_rows(fn: Any, x: np.ndarray) -> np.ndarray:
    """``fn(torch tensor) -> torch tensor`` on ``x``, split by rows over the engine's threads, each part
    on one torch thread (torch's thread count is restored after).

    Between numba's kernels, torch's own OpenMP pool measured ~70 ms per convolution on the loaded
    2-core machine even at batch 1 (0.02 ms on one thread): its threads are woken against
    numba's. Each part computes exactly what torch computes for those rows.
    """
    import torch

    from stbin.deploy import kernels
    from stbin.deploy.thread_pools import torch_threads, worker_pool

    n = len(x)
    parts = max(1, min(kernels.get_threads(), n if x[0].size * n >= 200_000 else 1))
    with torch_threads(1), torch.no_grad():
        if parts == 1:
            return fn(torch.from_numpy(x)).contiguous().numpy()
        bounds = np.linspace(0, n, parts + 1).astype(int)
        pool = worker_pool("float", parts - 1)
        futures = [pool.submit(lambda lo, hi: fn(torch.from_numpy(x[lo:hi])).contiguous().numpy(), lo, hi)
                   for lo, hi in zip(bounds[1:-1], bounds[2:])]
        first = fn(torch.from_numpy(x[: bounds[1]])).contiguous().numpy()
        return np.concatenate([first] + [f.result() for f in futures])
