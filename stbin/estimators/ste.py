r"""Straight-through estimators for activation-quantized ReLU networks (Yin et al., ICLR 2019).

A quantized activation :math:`\sigma` (the binarized ReLU :math:`1[x>0]` or a b-bit
quantized ReLU) has zero derivative almost everywhere. A *coarse gradient* replaces
:math:`\sigma'` by the derivative of a surrogate :math:`\mu` in the backward pass:

================  ====================  =========================================
STE               surrogate :math:`\mu`   backward mask :math:`\mu'(x)`
================  ====================  =========================================
``identity``      :math:`x`               :math:`1`
``relu``          :math:`\max(x, 0)`      :math:`1[x > 0]`
``clipped_relu``  :math:`\min(\max(x,0), u)`  :math:`1[0 < x < u]`
================  ====================  =========================================

with :math:`u = 1` for the binarized ReLU and :math:`u = (2^b-1)\alpha` for the b-bit
quantized ReLU of resolution :math:`\alpha`. Yin et al. prove that the ReLU and clipped-ReLU
coarse gradients are descent directions of the population loss of the two-layer model
while the identity STE is not (it is repelled from the spurious minima and unstable in
deep networks).

Reference: P. Yin, J. Lyu, S. Zhang, S. Osher, Y. Qi, J. Xin, "Understanding
Straight-Through Estimator in Training Activation Quantized Neural Nets", ICLR 2019.
"""

from __future__ import annotations

from typing import Callable

import torch

from stbin._registry import Registry

Mask = Callable[[torch.Tensor, float], torch.Tensor]

STES: Registry[Mask] = Registry("STE")


@STES.register("identity")
def _identity(x: torch.Tensor, upper: float) -> torch.Tensor:
    return torch.ones_like(x)


@STES.register("relu")
def _relu(x: torch.Tensor, upper: float) -> torch.Tensor:
    return (x > 0).to(x.dtype)


@STES.register("clipped_relu")
def _clipped_relu(x: torch.Tensor, upper: float) -> torch.Tensor:
    return ((x > 0) & (x < upper)).to(x.dtype)


def ste_mask(ste: str, x: torch.Tensor, upper: float) -> torch.Tensor:
    """The backward mask :math:`\\mu'(x)` of the STE named ``ste`` with clip ``upper``."""
    return STES.get(ste)(x, upper)
