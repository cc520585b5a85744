"""The output-buffer cache: reuse only unreferenced storage, per key and under a byte bound."""

from __future__ import annotations

import pytest
import torch

from stbin.estimators._buffers import MAX_PER_KEY, OutputBuffers
from stbin.estimators._common import path_thresholds

ALL = {"reuse_output_min_numel": 1}


def _ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def test_as_many_live_outputs_of_one_shape_as_a_resnet_stage_each_find_their_buffer_again():
    cache = OutputBuffers()
    with path_thresholds(**ALL):
        first = [cache.take((5, 7), torch.float32) for _ in range(7)]  # seven alive at once
        ptrs = {_ptr(t) for t in first}
        assert len(ptrs) == 7
        del first
        second = [cache.take((5, 7), torch.float32) for _ in range(7)]
        assert {_ptr(t) for t in second} == ptrs  # the next step allocates nothing
        assert cache.nbytes == 7 * 35 * 4


def test_a_key_keeps_at_most_max_per_key_buffers():
    cache = OutputBuffers()
    with path_thresholds(**ALL):
        live = [cache.take((3,), torch.float64) for _ in range(MAX_PER_KEY + 3)]
        assert len(cache._bufs[((3,), torch.float64)]) == MAX_PER_KEY
        assert cache.nbytes == MAX_PER_KEY * 3 * 8
        assert len({_ptr(t) for t in live}) == MAX_PER_KEY + 3  # none shared while alive


def test_over_the_byte_bound_unused_buffers_of_the_least_recently_used_key_go_first():
    cache = OutputBuffers(max_bytes=3 * 400)
    with path_thresholds(**ALL):
        a = cache.take((100,), torch.float32)  # key A, kept alive
        b = cache.take((50, 2), torch.float32)  # key B, then released
        del b
        c = cache.take((10, 10), torch.float32)  # key C: 1200 bytes held, at the bound
        assert cache.nbytes == 1200
        del c
        cache.take((100,), torch.float32)  # key A again (a is alive: a new buffer), A most recent
        # over the bound: B's unused buffer is dropped first (least recently used), then C's if needed
        assert ((50, 2), torch.float32) not in cache._bufs
        assert cache.nbytes <= 1200
        assert _ptr(a) in {e.storage.data_ptr() for e in cache._bufs[((100,), torch.float32)]}


def test_buffers_in_use_are_never_dropped_for_the_byte_bound():
    cache = OutputBuffers(max_bytes=400)
    with path_thresholds(**ALL):
        a = cache.take((100,), torch.float32)
        b = cache.take((50, 2), torch.float32)  # over the bound, but a is in use
        a.fill_(1.0)
        b.fill_(2.0)
        assert torch.equal(a, torch.ones(100)) and ((100,), torch.float32) in cache._bufs
        c = cache.take((100,), torch.float32)
        assert _ptr(c) != _ptr(a)


def test_a_buffer_larger_than_the_bound_is_allocated_but_not_cached():
    cache = OutputBuffers(max_bytes=100)
    with path_thresholds(**ALL):
        t = cache.take((26,), torch.float32)  # 104 bytes
        assert t.shape == (26,) and t.dtype == torch.float32
        assert cache.nbytes == 0 and not any(cache._bufs.values())


def test_below_the_threshold_every_take_allocates():
    cache = OutputBuffers()
    with path_thresholds(reuse_output_min_numel=101):
        cache.take((100,), torch.float32)
        assert cache.nbytes == 0 and not cache._bufs


def test_clear_forgets_everything():
    cache = OutputBuffers()
    with path_thresholds(**ALL):
        cache.take((4,), torch.float32)
        cache.clear()
        assert cache.nbytes == 0 and not cache._bufs


@pytest.mark.parametrize("bad", [-1, 1.5, "1"])
def test_bad_bound_is_refused(bad):
    with pytest.raises(ValueError, match="max_bytes"):
        OutputBuffers(max_bytes=bad)


def test_by_default_a_training_steps_outputs_of_32_ki_elements_are_cached():
    # the default threshold (128 KiB of float32): the sampled weights of a 256x256 layer and its
    # 128x256 unit outputs are reused at the next step instead of paying fresh pages
    from stbin.estimators import _buffers, bernoulli_weight, stochastic_sign

    _buffers.BUFFERS.clear()
    theta = torch.zeros(256, 256, requires_grad=True)
    a = torch.randn(128, 256, requires_grad=True)
    w = bernoulli_weight(theta, scale=0.1)
    x = stochastic_sign(a)
    assert ((256, 256), torch.float32) in _buffers.BUFFERS._bufs
    assert ((128, 256), torch.float32) in _buffers.BUFFERS._bufs
    ptr = w.data_ptr()
    del w, x
    assert bernoulli_weight(theta, scale=0.1).data_ptr() == ptr
    _buffers.BUFFERS.clear()
