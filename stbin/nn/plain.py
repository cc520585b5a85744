r"""Plain-PyTorch equivalents of the binary modules in ``mode`` (for ONNX and other exporters).

Each registered :class:`~stbin.nn.BinaryModule` returns from ``mode_module()`` a module
made of standard tensor operations only, computing exactly what the module computes in
evaluation with ``eval_mode="mode"``:

* :class:`PlusMinusSign` — :math:`\operatorname{sign}(x)` with sign(0) = +1, as
  ``where(x >= 0, 1, -1)`` (ONNX ``GreaterOrEqual`` + ``Where``; ONNX ``Sign`` would give 0);
* :class:`Step` — :math:`1[x > 0]` (``Greater`` + ``Where``);
* :class:`UniformQuantReLU` — :math:`\alpha \min(\lfloor x/\alpha + 1/2\rfloor_+, 2^b-1)`
  (``Div``, ``Add``, ``Floor``, ``Clip``, ``Mul``);
* binary-weight layers become ``nn.Linear`` / ``nn.Conv2d`` whose weights are the ±1
  constants :math:`\operatorname{sign}(\theta)` times the channel scale, after their input
  quantizer's equivalent.

>>> PlusMinusSign()(torch.tensor([-0.0, 0.0, -1e-30, 3.0]))
tensor([ 1.,  1., -1.,  1.])
"""

from __future__ import annotations

import torch
from torch import nn


class PlusMinusSign(nn.Module):
    """sign(x) in {-1, +1} with sign(0) = +1, from standard ops."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        one = torch.ones((), dtype=x.dtype, device=x.device)
        return torch.where(x >= 0, one, -one)


class Step(nn.Module):
    """1[x > 0] in {0, 1}, from standard ops."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        one = torch.ones((), dtype=x.dtype, device=x.device)
        return torch.where(x > 0, one, torch.zeros_like(one))


class UniformQuantReLU(nn.Module):
    """alpha * clip(floor(x / alpha + 1/2), 0, 2^bits - 1), from standard ops."""

    def __init__(self, bits: int, alpha: float) -> None:
        super().__init__()
        self.bits, self.alpha = int(bits), float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = torch.floor(x / self.alpha + 0.5).clamp(0.0, float(2 ** self.bits - 1))
        return levels * self.alpha

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={self.alpha:.6g}"
