"""heaviside and quant_relu: forward levels, STE masks, Lloyd's alpha."""

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


# -- one ulp below / at / above every exact midpoint, in every float dtype ---------------

_INT_OF = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
           torch.float64: torch.int64}


def _neighbours(mid, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(largest value of dtype < mid, smallest value of dtype >= mid) for an exact positive rational mid.

    Found by walking the bit patterns of positive floats (consecutive integers are
    consecutive floats), independently of the library.
    """
    from fractions import Fraction

    c = torch.tensor(float(mid), dtype=dtype).reshape(1).view(_INT_OF[dtype])
    while Fraction(float(c.view(dtype))) >= mid:
        c = c - 1
    while Fraction(float((c + 1).view(dtype))) < mid:
        c = c + 1
    return c.view(dtype)[0], (c + 1).view(dtype)[0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("alpha", [None, 0.3, 0.5, 1 / 3, 0.1])
def test_quant_relu_one_ulp_around_every_exact_midpoint(dtype, bits, alpha):
    from fractions import Fraction

    a = lloyd_alpha(bits) if alpha is None else alpha
    top = 2**bits - 1
    below, above, k_below, k_above = [], [], [], []
    for k in range(top):
        mid = Fraction(a) * (2 * k + 1) / 2  # the exact midpoint of levels k and k+1
        lo, hi = _neighbours(mid, dtype)
        below.append(lo)
        above.append(hi)
    xb, xa = torch.stack(below), torch.stack(above)
    levels = torch.arange(top + 1, dtype=torch.float64) * a
    expect_b = levels[:-1].to(dtype)
    expect_a = levels[1:].to(dtype)
    assert torch.equal(quant_relu(xb, bits, a), expect_b), (xb, quant_relu(xb, bits, a))
    assert torch.equal(quant_relu(xa, bits, a), expect_a), (xa, quant_relu(xa, bits, a))


def test_quant_relu_largest_float_below_half_alpha_is_level_zero():
    # the reported case: floor(x/alpha + 0.5) rounds up in float32
    alpha = lloyd_alpha(2)
    x = torch.nextafter(torch.tensor(alpha / 2, dtype=torch.float32), torch.tensor(0.0))
    while float(x) >= alpha / 2:
        x = torch.nextafter(x, torch.tensor(0.0))
    assert quant_relu(x.view(1), 2, alpha).item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_quant_relu_nan_propagates_and_infinities_saturate(dtype):
    x = torch.tensor([math.nan, math.inf, -math.inf, 0.0], dtype=dtype)
    out = quant_relu(x, 2, 0.5)
    assert math.isnan(out[0].item())
    assert out[1:].tolist() == [1.5, 0.0, 0.0]


def test_lloyd_sample_fit_assigns_by_exact_midpoints():
    # sample-based Lloyd assigns each x to the level of quant_relu: its fixed point on a
    # sample is alpha = sum k x / sum k^2 with k the (exact) quant_relu level of x
    g = torch.Generator().manual_seed(0)
    alpha = lloyd_alpha(2, n_samples=20_000, generator=g)
    x = torch.randn(20_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64).abs_()
    k = quant_relu(x, 2, alpha) / alpha
    assert float((k * x).sum() / (k * k).sum()) == pytest.approx(alpha, rel=1e-9)
