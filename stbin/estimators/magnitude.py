r"""Magnitude-aware sign for weights (XNOR-Net / Bi-Real style per-channel scaling).

Forward, for a weight tensor :math:`W` whose output channels run along ``dim`` (0 for
``nn.Linear`` and ``nn.Conv2d`` weights):

.. math:: \hat W_{c} = \alpha_c \operatorname{sign}(W_c), \qquad
          \alpha_c = \operatorname{mean}|W_c| \ \text{(over all entries of channel c)},

with :math:`\operatorname{sign}(0) = +1`.

Backward (the scale is treated as a constant, as in Larq's ``MagnitudeAwareSign``):

.. math:: \partial L/\partial W_c = \alpha_c\, 1[|W_c| \le \text{clip}]\; \partial L/\partial \hat W_c.

In noise terms this is the uniform-noise ST factor (scale = clip, up to the factor clip)
at the mode, times the channel scale. References: Rastegari et al., "XNOR-Net", ECCV 2016;
Liu et al., "Bi-Real Net", ECCV 2018.
"""

from __future__ import annotations

from typing import Any

import torch

from stbin._validation import check_floating, check_positive
from stbin.estimators._common import scaled_grad, upcast
from stbin.estimators._elementwise import sign_pm1


def channel_mean_abs(w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Per-channel mean |w| along ``dim``, shaped to broadcast against ``w``."""
    dims = [d for d in range(w.dim()) if d != dim % max(w.dim(), 1)]
    if not dims:
        return w.abs()
    return w.abs().mean(dim=dims, keepdim=True)


class MagnitudeAwareSign(torch.autograd.Function):
    """Autograd Function of :func:`magnitude_aware_sign`."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, clip: float, dim: int) -> torch.Tensor:
        scale = channel_mean_abs(upcast(w), dim)
        ctx.save_for_backward(w, scale)
        ctx.clip = clip
        return (sign_pm1(w, scale.dtype) * scale).to(w.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        w, scale = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        factor = (upcast(w).abs() <= ctx.clip).to(scale.dtype) * scale
        return scaled_grad(grad, factor), None, None


def magnitude_aware_sign(w: torch.Tensor, clip: float = 1.0, dim: int = 0) -> torch.Tensor:
    """Per-output-channel scaled sign of a weight tensor (see the module docstring)."""
    check_floating("w", w)
    c = check_positive("clip", clip)
    if w.dim() == 0:
        raise ValueError("magnitude_aware_sign expects a weight tensor with at least 1 dimension, got a scalar")
    if not -w.dim() <= dim < w.dim():
        raise ValueError(f"dim={dim} is out of range for a weight of shape {tuple(w.shape)}")
    return MagnitudeAwareSign.apply(w, c, dim)
