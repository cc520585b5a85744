"""Large batches split over the engine's threads: each thread runs the whole network on its part of the rows.

A network run op by op with parallel kernels wakes the engine's threads once per kernel and waits for the
slowest of them at every layer: on a 2-core machine with numba's workqueue layer that cost resnet20 at batch
64 about a third of its time (10.0-10.5 ms against 6.3-6.5 ms split, 2026-12-02, quiet window). Split by rows,
one part per thread, each part runs the network's plan with serial loops (compiled once per part shape, as
any batch is), with no wake-up and no barrier between layers: one hand-off per batch.

:class:`BatchSplit` is what :class:`stbin.deploy.DeployedNet` keeps, for an input shape and thread count,
instead of a compiled plan when a batch is large enough (:func:`worth_splitting`) and the split was the faster
way in a short timed trial against the whole batch (:class:`SplitTrial`). Every row is computed by
the same ops as in the whole batch: the binary kernels compute each row on its own (bit for bit the same
results, serial or parallel), and torch's float layers already run on parts of the rows on one torch
thread each (:mod:`stbin.deploy.row_parts`).
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import wait
from typing import Any, Iterator

import numpy as np

from stbin.deploy.thread_pools import torch_threads, worker_pool

#: a batch is split when one run of it in one piece took at least this long: a hand-off to a thread costs
#: tens of microseconds on a quiet machine (the demo MLP at batch 64, 0.37 ms whole, took 0.83 ms split)
SPLIT_MIN_SECONDS = 2e-3
#: and every part has at least this many rows
MIN_PART_ROWS = 2
#: calls of each way (split, whole batch), alternating, before the faster one is kept for the shape (0: always
#: split). Measured at batch 64 on 2 threads (``benchmarks/bench_batch_split.py``): resnet20 1.58x faster split,
#: Bi-Real ResNet-18 1.07x, BinaryNet VGG 0.88x (its wide layers read their weights once per part), so neither
#: way wins everywhere
TRIAL_ROUNDS = 3


def worth_splitting(rows: int, threads: int, seconds: float) -> bool:
    """Whether a batch of ``rows`` that took ``seconds`` in one piece is split over ``threads`` threads."""
    return threads > 1 and rows >= MIN_PART_ROWS * threads and seconds >= SPLIT_MIN_SECONDS


def _one_numba_thread() -> None:
    from stbin.deploy import kernels

    kernels.numba.set_num_threads(1)  # per thread in numba: this worker's kernels pick their serial loops


@contextlib.contextmanager
def _serial() -> Iterator[None]:
    """One numba thread in the calling thread and one torch thread (torch's count is global) while it lasts."""
    from stbin.deploy import kernels

    numba_threads = kernels.numba.get_num_threads()
    kernels.numba.set_num_threads(1)
    try:
        with torch_threads(1):
            yield
    finally:
        kernels.numba.set_num_threads(numba_threads)


class SplitTrial:
    """The first ``2 * TRIAL_ROUNDS`` batches of a shape worth splitting: the split and the whole batch (its compiled
    plan, or op by op where ``whole`` is None) alternate, each call timed; then the faster way (the smallest time
    of each) replaces the trial in the network's plans for the shape. Both give the same outputs, bit for bit."""

    single = False

    def __init__(self, net: Any, key: tuple[Any, ...], split: "BatchSplit", whole: Any) -> None:
        self.net, self.key, self.split, self.whole = net, key, split, whole
        self.best = [float("inf"), float("inf")]  # split, whole
        self.calls = 0

    def _whole(self, x: np.ndarray, ctx: Any) -> np.ndarray:
        return self.whole(x, ctx) if self.whole is not None else self.net._steps(x, ctx)

    def __call__(self, x: np.ndarray, ctx: Any) -> np.ndarray:
        i = self.calls % 2
        self.calls += 1
        start = time.perf_counter()
        y = self.split(x, ctx) if i == 0 else self._whole(x, ctx)
        self.best[i] = min(self.best[i], time.perf_counter() - start)
        if self.calls >= 2 * TRIAL_ROUNDS and self.net._compiled.get(self.key) is self:
            self.net._compiled[self.key] = self.split if self.best[0] <= self.best[1] else self.whole
            self.net._set_compiled(self.net._compiled)
        return y


class BatchSplit:
    """Runs batches of one shape as ``threads`` parts of rows, one per thread, each through its own replica of
    the network (its own plans and scratch buffers; the ops and their arrays are shared, read only).

    Called as a compiled plan is, ``split(x, ctx)``, by the network's thread holding the kernel lock; the
    parts never enter a parallel kernel (numba's thread count is 1 in every participating thread, torch's is
    1 while the parts run and is restored after).
    """

    single = False  # never the one-compiled-call hot path of DeployedNet.predict

    def __init__(self, net: Any, x: np.ndarray, threads: int) -> None:
        """Replicas of ``net`` for batches of ``x``'s shape, each run on its part of ``x`` until its plan for
        the part is settled (compiled or op by op, as :class:`~stbin.deploy.DeployedNet` decides for any shape),
        in the calling thread, which holds the kernel lock: the parts never compile while they run."""
        from stbin.deploy.engine import COMPILE_AFTER

        if threads < 2 or len(x) < threads:
            raise ValueError(f"a batch of {len(x)} rows cannot be split over {threads} threads")
        self.threads = threads
        self.bounds = [int(b) for b in np.linspace(0, len(x), threads + 1).astype(int)]
        self.replicas = [net.replica() for _ in range(threads)]
        with _serial():
            for rep, lo, hi in zip(self.replicas, self.bounds[:-1], self.bounds[1:]):
                for _ in range(COMPILE_AFTER):
                    rep._forward(x[lo:hi])

    def __call__(self, x: np.ndarray, ctx: Any = None) -> np.ndarray:
        """Outputs for ``x`` (float32, C-contiguous, of this split's shape: the caller checks it)."""
        lo, hi = self.bounds[:2]
        parts = list(zip(self.replicas[1:], self.bounds[1:-1], self.bounds[2:]))
        with _serial():
            pool = worker_pool("batch", self.threads - 1, _one_numba_thread)
            futures = [pool.submit(rep._forward, x[a:b]) for rep, a, b in parts]
            try:
                first = self.replicas[0]._forward(x[lo:hi])
            finally:
                wait(futures)  # no part outlives the call, even when another one failed
        return np.concatenate([first, *(f.result() for f in futures)])
