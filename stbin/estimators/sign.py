r"""Deterministic sign with a choice of straight-through backward proxies.

Forward: :math:`\operatorname{sign}(x) \in \{-1,+1\}` with :math:`\operatorname{sign}(0)=+1`
(also for -0.0) and NaN for NaN (the library's NaN policy, see :mod:`stbin.estimators`).

Backward: :math:`\partial L/\partial x = \rho'(x)\,\partial L/\partial y` for the proxy
:math:`\rho` chosen by name:

=============  ============================================================  ==========================
proxy          backward factor :math:`\rho'(x)`                              noise it corresponds to
=============  ============================================================  ==========================
``identity``   :math:`1`                                                      none (limit of uniform noise
                                                                              of growing scale, rescaled)
``htanh``      :math:`1[|x| \le c]` (``clip`` = c, default 1)                 uniform, s = c (factor times c)
``tanh``       :math:`1 - \tanh^2(x)`                                         logistic, s = 1/2
``approx_sign`` :math:`(2 - 2|x|)\,1[|x| \le 1]` (Bi-Real Net)               none (piecewise-quadratic proxy)
``swish_sign`` :math:`\beta(2 - \beta x\tanh(\beta x/2)) / (1+\cosh(\beta x))`  none (derivative of SignSwish)
=============  ============================================================  ==========================

``htanh`` with ``clip=1`` is BinaryNet's straight-through estimator and equals the
principled ST factor of uniform noise with scale 1 applied at the mode
(:func:`stbin.estimators.stochastic_sign` with ``noise="uniform", mode="mode"``); ``tanh``
equals the logistic-noise factor with scale 1/2 at the mode. For a general clip value the
factor follows Larq's convention (a mask without the 1/c normalisation).

References: Courbariaux et al., "Binarized Neural Networks", 2016 (htanh); Liu et al.,
"Bi-Real Net", ECCV 2018 (ApproxSign); Darabi et al., "BNN+", 2018 (SwishSign);
Shekhovtsov & Yanush, GCPR 2021 (noise correspondence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from stbin._registry import Registry
from stbin._validation import check_floating, check_positive
from stbin.estimators._common import scaled_grad, upcast
from stbin.estimators._elementwise import htanh_grad, sign_pm1


@dataclass(frozen=True)
class SignProxy:
    """A backward proxy of the sign: ``factor(x, clip, beta)`` is :math:`\\rho'(x)`.

    ``fused(grad, x, clip, beta)``, when given, computes ``grad * factor(x, ...)`` in one
    pass where it can and returns None elsewhere (the backward then multiplies by ``factor``).
    """

    name: str
    factor: Callable[[torch.Tensor, float, float], torch.Tensor]
    noise: str
    fused: Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor | None] | None = None


def _identity(x: torch.Tensor, clip: float, beta: float) -> torch.Tensor:
    return torch.ones_like(x)


def _htanh(x: torch.Tensor, clip: float, beta: float) -> torch.Tensor:
    return (x.abs() <= clip).to(x.dtype)


def _tanh(x: torch.Tensor, clip: float, beta: float) -> torch.Tensor:
    t = torch.tanh(x)
    return 1.0 - t * t


def _approx_sign(x: torch.Tensor, clip: float, beta: float) -> torch.Tensor:
    return (2.0 - 2.0 * x.abs()).clamp_min(0.0)


def _swish_sign(x: torch.Tensor, clip: float, beta: float) -> torch.Tensor:
    bx = beta * x
    # cosh overflows to inf for large |bx|: the factor then correctly underflows to 0.
    return beta * (2.0 - bx * torch.tanh(0.5 * bx)) / (1.0 + torch.cosh(bx))


SIGN_PROXIES: Registry[SignProxy] = Registry("sign proxy")
SIGN_PROXIES.register("identity", SignProxy("identity", _identity, "none (limit of wide uniform noise)"))
SIGN_PROXIES.register("htanh", SignProxy("htanh", _htanh, "uniform, scale = clip",
                                         lambda g, x, clip, beta: htanh_grad(g, x, clip)))
SIGN_PROXIES.register("tanh", SignProxy("tanh", _tanh, "logistic, scale = 1/2"))
SIGN_PROXIES.register("approx_sign", SignProxy("approx_sign", _approx_sign, "none"))
SIGN_PROXIES.register("swish_sign", SignProxy("swish_sign", _swish_sign, "none"))


class Sign(torch.autograd.Function):
    """Autograd Function of :func:`sign`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, proxy: SignProxy, clip: float, beta: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.proxy, ctx.clip, ctx.beta = proxy, clip, beta
        return sign_pm1(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        (x,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        if ctx.proxy.name == "identity":
            return grad.clone(), None, None, None
        if ctx.proxy.fused is not None:
            out = ctx.proxy.fused(grad, x, ctx.clip, ctx.beta)
            if out is not None:
                return out, None, None, None
        factor = ctx.proxy.factor(upcast(x), ctx.clip, ctx.beta)
        return scaled_grad(grad, factor), None, None, None


def sign(x: torch.Tensor, proxy: str = "htanh", clip: float = 1.0, beta: float = 5.0) -> torch.Tensor:
    r"""Deterministic sign (sign(0) = +1) with a straight-through backward proxy.

    Args:
        x: input tensor (floating).
        proxy: one of ``identity``, ``htanh``, ``tanh``, ``approx_sign``, ``swish_sign``.
        clip: the clip value of ``htanh`` (gradient passes where :math:`|x| \le` clip).
        beta: the slope of ``swish_sign``.

    See the module docstring for each backward factor and the noise it corresponds to.
    """
    check_floating("x", x)
    p = SIGN_PROXIES.get(proxy)
    c = check_positive("clip", clip)
    b = check_positive("beta", beta)
    return Sign.apply(x, p, c, b)
