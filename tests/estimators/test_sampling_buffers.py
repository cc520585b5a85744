"""Reuse of large sampling outputs: a buffer is overwritten only when nothing refers to it.

The reuse threshold is forced down to small tensors (``path_thresholds``), so every test
runs the reuse path; each checks a property by value: the numbers equal those of fresh
allocations, and a sample that is still referenced in any way (the tensor itself, a view,
a numpy array, an autograd graph) is never modified by a later call.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stbin.estimators import bernoulli_weight, stochastic_sign
from stbin.estimators import sampling
from stbin.estimators._common import path_thresholds

REUSE = {"reuse_output_min_numel": 1}


@pytest.fixture(autouse=True)
def _fresh_cache():
    sampling.BUFFERS.clear()
    yield
    sampling.BUFFERS.clear()


def _draws(theta, n, reuse):
    g = torch.Generator().manual_seed(0)
    with path_thresholds(**(REUSE if reuse else {"reuse_output_min_numel": 1 << 40})):
        return [bernoulli_weight(theta, generator=g).clone() for _ in range(n)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_reused_buffer_gives_the_numbers_of_fresh_buffers(dtype):
    theta = torch.randn(3000, generator=torch.Generator().manual_seed(1)).to(dtype)
    fresh, reused = _draws(theta, 4, False), _draws(theta, 4, True)
    for f, r in zip(fresh, reused):
        assert torch.equal(f, r) and r.dtype == dtype


def test_a_dropped_sample_is_reused_and_a_new_tensor_is_returned():
    theta = torch.randn(64, 50)
    with path_thresholds(**REUSE):
        x1 = bernoulli_weight(theta)
        ptr = x1.data_ptr()
        del x1
        x2 = bernoulli_weight(theta)
        assert x2.data_ptr() == ptr  # the storage was free: reused
        assert not x2._is_view() and x2.shape == theta.shape and x2.is_contiguous()
        x3 = bernoulli_weight(theta)
        assert x3.data_ptr() != x2.data_ptr()  # x2 is alive: a fresh buffer


@pytest.mark.parametrize("holder", ["tensor", "view", "detached", "numpy", "storage"])
def test_a_referenced_sample_is_never_overwritten(holder):
    theta = torch.zeros(5000)  # p = 1/2: two calls agree nowhere near everywhere
    with path_thresholds(**REUSE):
        x = bernoulli_weight(theta)
        kept = x.clone()
        ref = {"tensor": lambda: x, "view": lambda: x[10:], "detached": lambda: x.detach(),
               "numpy": lambda: x.numpy(), "storage": lambda: x.untyped_storage()}[holder]()
        if holder != "tensor":
            del x
        y = bernoulli_weight(theta)
        got = {"tensor": lambda: ref, "view": lambda: ref, "detached": lambda: ref,
               "numpy": lambda: torch.from_numpy(np.asarray(ref)),
               "storage": lambda: torch.empty(0).set_(ref, 0, (5000,), (1,))}[holder]()
        want = kept[10:] if holder == "view" else kept
        assert torch.equal(got, want)
        assert not torch.equal(y, kept)


def test_samples_saved_by_autograd_survive_until_backward_and_gradients_match():
    torch.manual_seed(0)
    w = torch.randn(40, 30, requires_grad=True)
    x = torch.randn(8, 30, requires_grad=True)

    def step(reuse):
        g = torch.Generator().manual_seed(3)
        with path_thresholds(**(REUSE if reuse else {"reuse_output_min_numel": 1 << 40})):
            losses, grads = [], []
            for _ in range(3):
                w.grad = x.grad = None
                a = stochastic_sign(x, generator=g)
                out = a @ bernoulli_weight(w, generator=g).t()  # the sample is saved for backward
                bernoulli_weight(w, generator=g)  # a call between forward and backward
                out.square().sum().backward()
                losses.append(float(out.detach().square().sum()))
                grads.append((w.grad.clone(), x.grad.clone()))
        return losses, grads

    fresh, reused = step(False), step(True)
    assert fresh[0] == reused[0]
    for (gw1, gx1), (gw2, gx2) in zip(fresh[1], reused[1]):
        assert torch.equal(gw1, gw2) and torch.equal(gx1, gx2)


def test_below_the_threshold_nothing_is_cached():
    with path_thresholds(reuse_output_min_numel=1000):
        bernoulli_weight(torch.zeros(999))
        assert not sampling.BUFFERS._bufs
        bernoulli_weight(torch.zeros(1000))
        assert len(sampling.BUFFERS._bufs) == 1
