r"""Heaviside (binarized ReLU) with a straight-through backward.

Forward: :math:`y = 1[x > 0] \in \{0, 1\}` (the binarized ReLU; 0 at x = 0; NaN for NaN).

Backward: :math:`\partial L/\partial x = \mu'(x)\,\partial L/\partial y` with the STE mask
:math:`\mu'` of :mod:`stbin.estimators.ste`: ``identity`` (1), ``relu`` (:math:`1[x>0]`)
or ``clipped_relu`` (:math:`1[0<x<1]`, the default).

As a noise model: :math:`y = (1 + x_\pm)/2` where :math:`x_\pm` is a sign unit, so the
clipped backward on :math:`[0, 1]` is a (shifted) uniform-noise ST factor; Larq calls the
two-sided variant ``SteHeaviside``.

Reference: Yin et al., ICLR 2019 (binarized ReLU and its STEs).
"""

from __future__ import annotations

from typing import Any

import torch

from stbin._validation import check_floating
from stbin.estimators._common import scaled_grad, upcast
from stbin.estimators.ste import STES


class Heaviside(torch.autograd.Function):
    """Autograd Function of :func:`heaviside`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, ste: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.ste = ste
        out = (x > 0).to(x.dtype)
        return out.masked_fill_(torch.isnan(x), float("nan"))  # NaN propagates (see stbin.estimators)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        (x,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        mask = STES.get(ctx.ste)(upcast(x), 1.0)
        return scaled_grad(grad, mask), None


def heaviside(x: torch.Tensor, ste: str = "clipped_relu") -> torch.Tensor:
    """Binarized ReLU :math:`1[x>0]` with STE ``identity``, ``relu`` or ``clipped_relu``."""
    check_floating("x", x)
    STES.get(ste)
    return Heaviside.apply(x, ste)
