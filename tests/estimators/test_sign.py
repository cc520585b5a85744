"""sign with backward proxies: closed-form factors, including exact zeros, the clip boundary and ±1e4."""

import pytest
import torch

from stbin.estimators import SIGN_PROXIES, sign

X = torch.tensor([-1e4, -2.0, -1.0, -0.5, -0.0, 0.0, 0.25, 1.0, 1.0 + 1e-12, 3.0, 1e4], dtype=torch.float64)


def grad_of(proxy, x, **kw):
    x = x.clone().requires_grad_()
    g_out = torch.linspace(0.5, 1.5, x.numel(), dtype=x.dtype)
    return torch.autograd.grad(sign(x, proxy, **kw), x, g_out)[0] / g_out


def test_forward_is_sign_with_sign_zero_plus_one():
    for proxy in SIGN_PROXIES:
        out = sign(X, proxy)
        assert out.tolist() == [-1, -1, -1, -1, 1, 1, 1, 1, 1, 1, 1]


def test_identity():
    torch.testing.assert_close(grad_of("identity", X), torch.ones_like(X), rtol=1e-15, atol=0)


@pytest.mark.parametrize("clip", [1.0, 0.5, 2.0])
def test_htanh_mask_inclusive_at_clip(clip):
    expected = (X.abs() <= clip).double()
    torch.testing.assert_close(grad_of("htanh", X, clip=clip), expected, rtol=1e-15, atol=0)


def test_tanh():
    torch.testing.assert_close(grad_of("tanh", X), 1 - torch.tanh(X) ** 2, rtol=1e-12, atol=0)


def test_approx_sign():
    expected = torch.where(X.abs() <= 1, 2 - 2 * X.abs(), torch.zeros_like(X))
    torch.testing.assert_close(grad_of("approx_sign", X), expected, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("beta", [1.0, 5.0, 10.0])
def test_swish_sign_is_derivative_of_signswish(beta):
    # the derivative of 2 sigma(b x)(1 + b x (1 - sigma(b x))) - 1
    x = X[X.abs() < 100].clone().requires_grad_()
    s = torch.sigmoid(beta * x)
    (true,) = torch.autograd.grad((2 * s * (1 + beta * x * (1 - s)) - 1).sum(), x)
    torch.testing.assert_close(grad_of("swish_sign", x.detach(), beta=beta), true, rtol=1e-10, atol=1e-12)
    big = grad_of("swish_sign", torch.tensor([1e4, -1e4], dtype=torch.float64), beta=beta)
    assert torch.isfinite(big).all() and big.abs().max() == 0


def test_bad_names_and_values():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="unknown sign proxy 'htan'.*approx_sign, htanh, identity, swish_sign, tanh"):
        sign(x, "htan")
    with pytest.raises(ValueError, match="clip must be a positive finite number, got -1"):
        sign(x, "htanh", clip=-1)
    with pytest.raises(ValueError, match="beta must be a positive finite number, got 0"):
        sign(x, "swish_sign", beta=0)
