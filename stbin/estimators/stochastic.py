r"""The stochastic binary activation and its principled straight-through estimator.

Forward (SPEC A1), with standard symmetric noise :math:`z` of CDF :math:`F` and scale
:math:`s > 0`:

* ``mode="sample"``: :math:`x = \operatorname{sign}(a - s z) \in \{-1, +1\}`, i.e.
  :math:`P(x=+1) = F(a/s)`;
* ``mode="mode"``: :math:`x = \operatorname{sign}(a)` with :math:`\operatorname{sign}(0)=+1`
  (the most likely state; deterministic inference);
* ``mode="mean"``: :math:`x = \mathbb{E}[x] = 2F(a/s) - 1` (a smooth relaxation).

Backward (SPEC A2), the same closed form in all three modes:

.. math:: \frac{\partial L}{\partial a} = \frac{2}{s} F'\!\left(\frac{a}{s}\right)\,
          \frac{\partial L}{\partial x}.

For one unit with downstream loss :math:`f`, the exact derivative of the expectation is
:math:`\frac{d}{da}\mathbb{E}f(x) = \frac1s F'(a/s)\,(f(+1)-f(-1))`; the ST estimator
replaces the finite difference :math:`f(+1)-f(-1)` by :math:`2 f'(x)` at the sampled
:math:`x`. It is therefore *unbiased whenever f is affine in x* (the finite difference
equals twice the derivative), for a single unit and for a whole layer, and biased
otherwise. With ``mode="mode"`` it is the deterministic ST estimator that the noise
explains: uniform noise with s = 1 gives BinaryNet's htanh backward, logistic noise with
s = 1/2 gives the tanh proxy.

Reference: A. Shekhovtsov, V. Yanush, "Reintroducing Straight-Through Estimators as
Principled Methods for Stochastic Binary Networks", GCPR 2021 (arXiv:2006.06880).
"""

from __future__ import annotations

from typing import Any

import torch

from stbin._registry import check_choice
from stbin._validation import check_floating, check_positive
from stbin.estimators._common import plus_minus_one, scaled_grad, upcast
from stbin.estimators.noise import Noise, get_noise

MODES = ("sample", "mode", "mean")


class StochasticSign(torch.autograd.Function):
    """Autograd Function of :func:`stochastic_sign` (see the module docstring for the math)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, noise: Noise, scale: float, mode: str,
                generator: torch.Generator | None) -> torch.Tensor:
        ctx.save_for_backward(a)
        ctx.noise, ctx.scale = noise, scale
        if mode == "mode":
            return plus_minus_one(a >= 0, a.dtype)
        t = upcast(a) / scale
        if mode == "mean":
            return noise.mean(t).to(a.dtype)
        u = torch.rand(a.shape, generator=generator, dtype=t.dtype, device=a.device)
        return plus_minus_one(u < noise.cdf(t), a.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None]:
        (a,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        factor = ctx.noise.st_factor(upcast(a), ctx.scale)
        return scaled_grad(grad, factor), None, None, None, None


def stochastic_sign(a: torch.Tensor, noise: str | Noise = "logistic", scale: float = 1.0,
                    mode: str = "sample", generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Stochastic binary activation :math:`x = \operatorname{sign}(a - s z)` with the ST backward.

    Args:
        a: pre-activations (any floating dtype, any device).
        noise: ``"logistic"``, ``"uniform"`` or ``"gaussian"`` (see :mod:`stbin.estimators.noise`).
        scale: noise scale :math:`s > 0`.
        mode: ``"sample"`` (:math:`P(x=+1)=F(a/s)`), ``"mode"`` (:math:`\operatorname{sign}(a)`,
            sign(0)=+1) or ``"mean"`` (:math:`2F(a/s)-1`).
        generator: a ``torch.Generator`` on ``a``'s device for reproducible sampling.

    Returns:
        a tensor of ``a``'s shape and dtype; ±1 in ``sample``/``mode``, in [-1, 1] in ``mean``.

    Backward: :math:`\partial L/\partial a = \frac{2}{s}F'(a/s)\,\partial L/\partial x`.
    The input is never modified.
    """
    check_floating("a", a)
    nz = get_noise(noise)
    s = check_positive("scale", scale)
    check_choice("mode", mode, MODES)
    return StochasticSign.apply(a, nz, s, mode, generator)
