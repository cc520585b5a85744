r"""Bernoulli weights from latent weights, with the latent (mirror-descent) backward.

Forward (Shekhovtsov & Yanush, GCPR 2021, Sec. 4), with latent weight :math:`\theta`, noise CDF :math:`F`, scale
:math:`s_w > 0` and standard noise :math:`z`:

* ``mode="sample"``: :math:`w = \operatorname{sign}(\theta - s_w z)`, i.e.
  :math:`P(w=+1) = F(\theta/s_w)`;
* ``mode="mode"``: :math:`w = \operatorname{sign}(\theta)` (sign(0) = +1) — the deterministic
  binary weight of BinaryConnect / BinaryNet;
* ``mode="mean"``: :math:`w = \eta = 2F(\theta/s_w) - 1` (the expected weight).

A NaN latent weight gives a NaN weight in every mode (see :mod:`stbin.estimators`).

Backward: :math:`\partial L/\partial\theta := \partial L/\partial w` (identity). The
expected loss :math:`\mathbb{E}_w L(w)` is multilinear in :math:`\eta`, and
:math:`\partial L/\partial w_i` at the sampled :math:`w` is the ST estimate of
:math:`\partial \mathbb{E}L/\partial\eta_i`. Mirror descent over :math:`\eta\in[-1,1]^n` with
the mirror map whose gradient inverts :math:`\theta\mapsto 2F(\theta/s_w)-1` has
:math:`\theta` as its dual variable, so its step is exactly

.. math:: \theta \leftarrow \theta - \text{lr}\cdot \partial L/\partial w,

which any optimizer performs on the gradient this Function produces (projected onto
:math:`[-s_w, s_w]` for uniform noise, see :mod:`stbin.optim.latent`). The alternative,
plain SGD through the weight ST factor :math:`\frac{2}{s_w}F'(\theta/s_w)`, is applied by
:class:`stbin.optim.LatentWeightRule` with ``gradient="st"``.

Reference: Shekhovtsov & Yanush, GCPR 2021, Section 4 (latent weights as mirror descent).
"""

from __future__ import annotations

from typing import Any

import torch

from stbin._registry import check_choice
from stbin._validation import check_floating, check_positive
from stbin.estimators.sampling import noisy_sign
from stbin.estimators.noise import Noise, get_noise
from stbin.estimators.stochastic import MODES


class BernoulliWeight(torch.autograd.Function):
    """Autograd Function of :func:`bernoulli_weight` (identity backward)."""

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, noise: Noise, scale: float, mode: str,
                generator: torch.Generator | None) -> torch.Tensor:
        return noisy_sign(theta, noise, scale, mode, generator)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        return grad, None, None, None, None


def bernoulli_weight(theta: torch.Tensor, noise: str | Noise = "logistic", scale: float = 1.0,
                     mode: str = "sample", generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Binary weights :math:`w=\operatorname{sign}(\theta - s_w z)` whose gradient flows to :math:`\theta` unchanged."""
    check_floating("theta", theta)
    nz = get_noise(noise)
    s = check_positive("scale", scale)
    check_choice("mode", mode, MODES)
    return BernoulliWeight.apply(theta, nz, s, mode, generator)
