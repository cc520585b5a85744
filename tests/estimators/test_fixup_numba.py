"""The compiled index work of the logistic sampler's fix-up: gathering the recorded elements, settling them."""

from __future__ import annotations

import math

import numpy as np
import torch

from stbin.estimators import _fixup_numba as fx
from stbin.estimators import random as srandom
from stbin.estimators._twin_numba import NO_TWIN


def test_collect_puts_the_elements_below_the_tail_first_and_skips_overflowed_rows():
    a = np.arange(200, dtype=np.float32) / 7
    idx = np.array([[3, 190, 5, 0], [7, 8, 9, 10], [150, 199, 0, 0]], np.int64)
    halves = idx.astype(np.uint32) + 1000
    counts = np.array([3, 5, 2])  # row 1 overflowed (cap 4): skipped
    index, half, below = fx.collect(idx, halves, counts, 192)
    values = fx.body_values(a, index, below, 64, np.float32(1.0), False)
    assert index.tolist() == [3, 190, 5, 150, 199] and below == 4  # row order; 199 is in the tail
    assert half.tolist() == [i + 1000 for i in index.tolist()]
    assert values.size == 64 and values[:4].tolist() == a[[3, 190, 5, 150]].tolist() and not values[4:].any()
    none, _, none_below = fx.collect(idx, halves, np.zeros(3, np.int64), 192)
    empty = (none, None, none_below, fx.body_values(a, none, none_below, 64, np.float32(1.0), False))
    s = np.float32(0.3)
    scaled = fx.body_values(a, index, below, 64, s, True)
    assert torch.equal(torch.from_numpy(scaled[:4]), torch.from_numpy(a[[3, 190, 5, 150]]) / 0.3)  # torch's division
    assert empty[0].size == 0 and empty[2] == 0 and empty[3].size == 0


def test_settle_is_the_stream_rule_ties_and_nan_included():
    seed = torch.tensor([5, 6, 7, 8])
    n = 4096
    index = np.arange(0, n, 3, dtype=np.int64)
    half = srandom.stream_halves(n, seed).numpy()[index].astype(np.uint32)
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(index.size, generator=gen, dtype=torch.float64)
    p[::2] = (torch.from_numpy(half[::2].astype(np.float64)) + p[::2]) * 2.0 ** -16  # ties: inside the interval
    p = p.float()
    p[1] = math.nan
    out, twin = np.zeros(n, np.float32), np.full(n, 9, np.int8)
    assert fx.settle(out, twin, index, half, p.numpy(), seed.numpy())
    u = srandom.stream_uniforms(n, seed)[index]
    exp = torch.where(u < p.double(), 1.0, -1.0).float()
    exp[1] = math.nan
    got = torch.from_numpy(out[index])
    assert torch.equal(got.nan_to_num(7.0), exp.nan_to_num(7.0))
    assert (twin[index] == np.nan_to_num(exp.numpy(), nan=0.0).astype(np.int8)).all()
    assert (twin[1::3] == 9).all()  # only the given elements are written
    assert not fx.settle(out, NO_TWIN, index[2:], half[2:], p.numpy()[2:], seed.numpy())


def test_settle_far_leaves_exactly_the_elements_near_their_uniform_for_torch():
    """Elements whose uniform lies at least MARGIN from the float64 sigmoid are settled as torch's float32 ``p``
    would settle them; the others (here a third, put within 1e-7 of their uniform) are left pending."""
    seed = torch.tensor([9, 8, 7, 6])
    n, s = 6000, np.float32(0.7)
    u = srandom.stream_uniforms(n, seed)
    gen = torch.Generator().manual_seed(3)
    q = torch.rand(n, generator=gen, dtype=torch.float64)
    near = torch.arange(n) % 3 == 0
    jitter = (torch.rand(int(near.sum()), generator=gen, dtype=torch.float64) - 0.5) * 2e-7
    q[near] = (u[near] + jitter).clamp(1e-9, 1 - 1e-9)
    a = (torch.log(q) - torch.log1p(-q)).float() * float(s)  # sigmoid(a / s) ~ q
    a[5] = math.nan
    index = np.arange(n, dtype=np.int64)
    half = srandom.stream_halves(n, seed).numpy().astype(np.uint32)
    out, twin = np.zeros(n, np.float32), np.full(n, 9, np.int8)
    nan, pending = fx.settle_far(out, twin, a.numpy(), index, half, s, True, seed.numpy())
    assert nan and np.isnan(out[5]) and twin[5] == 0
    p = torch.sigmoid(a / float(s)).double()  # torch's value
    q64 = torch.sigmoid((a / float(s)).double())  # what settle_far compares: a / s rounded to float32, in float64
    exp = torch.where(u < p, 1.0, -1.0)
    close = (u - q64).abs() < fx.MARGIN
    assert torch.equal(torch.from_numpy(pending), torch.nonzero(close).view(-1))
    done = ~close & ~torch.isnan(a)
    assert close[near].float().mean() > 0.9 and not close[~near].any()
    assert torch.equal(torch.from_numpy(out)[done].double(), exp[done])
    assert (twin[done.numpy()] == exp[done].numpy().astype(np.int8)).all()
