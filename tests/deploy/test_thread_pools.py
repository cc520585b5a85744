"""The engine's worker pools: one per purpose and size, and a fresh one in a forked child."""

import os

import pytest

from stbin.deploy import thread_pools
from stbin.deploy.thread_pools import worker_pool


def test_one_pool_per_name_and_size_whose_initializer_runs_in_its_threads():
    seen = []
    pool = worker_pool("test-init", 2, lambda: seen.append(1))
    assert worker_pool("test-init", 2) is pool
    assert worker_pool("test-init", 1) is not pool and worker_pool("test-other", 2) is not pool
    assert pool.submit(lambda: 7).result(timeout=10) == 7 and seen


def test_a_forked_process_gets_its_own_pool(monkeypatch):
    """A child process inherits the pool object but none of its threads: it must not hand work to them."""
    pool = worker_pool("test-fork", 1)
    pid = os.getpid()
    monkeypatch.setattr(thread_pools.os, "getpid", lambda: pid + 1)  # as in a child after fork
    child = worker_pool("test-fork", 1)
    assert child is not pool and child.submit(lambda: 8).result(timeout=10) == 8


def test_a_pool_needs_a_thread():
    with pytest.raises(ValueError, match="at least one thread, got 0"):
        worker_pool("test-zero", 0)


def test_torch_threads_sets_and_restores_torchs_count_even_on_error():
    import torch

    from stbin.deploy.thread_pools import torch_threads

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_torch_threads_without_torch_does_nothing(monkeypatch):
    import sys

    from stbin.deploy.thread_pools import torch_threads

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with torch_threads(1):
        pass
