"""ResNet-20 for CIFAR (He et al. 2016, 3 stages of 3 basic blocks, 16/32/64 channels).

Block: ``act(BN(conv(act(BN(conv(x))))) + shortcut(x))``; the shortcut is the identity, or a
real-valued 1x1 conv + BN where the shape changes (downsampling shortcuts stay real-valued,
as usual in binary ResNets). The 3x3 convs of the blocks follow ``weights``; the stem conv
and the final FC are real-valued unless ``binary_first`` / ``binary_last``. ``bn_affine=False``:
every batch norm without scale and shift (Yin et al.'s setting: a plain normalisation before
each quantizer).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from stbin.models.common import QuantSpec, make_activation, make_conv, quant_kwargs, residual_stages
from stbin.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, q: QuantSpec, c_in: int, c_out: int, stride: int, bn_affine: bool = True) -> None:
        super().__init__()
        self.conv1 = make_conv(q, c_in, c_out, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(c_out, affine=bn_affine)
        self.act1 = make_activation(q)
        self.conv2 = make_conv(q, c_out, c_out, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(c_out, affine=bn_affine)
        self.act2 = make_activation(q)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out, affine=bn_affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(y)) + self.shortcut(x))


@register_model("resnet20")
def resnet20(in_channels: int = 3, num_classes: int = 10, image_size: int = 32, width: float = 1.0,
             blocks: int = 3, bn_affine: bool = True, **quant: Any) -> nn.Sequential:
    q = quant_kwargs("resnet20", quant, ("in_channels", "num_classes", "image_size", "width", "blocks", "bn_affine"))
    chans = [max(1, int(round(c * width))) for c in (16, 32, 64)]
    stem = [make_conv(q, in_channels, chans[0], 3, 1, 1, binary=q.binary_first),
            nn.BatchNorm2d(chans[0], affine=bn_affine), make_activation(q)]
    return residual_stages(q, stem, chans, blocks, lambda c, out, stride: BasicBlock(q, c, out, stride, bn_affine),
                           num_classes)
