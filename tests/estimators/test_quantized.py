"""heaviside and quant_relu (SPEC B1/B2): forward levels, STE masks, Lloyd's alpha."""

import math

import pytest
import torch

from stbin.estimators import heaviside, lloyd_alpha, quant_relu

X = torch.tensor([-1e4, -1.0, -0.0, 0.0, 1e-12, 0.5, 0.999, 1.0, 1.5, 1e4], dtype=torch.float64)


def grad_of(fn, x):
    x = x.clone().requires_grad_()
    return torch.autograd.grad(fn(x).sum(), x)[0]


def test_heaviside_forward_and_masks():
    assert heaviside(X).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    torch.testing.assert_close(grad_of(lambda t: heaviside(t, "identity"), X), torch.ones_like(X))
    torch.testing.assert_close(grad_of(lambda t: heaviside(t, "relu"), X), (X > 0).double())
    torch.testing.assert_close(grad_of(lambda t: heaviside(t, "clipped_relu"), X), ((X > 0) & (X < 1)).double())


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_quant_relu_levels_and_midpoint_thresholds(bits):
    alpha = 0.3
    top = 2**bits - 1
    ks = torch.arange(top + 1, dtype=torch.float64)
    # just below and above every midpoint
    mids = (ks[:-1] + 0.5) * alpha
    below = quant_relu(mids - 1e-9, bits, alpha)
    above = quant_relu(mids + 1e-9, bits, alpha)
    torch.testing.assert_close(below, ks[:-1] * alpha)
    torch.testing.assert_close(above, ks[1:] * alpha)
    out = quant_relu(X, bits, alpha)
    assert out.min() == 0 and out.max() == pytest.approx(top * alpha)
    assert (out[X <= 0] == 0).all()
    # every output is a level
    assert torch.allclose(out / alpha, torch.round(out / alpha))


@pytest.mark.parametrize("bits", [2, 4])
def test_quant_relu_ste_masks(bits):
    alpha = 0.25
    upper = (2**bits - 1) * alpha
    x = torch.cat([X, torch.tensor([upper, upper - 1e-9, upper + 1e-9], dtype=torch.float64)])
    torch.testing.assert_close(grad_of(lambda t: quant_relu(t, bits, alpha, "identity"), x), torch.ones_like(x))
    torch.testing.assert_close(grad_of(lambda t: quant_relu(t, bits, alpha, "relu"), x), (x > 0).double())
    torch.testing.assert_close(grad_of(lambda t: quant_relu(t, bits, alpha, "clipped_relu"), x),
                               ((x > 0) & (x < upper)).double())


def half_gaussian_mse(alpha: float, bits: int) -> float:
    """E(x - Q(x))^2 for x ~ |N(0,1)|, integrated bin by bin (smooth integrands) with scipy."""
    from scipy import integrate, stats

    top = 2**bits - 1
    total = 0.0
    for k in range(top + 1):
        lo = 0.0 if k == 0 else (k - 0.5) * alpha
        hi = math.inf if k == top else (k + 0.5) * alpha
        total += integrate.quad(lambda x: (x - k * alpha) ** 2 * 2 * stats.norm.pdf(x), lo, hi,
                                epsabs=1e-13, epsrel=1e-12)[0]
    return total


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_lloyd_alpha_minimises_the_half_gaussian_mse(bits):
    # independent check by numerical integration (scipy): alpha is a minimum of the MSE
    a = lloyd_alpha(bits)
    best = half_gaussian_mse(a, bits)
    for rel in (-0.05, -1e-3, 1e-3, 0.05):
        assert best < half_gaussian_mse(a * (1 + rel), bits)


def test_lloyd_alpha_from_samples_converges_to_the_exact_fit():
    gen = torch.Generator().manual_seed(0)
    for bits in (2, 4):
        sampled = lloyd_alpha(bits, n_samples=200_000, generator=gen)
        assert sampled == pytest.approx(lloyd_alpha(bits), rel=5e-3)


def test_bad_values():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="bits must be an integer >= 1, got 0"):
        quant_relu(x, 0, 0.5)
    with pytest.raises(ValueError, match="alpha must be a positive finite number, got -0.5"):
        quant_relu(x, 2, -0.5)
    with pytest.raises(ValueError, match="alpha must be a positive finite number, got 0"):
        quant_relu(x, 2, 0.0)
    with pytest.raises(ValueError, match="unknown STE 'clip'.*clipped_relu, identity, relu"):
        heaviside(x, "clip")
    with pytest.raises(ValueError, match="bits must be an integer >= 1, got 0"):
        lloyd_alpha(0)
