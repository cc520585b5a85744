"""Noise families: CDF/density/mean/inverse consistency and the ST factor table."""

import math

import pytest
import torch

from stbin.estimators.noise import NOISES, get_noise

T = torch.tensor([-1e4, -3.0, -1.0, -0.5, 0.0, 0.25, 0.999, 1.0, 2.0, 1e4], dtype=torch.float64)


@pytest.mark.parametrize("name", NOISES.names())
def test_pdf_is_derivative_of_cdf(name):
    nz = get_noise(name)
    t = torch.tensor([-2.5, -0.7, -0.1, 0.0, 0.3, 0.9, 1.7], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(nz.cdf(t).sum(), t)
    torch.testing.assert_close(grad, nz.pdf(t.detach()), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NOISES.names())
def test_mean_is_two_cdf_minus_one_and_inverse(name):
    nz = get_noise(name)
    torch.testing.assert_close(nz.mean(T), 2 * nz.cdf(T) - 1, rtol=0, atol=1e-12)
    t = torch.tensor([-0.9, -0.3, 0.0, 0.4, 0.8], dtype=torch.float64)
    torch.testing.assert_close(nz.mean_inverse(nz.mean(t)), t, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_st_factor_table(scale):
    a = T * scale
    sech2 = 1.0 / torch.cosh(a / (2 * scale)) ** 2
    torch.testing.assert_close(get_noise("logistic").st_factor(a, scale), sech2 / (2 * scale), rtol=1e-12, atol=1e-300)
    unif = (a.abs() <= scale).double() / scale
    torch.testing.assert_close(get_noise("uniform").st_factor(a, scale), unif, rtol=0, atol=0)
    phi = torch.exp(-0.5 * (a / scale) ** 2) / math.sqrt(2 * math.pi)
    torch.testing.assert_close(get_noise("gaussian").st_factor(a, scale), 2 * phi / scale, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("name", NOISES.names())
def test_sample_z_has_the_cdf(name):
    nz = get_noise(name)
    z = nz.sample_z((200_000,), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for t in (-1.5, -0.5, 0.0, 0.7):
        emp = (z <= t).double().mean().item()
        p = nz.cdf(torch.tensor(t, dtype=torch.float64)).item()
        se = math.sqrt(p * (1 - p) / z.numel())
        assert abs(emp - p) < 5 * se + 1e-12, (name, t, emp, p)


def test_unknown_noise_lists_valid_names():
    with pytest.raises(ValueError, match="unknown noise 'cauchy'.*gaussian, logistic, uniform"):
        get_noise("cauchy")


@pytest.mark.parametrize("name", NOISES.names())
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_sample_z_is_finite_even_at_the_ends_of_the_uniform_grid(name, dtype, monkeypatch):
    nz = get_noise(name)
    eps = torch.finfo(dtype).eps
    # the extreme values torch.rand can return: 0 and the last grid point below 1
    extremes = torch.tensor([0.0, 1.0 - eps / 2], dtype=dtype)
    monkeypatch.setattr(torch, "rand", lambda *a, **k: extremes.clone())
    z = nz.sample_z((2,), dtype=dtype)
    assert torch.isfinite(z).all() and z[0] < 0 < z[1]
