r"""The b-bit uniformly quantized ReLU of Yin et al. (ICLR 2019, Sec. 5) and Lloyd's fit of alpha.

Forward, with :math:`L = 2^b - 1` levels above zero and resolution :math:`\alpha > 0`:

.. math:: Q(x) = \alpha \cdot \#\{k \in \{0, \dots, L-1\} : x \ge (k + \tfrac12)\alpha\},

i.e. the nearest of :math:`\{0, \alpha, \dots, L\alpha\}` with thresholds at the midpoints
(ties round up), and 0 for :math:`x \le 0`. The comparison is against the **exact**
midpoint :math:`(k+\frac12)\alpha` of the float ``alpha``: every input below it, including
the largest float of the input's dtype below it, maps to level k, every input at or above
it to level k+1. (The textbook form :math:`\lfloor x/\alpha + \frac12\rfloor` rounds
``x/alpha + 0.5`` up to the next integer in floating point for inputs one ulp below a
midpoint, so it is not used.) NaN inputs give NaN.

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
from fractions import Fraction
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
        return quantize(x, alpha, 2**bits - 1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        (x,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        mask = STES.get(ctx.ste)(upcast(x), ctx.upper)
        return scaled_grad(grad, mask), None, None, None


def midpoint_thresholds(alpha: float, top: int, dtype: torch.dtype, cache: bool = True) -> torch.Tensor:
    r"""For k = 0..top-1, the smallest value of ``dtype`` that is >= the exact midpoint (k+1/2) alpha.

    ``x >= t_k`` in ``dtype`` is then exactly ``x >= (k+1/2) alpha`` for every ``x`` of that
    dtype. Computed with exact rational arithmetic (``fractions.Fraction`` of the float
    ``alpha``) from a rounded candidate, which is moved by at most a few ulps.
    """
    key = (alpha, top, dtype)
    hit = _THRESHOLD_CACHE.get(key)
    if hit is not None:
        return hit
    a = Fraction(alpha)
    cand = ((torch.arange(top, dtype=torch.float64) + 0.5) * alpha).to(dtype)
    inf = torch.tensor(math.inf, dtype=dtype)
    out = []
    for k, c in enumerate(cand):
        mid = a * (2 * k + 1) / 2
        while math.isfinite(float(c)) and Fraction(float(c)) < mid:  # below the midpoint: step up
            c = torch.nextafter(c, inf) if dtype not in _NO_NEXTAFTER else _step(c, +1)
        while True:  # the largest value >= mid: step down while the next one down is still >= mid
            d = torch.nextafter(c, -inf) if dtype not in _NO_NEXTAFTER else _step(c, -1)
            if not math.isfinite(float(c)) or Fraction(float(d)) < mid:
                break
            c = d
        out.append(c)
    table = torch.stack(out) if out else torch.empty(0, dtype=dtype)
    if cache and len(_THRESHOLD_CACHE) < 256:
        _THRESHOLD_CACHE[key] = table
    return table


_THRESHOLD_CACHE: dict[tuple[float, int, torch.dtype], torch.Tensor] = {}
_NO_NEXTAFTER = (torch.float16, torch.bfloat16)
_INT_VIEW = {torch.float16: torch.int16, torch.bfloat16: torch.int16}


def _step(c: torch.Tensor, direction: int) -> torch.Tensor:
    """The next representable value of a positive finite half-precision scalar (bit pattern +- 1)."""
    bits = c.reshape(1).view(_INT_VIEW[c.dtype]) + direction
    return bits.view(c.dtype)[0]


def quantize(x: torch.Tensor, alpha: float, top: int) -> torch.Tensor:
    """Nearest of {0, alpha, ..., top alpha} with exact midpoint thresholds, in ``x``'s dtype; NaN stays NaN."""
    table = midpoint_thresholds(alpha, top, x.dtype).to(x.device)
    values = (torch.arange(top + 1, dtype=torch.float64) * alpha).to(device=x.device, dtype=x.dtype)
    levels = torch.bucketize(x, table, right=True)  # number of thresholds <= x
    out = values[levels]  # k alpha rounded once to x's dtype
    return torch.where(torch.isnan(x), x, out)


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
            k = torch.bucketize(x, midpoint_thresholds(alpha, top, x.dtype, cache=False), right=True).to(x.dtype)
            num, den = float((k * x).sum()), float((k * k).sum())
        new = num / den
        if abs(new - alpha) <= tol * alpha:
            alpha = new
            break
        alpha = new
    if n_samples is None:
        _LLOYD_CACHE[b] = alpha
    return alpha
