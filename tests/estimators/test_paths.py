"""Every size-dependent code path of the estimators gives the closed form, by value.

The fast paths (chunked logistic ST backward, sampling by blocks and chunks) are taken
from element counts set in :data:`stbin.estimators._common.THRESHOLDS`. Each test is
parametrized over thresholds that force every path on small tensors, checks that the path
was really taken (a spy on the path's function), and compares the result with the closed
form written here independently of the library. One test per path also runs at the real
default threshold, with a tensor just above it.
"""

from __future__ import annotations

import math

import pytest
import torch

from stbin.estimators import bernoulli_weight, stochastic_sign
from stbin.estimators import _common, _elementwise, stochastic
from stbin.estimators._common import THRESHOLDS, path_thresholds
from stbin.estimators.noise import NOISES

NOISE_NAMES = NOISES.names()
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def closed_form_factor(noise: str, a: torch.Tensor, s: float) -> torch.Tensor:
    """(2/s) F'(a/s) in float64, written from the noise table (not from the library)."""
    a = a.double()
    if noise == "logistic":
        return (1.0 / (2 * s)) / torch.cosh(a / (2 * s)) ** 2
    if noise == "uniform":
        return (a.abs() <= s).double() / s
    return (2.0 / s) * torch.exp(-0.5 * (a / s) ** 2) / math.sqrt(2 * math.pi)


def closed_form_cdf(noise: str, t: torch.Tensor) -> torch.Tensor:
    t = t.double()
    if noise == "logistic":
        return 1.0 / (1.0 + torch.exp(-t))
    if noise == "uniform":
        return ((t + 1) / 2).clamp(0, 1)
    return 0.5 * torch.erfc(-t / math.sqrt(2))


