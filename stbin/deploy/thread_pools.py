"""The engine's worker threads: one pool per purpose, size and process.

The float layers split by rows (:mod:`stbin.deploy.row_parts`, :mod:`stbin.deploy.ops.float_math`) and the
large batches split over the engine's threads (:mod:`stbin.deploy.batch_split`) hand parts of their work to
threads that live as long as the process. A process forked after they started inherits the pool objects but
none of their threads: work handed to such a pool would never run. Pools are therefore kept per process id.

Those parts run on one torch thread each: :func:`torch_threads` sets torch's thread count (process-wide) for
the time they run and restores it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

_POOLS: dict[tuple[str, int, int], ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def worker_pool(name: str, workers: int, initializer: Callable[[], None] | None = None) -> ThreadPoolExecutor:
    """This process's pool of ``workers`` threads for ``name`` (threads ``stbin-deploy-<name>_*``), made at first
    use; ``initializer`` runs once in each of its threads."""
    if workers < 1:
        raise ValueError(f"a worker pool needs at least one thread, got {workers}")
    key = (name, workers, os.getpid())
    with _LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix=f"stbin-deploy-{name}",
                                                    initializer=initializer)
        return pool


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's thread count (process-wide) at ``n`` while it lasts, then as it was; nothing where torch is not
    installed (the engine runs without it on the numpy float backend)."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
