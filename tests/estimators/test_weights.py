"""Weight estimators: magnitude_aware_sign and bernoulli_weight."""

import pytest
import torch

from stbin.estimators import bernoulli_weight, magnitude_aware_sign
from stbin.estimators.noise import NOISES, get_noise


def test_magnitude_aware_sign_forward_and_backward():
    w = torch.tensor([[0.0, -0.5, 2.0, 1e4], [-1.0, 0.25, -0.25, 0.5]], dtype=torch.float64, requires_grad=True)
    out = magnitude_aware_sign(w, clip=1.0)
    alpha = w.detach().abs().mean(1, keepdim=True)
    torch.testing.assert_close(out, alpha * torch.where(w >= 0, 1.0, -1.0).double())
    g_out = torch.arange(8, dtype=torch.float64).view(2, 4) + 1
    (g,) = torch.autograd.grad(out, w, g_out)
    torch.testing.assert_close(g, alpha * (w.detach().abs() <= 1.0).double() * g_out)


def test_magnitude_aware_sign_conv_weights_and_dim():
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    out = magnitude_aware_sign(w)
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out.abs(), alpha.expand_as(w))
    out1 = magnitude_aware_sign(w, dim=1)
    torch.testing.assert_close(out1.abs(), w.abs().mean(dim=(0, 2, 3), keepdim=True).expand_as(w))
    with pytest.raises(ValueError, match="dim=4 is out of range for a weight of shape"):
        magnitude_aware_sign(w, dim=4)


@pytest.mark.parametrize("noise", NOISES.names())
def test_bernoulli_weight_backward_is_identity(noise):
    theta = torch.tensor([0.0, -2.0, 0.3, 1e4, -1e4], dtype=torch.float64, requires_grad=True)
    g_out = torch.tensor([1.0, -2.0, 3.0, 0.5, -0.5], dtype=torch.float64)
    for mode in ("sample", "mode", "mean"):
        w = bernoulli_weight(theta, noise, 0.7, mode, generator=torch.Generator().manual_seed(0))
        (g,) = torch.autograd.grad(w, theta, g_out)
        torch.testing.assert_close(g, g_out, rtol=0, atol=0)


@pytest.mark.parametrize("noise", NOISES.names())
def test_bernoulli_weight_frequencies_and_mean(noise):
    n, s = 40_000, 0.8
    theta = torch.tensor([-1.0, 0.0, 0.5, 2.0], dtype=torch.float64)
    w = bernoulli_weight(theta.repeat(n, 1), noise, s, generator=torch.Generator().manual_seed(2))
    p = get_noise(noise).cdf(theta / s)
    se = torch.sqrt(p * (1 - p) / n)
    assert (((w > 0).double().mean(0) - p).abs() <= 5 * se + 1e-12).all()
    torch.testing.assert_close(bernoulli_weight(theta, noise, s, "mean"), 2 * p - 1)
    assert bernoulli_weight(theta, noise, s, "mode").tolist() == [-1.0, 1.0, 1.0, 1.0]