class Spy:
    """Counts the calls of a module-level function (replaced through monkeypatch)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> None:
        self.calls = 0
        fn = getattr(module, name)

        def wrapper(*args, **kwargs):
            self.calls += 1
            return fn(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)


def _tol(dtype: torch.dtype) -> dict[str, float]:
    # The result is computed in float32 (float64 for float64) and rounded once to the output
    # dtype: relative error <= 2 eps of the output dtype, except where F(a/s) rounds to 1 in
    # the compute dtype (|a/s| >= 17 in float32), where the factor (<= 1e-7 there) becomes 0.
    eps = torch.finfo(dtype).eps
    if dtype == torch.float64:
        return {"rtol": 1e-12, "atol": 1e-15}
    return {"rtol": 2 * eps, "atol": 1e-6}


def _backward(a: torch.Tensor, g_out: torch.Tensor, noise: str, s: float, mode: str = "sample",
              create_graph: bool = False) -> torch.Tensor:
    a = a.detach().clone().requires_grad_()
    out = stochastic_sign(a, noise, s, mode, generator=torch.Generator().manual_seed(0))
    (g,) = torch.autograd.grad(out, a, g_out, create_graph=create_graph)
    return g.detach()


def _inputs(n: int, dtype: torch.dtype, s: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, generator=gen, dtype=torch.float64) * 2 * s
    a[:6] = torch.tensor([0.0, -0.0, s, -s, 40 * s, -40 * s], dtype=torch.float64)
    g_out = torch.randn(n, generator=gen, dtype=torch.float64)
    return a.to(dtype), g_out.to(dtype)


# -- ST backward: the fused path, the chunked path (forced and at its real threshold) -----

@pytest.mark.parametrize("noise", NOISE_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("chunk", [None, 1000, 64, 7])
def test_st_backward_equals_closed_form_on_every_path(monkeypatch, noise, dtype, scale, chunk):
    spy = Spy(monkeypatch, stochastic, "_logistic_st_backward_chunked")
    a, g_out = _inputs(1000, dtype, scale)
    kw = {} if chunk is None else {"chunk_numel": chunk}
    with path_thresholds(**kw):
        g = _backward(a.view(10, 100), g_out.view(10, 100), noise, scale).view(-1)
    expected = (closed_form_factor(noise, a, scale) * g_out.double()).to(dtype)
    assert g.dtype == dtype
    torch.testing.assert_close(g, expected, **_tol(dtype))
    # the chunked path runs exactly when it should: logistic, CPU, numel >= chunk
    assert spy.calls == (1 if noise == "logistic" and chunk is not None else 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_st_backward_at_its_real_threshold(monkeypatch, dtype):
    # float32 takes the one-pass kernel (test_logistic_kernel_backward_on_every_path), other dtypes the chunks
    spy = Spy(monkeypatch, stochastic, "_logistic_st_backward_chunked")
    kernel = Spy(monkeypatch, _elementwise._logistic_kernel, "logistic_st_grad_into")
    n = THRESHOLDS.chunk_numel + 5  # two chunks, the second a partial one
    assert n >= 131_072
    a, g_out = _inputs(n, dtype, 1.5, seed=1)
    g = _backward(a, g_out, "logistic", 1.5)
    assert (spy.calls, kernel.calls) == ((0, 1) if dtype == torch.float32 else (1, 0))
    torch.testing.assert_close(g, (closed_form_factor("logistic", a, 1.5) * g_out.double()).to(dtype),
                               **_tol(dtype))


KERNEL_PATHS = {"serial": {"elementwise_kernel_min_numel": 1},
                "parallel": {"elementwise_kernel_min_numel": 1, "parallel_sampling_min_numel": 1},
                "reused": {"elementwise_kernel_min_numel": 1, "reuse_output_min_numel": 1}}


@pytest.mark.parametrize("path", KERNEL_PATHS)
@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_logistic_kernel_backward_on_every_path(monkeypatch, two_threads, path, scale):
    kernel = Spy(monkeypatch, _elementwise._logistic_kernel, "logistic_st_grad_into")
    a, g_out = _inputs(3000, torch.float32, scale)
    a[6:12] = torch.tensor([math.inf, -math.inf, 200 * scale, -200 * scale, 1e-30, -1e-30])
    with path_thresholds(**KERNEL_PATHS[path]):
        g = _backward(a.view(30, 100), g_out.view(30, 100), "logistic", scale).view(-1)
    assert kernel.calls == 1
    expected = (closed_form_factor("logistic", a, scale) * g_out.double()).float()
    torch.testing.assert_close(g, expected, **_tol(torch.float32))
    assert g[6:10].tolist() == [0.0, 0.0, 0.0, 0.0]  # +-inf and far tails: an exact zero factor
    a[12] = math.nan
    with path_thresholds(**KERNEL_PATHS[path]):
        g2 = _backward(a, g_out, "logistic", scale)
    assert math.isnan(g2[12]) and torch.equal(g2[13:], g[13:])  # NaN stays NaN, the rest is unchanged


def test_logistic_kernel_gives_the_same_numbers_for_one_and_two_threads(two_threads):
    a, g_out = _inputs(200_000, torch.float32, 0.8, seed=3)
    out = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out.append(_backward(a, g_out, "logistic", 0.8))
    assert torch.equal(out[0], out[1])


@pytest.mark.parametrize("noise", NOISE_NAMES)
def test_double_backward_path_equals_closed_form(monkeypatch, noise):
    # with create_graph=True the generic (graph-building) path runs even above the threshold
    spy = Spy(monkeypatch, stochastic, "_logistic_st_backward_chunked")
    a, g_out = _inputs(300, torch.float64, 0.7)
    with path_thresholds(chunk_numel=16):
        g = _backward(a, g_out, noise, 0.7, create_graph=True)
    assert spy.calls == 0
    torch.testing.assert_close(g, closed_form_factor(noise, a, 0.7) * g_out, **_tol(torch.float64))


@pytest.mark.parametrize("mode", ["mode", "mean"])
def test_chunked_backward_in_every_forward_mode(mode):
    a, g_out = _inputs(500, torch.float32, 2.0)
    with path_thresholds(chunk_numel=33):
        g = _backward(a, g_out, "logistic", 2.0, mode)
    torch.testing.assert_close(g, (closed_form_factor("logistic", a, 2.0) * g_out.double()).float(),
                               **_tol(torch.float32))


def test_non_contiguous_inputs_take_the_generic_path_with_the_same_values():
    a, g_out = _inputs(600, torch.float32, 1.0)
    a_nc, g_nc = a.view(20, 30).t(), g_out.view(20, 30).t()
    with path_thresholds(chunk_numel=8):
        g = _backward(a_nc, g_nc, "logistic", 1.0)
    expected = (closed_form_factor("logistic", a_nc, 1.0) * g_nc.double()).float()
    torch.testing.assert_close(g, expected, **_tol(torch.float32))


# -- sampling: every path gives P(x = +1) = F(a/s) ------------------------------------------
# (the exact, element-by-element check of every sampling path against an independent
# Philox implementation is in test_random.py)

SAMPLING_PATHS = {
    "default": {},  # 10,000 elements: the serial kernel
    "parallel": {"parallel_sampling_min_numel": 1},
    "parallel-partial-tile": {"parallel_sampling_min_numel": 1000},
}


def _sample(fn: str, a: torch.Tensor, noise: str, s: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if fn == "stochastic_sign":
        return stochastic_sign(a, noise, s, "sample", g)
    return bernoulli_weight(a, noise, s, "sample", g)


@pytest.mark.parametrize("path", SAMPLING_PATHS)
@pytest.mark.parametrize("fn", ["stochastic_sign", "bernoulli_weight"])
@pytest.mark.parametrize("noise", NOISE_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sampling_is_exact_where_F_is_zero_or_one(two_threads, path, fn, noise, dtype):
    s = 0.5
    a = torch.tensor([100.0, -100.0, 30.0, -30.0], dtype=dtype).repeat(2500)  # F(a/s) = 1 or 0 exactly
    with path_thresholds(**SAMPLING_PATHS[path]):
        x = _sample(fn, a, noise, s, 3)
    assert x.dtype == dtype and x.shape == a.shape
    assert torch.equal(x, torch.where(a > 0, 1.0, -1.0).to(dtype))


@pytest.mark.parametrize("path", SAMPLING_PATHS)
@pytest.mark.parametrize("fn", ["stochastic_sign", "bernoulli_weight"])
@pytest.mark.parametrize("noise", NOISE_NAMES)
def test_sampled_frequencies_on_every_path(two_threads, path, fn, noise):
    # 8 values x 12,500 draws each; tolerance 5 binomial standard errors per value
    s, n = 0.8, 12_500
    values = torch.tensor([-2.0, -0.9, -0.3, 0.0, 0.1, 0.5, 0.79, 1.6])
    a = values.repeat(n)
    with path_thresholds(**SAMPLING_PATHS[path]):
        x = _sample(fn, a, noise, s, 11)
    assert set(x.unique().tolist()) <= {-1.0, 1.0}
    freq = (x.view(n, -1) > 0).double().mean(0)
    p = closed_form_cdf(noise, values / s)
    se = torch.sqrt(p * (1 - p) / n)
    assert ((freq - p).abs() <= 5 * se + 1e-12).all(), (path, freq, p)


@pytest.mark.parametrize("noise", NOISE_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_non_cpu_sampling_path_by_value(noise, dtype):
    # the path CUDA tensors take (torch.rand from the generator), run here on CPU by value:
    # x = +1 exactly where the generator's torch.rand(compute dtype) is below F(a/s)
    from stbin.estimators.sampling import _sample_sign_rand

    s = 0.6
    a, _ = _inputs(3000, dtype, s, seed=4)
    a[7] = math.nan
    x = _sample_sign_rand(a, NOISES.get(noise), s, torch.Generator().manual_seed(8))
    cdt = torch.float64 if dtype == torch.float64 else torch.float32
    u = torch.rand(a.shape, generator=torch.Generator().manual_seed(8), dtype=cdt)
    F = closed_form_cdf(noise, a.double() / s)
    expected = torch.where(u.double() < F, 1.0, -1.0)
    near = (u.double() - F).abs() < (1e-6 if cdt == torch.float32 else 1e-14)
    assert x.dtype == dtype and math.isnan(float(x[7]))
    ok = (x.double() == expected) | near
    ok[7] = True
    assert ok.all() and near.sum() <= 3
