"""Float layers at large batches: PyTorch's own kernels on one torch thread per part of the rows.

A float GEMM of a few tens of millions of multiply-adds (the first layer of a binary MLP at batch 64) takes
most of a batch's time; split by rows over the engine's threads, each part runs single-threaded torch (no
OpenMP pool woken between the engine's kernels, measured to cost milliseconds on a busy machine) and its
own epilogue (e.g. the threshold-and-pack of its rows, while they are in cache). Each part computes what
PyTorch computes for those rows on one thread.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from stbin.deploy.thread_pools import torch_threads, worker_pool

#: multiply-adds from which a layer is split over the engine's threads (about 1 ms of one core): handing a part
#: to a thread costs tens of microseconds on a quiet machine but milliseconds on a busy one (measured: the
#: 64x784x512 first layer of the demo MLP, 0.8 ms of CPU on one thread, took 1.4 ms of CPU and 5 ms of wall
#: time split in two under load), so only layers that clearly gain are split
SPLIT_MACS = 32_000_000
#: multiply-adds from which a layer below SPLIT_MACS runs on torch's own threads (as many as the engine's) instead
#: of one: measured in a quiet window (2026-12-02, OMP_WAIT_POLICY=PASSIVE), the demo MLP at batch 64 (its
#: 25.7 M-multiply-add first layer) took 0.87 ms against 1.16 ms on one torch thread, with identical outputs;
#: below this size waking torch's OpenMP pool between the engine's kernels costs more than it saves
TORCH_THREADS_MACS = 8_000_000


def _threads() -> int:
    from stbin.deploy import kernels

    return kernels.get_threads()


def run_parts(n: int, macs: int, part: Callable[[int, int], None]) -> None:
    """``part(lo, hi)`` for row ranges covering ``range(n)``: one range if ``macs < SPLIT_MACS``, else one per
    engine thread, run concurrently (the first in the calling thread), each on one torch thread. One range of
    at least ``TORCH_THREADS_MACS`` runs on as many torch threads as the engine has, a smaller one on one."""
    import torch

    threads = _threads()
    parts = max(1, min(threads, n)) if macs >= SPLIT_MACS else 1
    with torch_threads(threads if parts == 1 and macs >= TORCH_THREADS_MACS else 1), torch.no_grad():
        if parts == 1:
            part(0, n)
            return
        bounds = np.linspace(0, n, parts + 1).astype(int)
        pool = worker_pool("rows", parts - 1)
        futures = [pool.submit(part, int(lo), int(hi)) for lo, hi in zip(bounds[1:-1], bounds[2:])]
        try:
            part(0, int(bounds[1]))
        finally:
            for f in futures:
                f.result()


def torch_linear(x: np.ndarray, w: Any, b: Any, epilogue: Callable[[np.ndarray, int, int], None]) -> None:
    """``epilogue(x[lo:hi] @ w.T + b, lo, hi)`` per part of the rows of ``x`` (N, K) float32, the product by
    ``torch.nn.functional.linear`` (``w``, ``b``: torch tensors; ``b`` may be None)."""
    import torch

    if not x.flags.writeable:  # torch.from_numpy warns on read-only arrays (a plan being recorded freezes them)
        x = x.copy()

    def part(lo: int, hi: int) -> None:
        epilogue(torch.nn.functional.linear(torch.from_numpy(x[lo:hi]), w, b).numpy(), lo, hi)
    run_parts(len(x), x.shape[0] * x.shape[1] * int(w.shape[0]), part)
