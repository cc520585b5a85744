"""The one-pass uniform-noise sampler: bit for bit the two-pass stream, with no fix-up.

The reference is the two-pass path (``clip((a/s + 1) * 0.5, 0, 1)`` by torch, then the
comparison kernel that ``test_random.py`` ties to the published Philox vectors), on inputs
whose ``F`` sits within a few ulp of each element's ``u``, at the clip edges ``t = ±1``, and
at the specials.
"""

from __future__ import annotations

import math

import pytest
import torch

from stbin.estimators import _uniform_sampling_numba as uk
from stbin.estimators import bernoulli_weight, sampling, stochastic_sign
from stbin.estimators import random as srandom
from stbin.estimators._common import path_thresholds

SEED = torch.tensor([0x76543210, 0xFEDCBA98, 5, 0xFFFFFFFF])
FAST = {"elementwise_kernel_min_numel": 1}
SLOW = {"elementwise_kernel_min_numel": 1 << 40}


def two_pass(a: torch.Tensor, scale: float, seed: torch.Tensor) -> torch.Tensor:
    t = a / scale if scale != 1.0 else a
    p = ((t + 1.0) * 0.5).clamp(0.0, 1.0).contiguous()
    sampling._kernel.compare_inplace(p.view(-1).numpy(), seed.numpy(), False)
    return p


def same(x: torch.Tensor, y: torch.Tensor) -> bool:
    return torch.equal(x.isnan(), y.isnan()) and torch.equal(x.nan_to_num(7.0), y.nan_to_num(7.0))


def edge_inputs(n: int, dtype: torch.dtype, scale: float, seed: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    u = srandom.stream_uniforms(n, seed)
    a = ((2 * u - 1) * scale).to(dtype)  # F(a/s) ~ u
    for _ in range(3):  # a few ulp up or down
        step = torch.randint(-1, 2, (n,), generator=g)
        a = torch.where(step > 0, torch.nextafter(a, torch.tensor(math.inf, dtype=dtype)), a)
        a = torch.where(step < 0, torch.nextafter(a, torch.tensor(-math.inf, dtype=dtype)), a)
    far = torch.rand(n, generator=g) < 0.5
    a = torch.where(far, (torch.randn(n, generator=g, dtype=torch.float64) * 2 * scale).to(dtype), a)
    edge = torch.tensor([scale, -scale], dtype=dtype)
    edges = torch.cat([edge, torch.nextafter(edge, edge * 2), torch.nextafter(edge, edge * 0)])
    tiny = torch.finfo(dtype).tiny
    specials = torch.cat([edges, torch.tensor([0.0, -0.0, math.nan, math.inf, -math.inf, tiny, -tiny, tiny / 8,
                                               torch.finfo(dtype).max, -torch.finfo(dtype).max], dtype=dtype)])
    pos = torch.randperm(n, generator=g)[: 30 * specials.numel()]
    a[pos] = specials.repeat(30)
    return a


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 0.3, 2.5])
@pytest.mark.parametrize("parallel", [False, True])
def test_one_pass_equals_the_two_pass_stream(dtype, scale, parallel):
    n = 3 * 32 * 2048 + 1000 + 37
    a = edge_inputs(n, dtype, scale, SEED)
    out = torch.empty_like(a)
    uk.sample_into(a.numpy(), out.numpy(), scale, SEED.numpy(), parallel, 2)
    assert same(out, two_pass(a, scale, SEED))
    assert torch.isnan(out).sum() == 30 and (out.abs() == 1).sum() == n - 30


@pytest.mark.parametrize("cut", [2048, 32 * 2048])
def test_a_call_in_chunks_gives_the_numbers_of_one_call(cut):
    a = edge_inputs(200_000, torch.float32, 0.5, SEED)
    whole, parts = torch.empty_like(a), torch.empty_like(a)
    uk.sample_into(a.numpy(), whole.numpy(), 0.5, SEED.numpy(), False)
    for lo in range(0, a.numel(), cut):
        uk.sample_into(a[lo:lo + cut].numpy(), parts[lo:lo + cut].numpy(), 0.5, SEED.numpy(), lo % 2 == 0, 2,
                       start=lo)
    assert same(parts, whole)
    with pytest.raises(ValueError, match="multiple of 2048"):
        uk.sample_into(a[5:].numpy(), parts[5:].numpy(), 0.5, SEED.numpy(), False, start=5)
    with pytest.raises(ValueError, match="one size and dtype"):
        uk.sample_into(a.numpy(), parts.double().numpy(), 0.5, SEED.numpy(), False)


@pytest.mark.parametrize("fn", [stochastic_sign, bernoulli_weight])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_public_calls_give_the_numbers_of_the_two_pass_path(monkeypatch, fn, dtype, threads):
    a = edge_inputs(50_005, dtype, 0.7, SEED).view(5, 10_001)
    calls = []
    usable, real = sampling.ONE_PASS[sampling.NOISES.get("uniform").cdf]
    monkeypatch.setitem(sampling.ONE_PASS, sampling.NOISES.get("uniform").cdf,
                        (usable, lambda *args: (calls.append(1), real(*args))))
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with path_thresholds(parallel_sampling_min_numel=1, **FAST):
            x = fn(a, "uniform", 0.7, "sample", torch.Generator().manual_seed(1))
        with path_thresholds(**SLOW):
            y = fn(a, "uniform", 0.7, "sample", torch.Generator().manual_seed(1))
    finally:
        torch.set_num_threads(saved)
    assert calls == [1]
    assert same(x, y) and x.dtype == dtype and x.shape == a.shape
