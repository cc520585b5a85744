"""LeNet-5 with batch norm before each activation, any quantization.

::

    Conv(in, 6, 5, pad 2) -> MaxPool2 -> BN -> act
    Conv(6, 16, 5)        -> MaxPool2 -> BN -> act
    FC(16*s*s, 120) -> BN -> act -> FC(120, 84) -> BN -> act -> FC(84, classes)

Pooling comes before BN and the activation (so it pools real pre-activations, as binary
networks do). ``bn_affine=False``: batch norms without scale and shift (Yin et al.'s setting
before a fixed-alpha quantized ReLU). First conv and last FC real-valued unless ``binary_first`` / ``binary_last``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from stbin.models.common import make_activation, make_conv, make_linear, quant_kwargs
from stbin.models.registry import register_model


@register_model("lenet5")
def lenet5(in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: float = 1.0,
           bn_affine: bool = True, **quant: Any) -> nn.Sequential:
    """LeNet-5 (see the module docstring) with the quantization given by ``quant``.

    Args:
        in_channels: channels of the input images.
        num_classes: the number of outputs.
        image_size: the side of the square input images (at least 12).
        width: multiplies every layer's width (6, 16, 120, 84), at least 1 unit each.
        bn_affine: whether the batch norms learn a scale and shift.
        **quant: the arguments of :class:`stbin.models.common.QuantSpec`.

    Shape:
        input (N, in_channels, image_size, image_size); output (N, num_classes).

    >>> import torch
    >>> net = lenet5(image_size=12, width=0.5, activation="heaviside", weights="sign")
    >>> net(torch.randn(2, 1, 12, 12)).shape
    torch.Size([2, 10])
    """
    q = quant_kwargs("lenet5", quant, ("in_channels", "num_classes", "image_size", "width", "bn_affine"))
    c1, c2, f1, f2 = (max(1, int(round(c * width))) for c in (6, 16, 120, 84))
    s = (image_size // 2 - 4) // 2
    if s < 1:
        raise ValueError(f"lenet5 needs images of at least 12x12, got {image_size}")
    return nn.Sequential(
        make_conv(q, in_channels, c1, 5, padding=2, binary=q.binary_first), nn.MaxPool2d(2), nn.BatchNorm2d(c1, affine=bn_affine),
        make_activation(q),
        make_conv(q, c1, c2, 5), nn.MaxPool2d(2), nn.BatchNorm2d(c2, affine=bn_affine), make_activation(q),
        nn.Flatten(),
        make_linear(q, c2 * s * s, f1, bias=False), nn.BatchNorm1d(f1, affine=bn_affine), make_activation(q),
        make_linear(q, f1, f2, bias=False), nn.BatchNorm1d(f2, affine=bn_affine), make_activation(q),
        make_linear(q, f2, num_classes, binary=q.binary_last),
    )
