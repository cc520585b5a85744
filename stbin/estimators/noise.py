r"""Noise families of stochastic binary units (Shekhovtsov & Yanush, GCPR 2021).

A stochastic binary unit with pre-activation :math:`a` and noise scale :math:`s > 0` emits

.. math::  x = \operatorname{sign}(a - s z), \qquad z \sim \text{noise with CDF } F,

so :math:`P(x=+1 \mid a) = F(a/s)` and :math:`\mathbb{E}[x] = 2F(a/s) - 1`.

=========  =============================  =====================  ================================
noise      :math:`F(t)`                   mean proxy             ST factor :math:`\tfrac{2}{s}F'(a/s)`
=========  =============================  =====================  ================================
logistic   :math:`\sigma(t)`              :math:`\tanh(a/2s)`    :math:`\tfrac{2}{s}\sigma(t)(1-\sigma(t))`
uniform    :math:`\mathrm{clip}((t+1)/2,0,1)`  :math:`\mathrm{clip}(a/s,-1,1)`  :math:`\tfrac{1}{s}1[|a|\le s]`
gaussian   :math:`\Phi(t)`                :math:`\mathrm{erf}(a/(s\sqrt2))`  :math:`\tfrac{2}{s}\varphi(a/s)`
=========  =============================  =====================  ================================

Each family is a :class:`Noise` with vectorised ``cdf``, ``pdf``, ``mean`` (the proxy
:math:`2F(t)-1`), ``st_factor`` and an inverse ``mean_inverse`` (the mirror map's dual
coordinate of mirror descent). Functions take and return tensors and compute in the tensor's dtype
(callers upcast half types; see :func:`stbin._validation.compute_dtype`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from stbin._registry import Registry

Fn = Callable[[torch.Tensor], torch.Tensor]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Noise:
    """A standard symmetric noise distribution with CDF ``cdf`` and density ``pdf``.

    ``mean(t) = 2 F(t) - 1``; ``mean_inverse(m)`` solves ``2F(t) - 1 = m`` (on the open
    interval where it is invertible); ``bounded`` says whether the support is bounded
    (uniform noise), in which case mirror descent projects the latent weight on
    ``[-s, s]``.
    """

    name: str
    cdf: Fn
    pdf: Fn
    mean: Fn
    mean_inverse: Fn
    bounded: bool
    description: str

    def st_factor(self, a: torch.Tensor, scale: float) -> torch.Tensor:
        r"""The ST factor :math:`\frac{2}{s} F'(a/s)` = derivative of the mean proxy."""
        return (2.0 / scale) * self.pdf(a / scale)

    def prob_plus(self, a: torch.Tensor, scale: float) -> torch.Tensor:
        """P(x = +1 | a) = F(a / s)."""
        return self.cdf(a / scale)

    def sample_z(self, shape: torch.Size | tuple[int, ...], *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """Draw standard noise z with CDF F by inverse-CDF sampling of a uniform variate.

        ``torch.rand`` returns multiples of the grid step d = eps/2 on [0, 1), 0 included.
        The symmetric variate m = (1 - d) - 2u takes the odd multiples of d in (-1, 1) —
        exactly representable, symmetric around 0, never ±1 — so z = -mean_inverse(m) is
        always finite (u = 0 with m = 1 - 2u would give z = -inf for unbounded noises).
        """
        u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
        m = u.mul_(-2.0).add_(1.0 - torch.finfo(u.dtype).eps / 2)
        return -self.mean_inverse(m)

    def __repr__(self) -> str:
        return f"Noise({self.name!r})"


def _logistic_pdf(t: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(t)
    return s * (1.0 - s)


def _logistic_mean_inverse(m: torch.Tensor) -> torch.Tensor:
    # 2 sigma(t) - 1 = tanh(t/2)  =>  t = 2 atanh(m)
    return 2.0 * torch.atanh(m)


def _uniform_cdf(t: torch.Tensor) -> torch.Tensor:
    return ((t + 1.0) * 0.5).clamp(0.0, 1.0)


def _uniform_pdf(t: torch.Tensor) -> torch.Tensor:
    return (t.abs() <= 1.0).to(t.dtype) * 0.5


def _gaussian_cdf(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(t / _SQRT2))


def _gaussian_pdf(t: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * t * t) * _INV_SQRT_2PI


def _gaussian_mean_inverse(m: torch.Tensor) -> torch.Tensor:
    return _SQRT2 * torch.erfinv(m)


NOISES: Registry[Noise] = Registry("noise")


def _register(name: str, cdf: Fn, pdf: Fn, mean: Fn, mean_inverse: Fn, bounded: bool, description: str) -> None:
    NOISES.register(name, Noise(name, cdf, pdf, mean, mean_inverse, bounded, description))


# One row per family, its closed forms in the columns of the table in the module docstring:
#         name        F(t)           F'(t)           mean proxy 2F(t) - 1               its inverse             bounded
_register("logistic", torch.sigmoid, _logistic_pdf, lambda t: torch.tanh(0.5 * t), _logistic_mean_inverse, False,
          "logistic noise: F = sigmoid, mean proxy tanh(a/(2s))")
_register("uniform", _uniform_cdf, _uniform_pdf, lambda t: t.clamp(-1.0, 1.0), lambda m: m.clone(), True,
          "uniform noise on [-1, 1]: F = clip((t+1)/2, 0, 1), mean proxy hardtanh(a/s)")
_register("gaussian", _gaussian_cdf, _gaussian_pdf, lambda t: torch.erf(t / _SQRT2), _gaussian_mean_inverse, False,
          "standard normal noise: F = Phi, mean proxy erf(a/(s sqrt 2))")


def get_noise(noise: str | Noise) -> Noise:
    """Look a noise family up by name (a :class:`Noise` passes through)."""
    if isinstance(noise, Noise):
        return noise
    return NOISES.get(noise)
