"""The NaN policy: a NaN input gives a NaN output (and gradient) in every estimator and mode.

A NaN pre-activation or latent weight means training has diverged; mapping it to -1 (what
``a >= 0`` gives) would hide that. Infinities stay ordinary values.
"""

from __future__ import annotations

import math

import pytest
import torch

from stbin.estimators import bernoulli_weight, heaviside, magnitude_aware_sign, quant_relu, sign, stochastic_sign
from stbin.estimators._common import path_thresholds
from stbin.estimators.noise import NOISES
from stbin.estimators.sign import SIGN_PROXIES

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
NAN = math.nan
X = [NAN, 0.0, -0.0, 2.0, -3.0, math.inf, -math.inf, NAN]
SIGN_OF_X = [NAN, 1.0, 1.0, 1.0, -1.0, 1.0, -1.0, NAN]


def _assert_same(out: torch.Tensor, expected: list[float]) -> None:
    got = out.double().tolist()
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert (math.isnan(g) and math.isnan(e)) or g == e, (got, expected)


CASES = {
    **{f"sign/{p}": (lambda x, p=p: sign(x, p)) for p in SIGN_PROXIES.names()},
    **{f"stochastic_sign/{n}/mode": (lambda x, n=n: stochastic_sign(x, n, 1.0, "mode")) for n in NOISES.names()},
    **{f"bernoulli_weight/{n}/mode": (lambda x, n=n: bernoulli_weight(x, n, 1.0, "mode")) for n in NOISES.names()},
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_signs_propagate_nan(name, dtype):
    x = torch.tensor(X, dtype=dtype, requires_grad=True)
    out = CASES[name](x)
    assert out.dtype == dtype
    _assert_same(out, SIGN_OF_X)


@pytest.mark.parametrize("fn", [stochastic_sign, bernoulli_weight])
@pytest.mark.parametrize("noise", NOISES.names())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", [{}, {"parallel_sampling_min_numel": 1}])
def test_samples_and_means_propagate_nan(two_threads, fn, noise, dtype, path):
    values = [NAN, math.inf, -math.inf, 5000.0, -5000.0, NAN]  # F(a/s) is 0 or 1 except at NaN
    expected = [NAN, 1.0, -1.0, 1.0, -1.0, NAN]
    x = torch.tensor(values * 4, dtype=dtype)
    with path_thresholds(**path):
        sample = fn(x, noise, 0.5, "sample", torch.Generator().manual_seed(0))
    _assert_same(sample, expected * 4)
    mean = fn(x, noise, 0.5, "mean")
    _assert_same(mean, expected * 4)


def test_st_backward_of_a_nan_is_nan():
    x = torch.tensor([NAN, 0.5], requires_grad=True)
    (g,) = torch.autograd.grad(stochastic_sign(x, "logistic", 1.0, "sample"), x, torch.ones(2))
    assert math.isnan(g[0]) and math.isfinite(g[1])


def test_magnitude_aware_sign_heaviside_quant_relu_propagate_nan():
    w = torch.tensor([[NAN, 1.0], [-2.0, 4.0]])
    out = magnitude_aware_sign(w)
    assert torch.isnan(out[0]).all() and out[1].tolist() == [-3.0, 3.0]  # the NaN poisons its channel scale
    _assert_same(heaviside(torch.tensor([NAN, 0.0, 1.0, -1.0])), [NAN, 0.0, 1.0, 0.0])
    _assert_same(quant_relu(torch.tensor([NAN, 0.0, 10.0]), 2, 0.5), [NAN, 0.0, 1.5])
