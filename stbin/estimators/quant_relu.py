r"""The b-bit uniformly quantized ReLU of Yin et al. (SPEC B2) and Lloyd's fit of alpha.

Forward, with :math:`L = 2^b - 1` levels above zero and resolution :math:`\alpha > 0`:

.. math:: Q(x) = \alpha \cdot \min\!\left(\left\lfloor \frac{x}{\alpha} + \frac12 \right\rfloor_{+},\; L\right),

i.e. the nearest of :math:`\{0, \alpha, \dots, L\alpha\}` with thresholds at the midpoints
(ties round up), and 0 for :math:`x \le 0`.

Backward: :math:`\partial L/\partial x = \mu'(x)\,\partial L/\partial Q` with the STE mask
(:mod:`stbin.estimators.ste`): ``identity`` 1, ``relu`` :math:`1[x>0]`, ``clipped_relu``
:math:`1[0 < x < L\alpha]`.

:math:`\alpha` is fixed, fitted once by Lloyd's algorithm restricted to uniform levels
(:func:`lloyd_alpha`) on half-Gaussian data, as in the paper (a batch norm without affine
parameters sits before each quantizer, so the pre-activations are roughly N(0, 1)).

Reference: Yin et al., ICLR 2019, Section 5.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from stbin._validation import check_floating, check_int_at_least, check_positive
from stbin.estimators._common import scaled_grad, upcast
from stbin.estimators.ste import STES


class QuantReLU(torch.autograd.Function):
    """Autograd Function of :func:`quant_relu`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bits: int, alpha: float, ste: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        top = float(2**bits - 1)
        ctx.upper, ctx.ste = top * alpha, ste
        xc = upcast(x)
        levels = torch.floor(xc / alpha + 0.5).clamp_(0.0, top)
        return (levels * alpha).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        (x,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        mask = STES.get(ctx.ste)(upcast(x), ctx.upper)
        return scaled_grad(grad, mask), None, None, None


def quant_relu(x: torch.Tensor, bits: int = 2, alpha: float | None = None, ste: str = "clipped_relu") -> torch.Tensor:
    """b-bit quantized ReLU with resolution ``alpha`` (default: :func:`lloyd_alpha` of ``bits``)."""
    check_floating("x", x)
    b = check_int_at_least("bits", bits, 1)
    a = lloyd_alpha(b) if alpha is None else check_positive("alpha", alpha)
    STES.get(ste)
    return QuantReLU.apply(x, b, a, ste)


_LLOYD_CACHE: dict[int, float] = {}


def _half_gaussian_bins(alpha: float, top: int) -> tuple[list[float], list[float]]:
    """P(bin k) and E[x 1[bin k]] for x ~ |N(0,1)|, bins of the uniform quantizer."""
    def cdf(t: float) -> float:  # CDF of |N(0,1)|
        return math.erf(t / math.sqrt(2.0)) if t < math.inf else 1.0

    def pdf2(t: float) -> float:  # 2 phi(t)
        return 2.0 * math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi) if t < math.inf else 0.0

    probs, moments = [], []
    for k in range(top + 1):
        lo = 0.0 if k == 0 else (k - 0.5) * alpha
        hi = math.inf if k == top else (k + 0.5) * alpha
        probs.append(cdf(hi) - cdf(lo))
        moments.append(pdf2(lo) - pdf2(hi))  # integral of t * 2 phi(t) over [lo, hi]
    return probs, moments


def lloyd_alpha(bits: int, n_samples: int | None = None, generator: torch.Generator | None = None,
                iters: int = 500, tol: float = 1e-12) -> float:
    r"""Fit the resolution :math:`\alpha` of the b-bit quantized ReLU by Lloyd's algorithm.

    Minimises :math:`\mathbb{E}(x - Q(x))^2` over :math:`\alpha` for half-Gaussian
    :math:`x = |N(0,1)|` (zeros from the negative half contribute no error, so the fit is
    the same for ReLU(N(0,1))). Lloyd's alternation for uniform levels: assign each x to
    the nearest level :math:`k\alpha`, then set :math:`\alpha = \sum k\,x / \sum k^2` over
    the assignments. With ``n_samples=None`` the sums are exact population moments of the
    half-Gaussian (deterministic); otherwise they are averages over ``n_samples`` draws
    from ``generator``.

    Returns:
        alpha (a Python float). Exact values: 1 bit 1.2240, 2 bits 0.6508, 3 bits 0.3534, 4 bits 0.1932.
    """
    b = check_int_at_least("bits", bits, 1)
    top = 2**b - 1
    if n_samples is None and b in _LLOYD_CACHE:
        return _LLOYD_CACHE[b]
    x = None
    if n_samples is not None:
        n = check_int_at_least("n_samples", n_samples, 1)
        x = torch.randn(n, generator=generator, dtype=torch.float64).abs_()
    alpha = 3.0 / top  # a reasonable start: levels spread over [0, 3]
    for _ in range(iters):
        if x is None:
            probs, moments = _half_gaussian_bins(alpha, top)
            num = sum(k * m for k, m in enumerate(moments))
            den = sum(k * k * p for k, p in enumerate(probs))
        else:
            k = torch.floor(x / alpha + 0.5).clamp_(0, top)
            num, den = float((k * x).sum()), float((k * k).sum())
        new = num / den
        if abs(new - alpha) <= tol * alpha:
            alpha = new
            break
        alpha = new
    if n_samples is None:
        _LLOYD_CACHE[b] = alpha
    return alpha
