"""Bi-Real-style ResNet-18 for 32x32 inputs (Liu et al., "Bi-Real Net", ECCV 2018).

Every binary 3x3 convolution has its own real-valued shortcut: a block computes

    y = BN(conv(sign(x + b))) + shortcut(x)

where ``x + b`` is a learnable per-channel shift before the sign (the threshold of
ReActNet's RSign, Liu et al., ECCV 2020, eq. 3; :class:`ChannelShift`, initialised to 0) and
the real-valued trunk carries the sum from block to block. Four stages of ``convs``
binary convolutions (64/128/256/512 channels times ``width``; 4 per stage = the 16 binary
convolutions of ResNet-18) with stride 2 at the first convolution of stages 2-4.
Downsampling shortcuts are real-valued: ``shortcut="avgpool"`` (Bi-Real's: 2x2 average
pooling, 1x1 real conv, batch norm) or ``"zero_pad"`` (option A of He et al., CVPR 2016:
stride-2 subsampling and zero channels). Stem: a real 3x3 conv + BN (no pooling, 32x32
inputs); head: global average pooling and a real linear layer.

Binary settings (the defaults of the quantization arguments, see
:mod:`stbin.models.common`): deterministic sign activations and sign weights with a
per-channel ``mean_abs`` scale (Bi-Real's magnitude-aware weights); real first and last
layers. ``make_activation``'s other choices work too.

>>> import torch
>>> from stbin.models import build_model
>>> net = build_model("bireal_resnet18", width=0.125, num_classes=10).eval()
>>> net(torch.randn(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from stbin.models.common import QuantSpec, make_activation, make_conv, quant_kwargs, residual_stages
from stbin.models.registry import register_model

SHORTCUTS = ("avgpool", "zero_pad")


class ChannelShift(nn.Module):
    """Learnable per-channel shift ``y = x + b_c`` (b initialised to 0); before a sign it is RSign's threshold."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.view(1, -1, *([1] * (x.dim() - 2)))


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: ``x[:, :, ::stride, ::stride]`` with zero channels added (``before``, ``after``)."""

    def __init__(self, stride: int, before: int, after: int) -> None:
        super().__init__()
        self.stride, self.before, self.after = stride, before, after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(y, (0, 0, 0, 0, self.before, self.after))


class BiRealBlock(nn.Module):
    """``BN(conv(act(shift(x)))) + shortcut(x)`` (see the module docstring)."""

    def __init__(self, q: QuantSpec, c_in: int, c_out: int, stride: int, shortcut: str = "avgpool") -> None:
        super().__init__()
        self.shift = ChannelShift(c_in)
        self.act = make_activation(q)
        self.conv = make_conv(q, c_in, c_out, 3, stride, 1)
        self.bn = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            if shortcut == "avgpool":
                pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
                self.shortcut = nn.Sequential(pool, nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
            else:
                extra = c_out - c_in
                if extra < 0:
                    raise ValueError(f"shortcut='zero_pad' cannot reduce channels ({c_in} -> {c_out})")
                self.shortcut = ZeroPadShortcut(stride, extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.act(self.shift(x)))) + self.shortcut(x)


@register_model("bireal_resnet18")
def bireal_resnet18(in_channels: int = 3, num_classes: int = 10, width: float = 1.0, convs: int = 4,
                    shortcut: str = "avgpool", **quant: Any) -> nn.Sequential:
    own = ("in_channels", "num_classes", "width", "convs", "shortcut")
    q = quant_kwargs("bireal_resnet18", quant, own, activation="sign", weights="sign", channel_scale="mean_abs")
    for name, v in (("in_channels", in_channels), ("num_classes", num_classes), ("convs", convs)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"model argument {name} must be a positive integer, got {v!r}")
    if not isinstance(width, (int, float)) or isinstance(width, bool) or not width > 0:
        raise ValueError(f"model argument width must be a positive number, got {width!r}")
    if shortcut not in SHORTCUTS:
        raise ValueError(f"model argument shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
    chans = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
    stem = [nn.Conv2d(in_channels, chans[0], 3, 1, 1, bias=False), nn.BatchNorm2d(chans[0])]
    return residual_stages(q, stem, chans, convs, lambda c, out, stride: BiRealBlock(q, c, out, stride, shortcut),
                           num_classes)
