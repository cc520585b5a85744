"""The one-pass sign and htanh-backward kernels: bit for bit the torch formulas, on every path.

Each test forces the kernel path on small tensors (``path_thresholds``) and compares with
the pure-torch formula (``sign_pm1_torch``; ``grad * (|x| <= clip).to(dtype)``) by bits,
so signed zeros and NaN are checked too; the paths are serial and parallel (two threads),
numba and its torch fallback, buffers fresh and reused.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stbin.estimators import _elementwise, sign
from stbin.estimators._buffers import BUFFERS, MAX_PER_KEY
from stbin.estimators._common import path_thresholds, sign_pm1_torch

PATHS = {"serial": {"elementwise_kernel_min_numel": 1},
         "parallel": {"elementwise_kernel_min_numel": 1, "parallel_sampling_min_numel": 1},
         "reused": {"elementwise_kernel_min_numel": 1, "reuse_output_min_numel": 1}}


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    idt = torch.int32 if a.dtype == torch.float32 else torch.int64
    an, bn = a.isnan(), b.isnan()  # NaN payloads may differ: compare NaN positions, other values by bits
    return torch.equal(an, bn) and torch.equal(a.masked_fill(an, 0).view(idt), b.masked_fill(bn, 0).view(idt))


def special_values(dtype: torch.dtype) -> torch.Tensor:
    fi = torch.finfo(dtype)
    one = torch.tensor(1.0, dtype=dtype)
    v = [0.0, -0.0, math.nan, -math.nan, math.inf, -math.inf, fi.tiny, -fi.tiny, fi.tiny / 4, -fi.tiny / 4,
         fi.max, -fi.max, 1.0, -1.0, float(torch.nextafter(one, 2 * one)), -float(torch.nextafter(one, 2 * one)),
         float(torch.nextafter(one, 0 * one)), -float(torch.nextafter(one, 0 * one)), 1.00000009, -1.00000009]
    return torch.tensor(v, dtype=dtype)


def inputs(dtype: torch.dtype, n: int = 5000) -> torch.Tensor:
    x = torch.randn(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64).mul_(1.5).to(dtype)
    s = special_values(dtype)
    x[: s.numel()] = s
    x[-s.numel():] = s  # also in the tail that a vectorised loop handles apart
    return x


@pytest.fixture(autouse=True)
def _clean():
    BUFFERS.clear()
    yield
    BUFFERS.clear()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_sign_is_the_torch_formula_bit_for_bit(monkeypatch, two_threads, path, dtype, backend):
    if backend == "torch":
        monkeypatch.setattr(_elementwise, "_kernel", None)
    x = inputs(dtype).view(50, 100)
    want = sign_pm1_torch(x)
    with path_thresholds(**PATHS[path]):
        for _ in range(3):  # the reused path hands out the same buffer again
            got = _elementwise.sign_pm1(x)
            assert same_bits(got, want)
            del got
    assert same_bits(want[0, :6], torch.tensor([1.0, 1.0, math.nan, math.nan, 1.0, -1.0], dtype=dtype))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("clip", [1.0, 0.3, 1.00000009])
def test_htanh_backward_is_grad_times_the_mask_bit_for_bit(two_threads, path, dtype, clip):
    x = inputs(dtype)
    g = torch.randn(x.numel(), generator=torch.Generator().manual_seed(4), dtype=dtype)
    g[:8] = torch.tensor([math.inf, -math.inf, math.nan, -0.0, 0.0, -3.0, 2.0, -1.0], dtype=dtype)
    want = g * (x.abs() <= clip).to(dtype)
    with torch.no_grad(), path_thresholds(**PATHS[path]):
        got = _elementwise.htanh_grad(g, x, clip)
    assert got is not None and same_bits(got, want)
    # the clip is rounded to x's dtype first: 1.00000009 is 1 + 2^-23 in float32, so x = 1 + 2^-23 passes
    if dtype == torch.float32 and clip == 1.00000009:
        assert bool((want[x == torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))] != 0).any())


def test_htanh_kernel_declines_what_it_cannot_do():
    g, x = torch.randn(100), torch.randn(100)
    with path_thresholds(elementwise_kernel_min_numel=1):
        with torch.no_grad():
            assert _elementwise.htanh_grad(g.half(), x.half(), 1.0) is None  # half types
            assert _elementwise.htanh_grad(g, x.double(), 1.0) is None  # mixed dtypes
            assert _elementwise.htanh_grad(g[::2], x[::2], 1.0) is None  # strided
        assert _elementwise.htanh_grad(g, x, 1.0) is None  # grad mode on: double backward needs torch ops
    with torch.no_grad():
        assert _elementwise.htanh_grad(g, x, 1.0) is None  # below the threshold


@pytest.mark.parametrize("proxy", ["htanh", "identity", "tanh"])
def test_sign_function_forward_and_backward_equal_on_both_paths(two_threads, proxy):
    x0 = inputs(torch.float32, 3000).view(30, 100)
    g = torch.randn(30, 100, generator=torch.Generator().manual_seed(5))
    out = []
    for kw in ({}, PATHS["parallel"]):
        x = x0.clone().requires_grad_()
        with path_thresholds(**kw):
            y = sign(x, proxy)
            y.backward(g)
        out.append((y.detach(), x.grad))
    assert same_bits(out[0][0], out[1][0]) and same_bits(out[0][1], out[1][1])


def test_double_backward_takes_the_differentiable_formula():
    x = torch.tensor([0.5, -2.0, 0.9], requires_grad=True)
    v = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with path_thresholds(elementwise_kernel_min_numel=1):
        y = sign(x, "htanh")
        (gx,) = torch.autograd.grad((y * v).sum(), x, create_graph=True)
        assert gx.tolist() == [1.0, 0.0, 3.0]
        (gv,) = torch.autograd.grad(gx.sum(), v)  # d/dv of v * mask: the mask
    assert gv.tolist() == [1.0, 0.0, 1.0]


def test_a_sign_still_referenced_is_never_overwritten():
    x = torch.randn(4000)
    with path_thresholds(**PATHS["reused"]):
        kept = [_elementwise.sign_pm1(x * (k + 1) * (-1) ** k) for k in range(MAX_PER_KEY + 2)]
        copies = [k.clone() for k in kept]
        view = kept[0][10:]
        arr = kept[1].numpy()
        del kept[:2]
        for k in range(3):
            _elementwise.sign_pm1(-x)
        assert torch.equal(view, copies[0][10:]) and np.array_equal(arr, copies[1].numpy())
        for k, c in zip(kept, copies[2:]):
            assert torch.equal(k, c)
        entries = BUFFERS._bufs[((4000,), torch.float32)]
        assert len(entries) == MAX_PER_KEY


def test_buffers_keep_one_storage_per_live_output_and_reuse_freed_ones():
    with path_thresholds(reuse_output_min_numel=1):
        a, b = BUFFERS.take((10,), torch.float32), BUFFERS.take((10,), torch.float32)
        assert a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr()  # both alive: two buffers
        pa = a.untyped_storage().data_ptr()
        del a
        c = BUFFERS.take((10,), torch.float32)
        assert c.untyped_storage().data_ptr() == pa  # a's buffer, free again, is handed out
        assert BUFFERS.take((10,), torch.float64).dtype == torch.float64
