"""VGG-style networks for 32x32 (CIFAR) or 28x28 (MNIST-like, 1 channel) images.

* ``vgg11`` — VGG-11 (CIFAR variant: 8 convs 64-M-128-M-256-256-M-512-512-M-512-512-M, then
  a single FC to the classes), BN before each activation;
* ``binarynet_vgg`` — the BinaryNet CIFAR net (Courbariaux/Hubara et al. 2016):
  (2x128C3)-MP2-(2x256C3)-MP2-(2x512C3)-MP2-(2x1024FC)-10FC, all layers binary-weight
  (first and last too, as in BinaryNet; its defaults: ``activation="sign"``, ``proxy="htanh"``,
  ``weights="sign"``);
* ``sbn_conv`` — the all-binary conv net of the stochastic-binary-network experiments
  (Shekhovtsov & Yanush 2021 use this BinaryNet-like stack): the same layout with stochastic
  binary activations (``logistic`` noise) and Bernoulli weights in every hidden layer; the
  first conv and the last FC real-valued by default.

``width`` scales every channel count (small values for tests).
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from stbin.models.common import QuantSpec, make_activation, make_conv, make_linear, quant_kwargs
from stbin.models.registry import register_model

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
BINARYNET = (128, 128, "M", 256, 256, "M", 512, 512, "M")


def _features(q: QuantSpec, cfg: Sequence[Any], in_channels: int, width: float,
              bn_affine: bool = True) -> tuple[nn.Sequential, int, int]:
    layers: list[nn.Module] = []
    c, first, pools = in_channels, True, 0
    for i, v in enumerate(cfg):
        if v == "M":
            continue
        out = max(1, int(round(v * width)))
        layers.append(make_conv(q, c, out, 3, padding=1, binary=not first or q.binary_first))
        if i + 1 < len(cfg) and cfg[i + 1] == "M":  # pool before BN and activation
            layers.append(nn.MaxPool2d(2))
            pools += 1
        layers += [nn.BatchNorm2d(out, affine=bn_affine), make_activation(q)]
        c, first = out, False
    return nn.Sequential(*layers), c, pools


def _spatial(image_size: int, pools: int, model: str) -> int:
    s = image_size
    for _ in range(pools):
        s //= 2
    if s < 1:
        raise ValueError(f"{model} needs larger images than {image_size}x{image_size}")
    return s


@register_model("vgg11")
def vgg11(in_channels: int = 3, num_classes: int = 10, image_size: int = 32, width: float = 1.0,
          bn_affine: bool = True, **quant: Any) -> nn.Sequential:
    """VGG-11 (BN after each conv, before its activation); ``bn_affine=False``: batch norms
    without scale and shift (Yin et al.'s setting before each quantizer).

    Its five 2x2 poolings need at least 32x32 inputs: smaller images (MNIST's 1x28x28) are
    zero-padded to 32x32 by a ``nn.ZeroPad2d`` in front (zero = the dataset mean after
    normalisation), so the depth and the layers stay those of the CIFAR network.

    >>> import torch
    >>> vgg11(in_channels=1, image_size=28, width=0.125)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    q = quant_kwargs("vgg11", quant, ("in_channels", "num_classes", "image_size", "width", "bn_affine"))
    feats, c, pools = _features(q, VGG11, in_channels, width, bn_affine)
    need = 2 ** pools
    pad: list[nn.Module] = []
    if 0 < image_size < need:
        lo = (need - image_size) // 2
        pad = [nn.ZeroPad2d((lo, need - image_size - lo, lo, need - image_size - lo))]
        image_size = need
    s = _spatial(image_size, pools, "vgg11")
    return nn.Sequential(*pad, *feats, nn.Flatten(), make_linear(q, c * s * s, num_classes, binary=q.binary_last))


def _binarynet_like(name: str, q: QuantSpec, in_channels: int, num_classes: int, image_size: int,
                    width: float, fc: int) -> nn.Sequential:
    feats, c, pools = _features(q, BINARYNET, in_channels, width)
    s = _spatial(image_size, pools, name)
    f = max(1, int(round(fc * width)))
    return nn.Sequential(
        *feats, nn.Flatten(),
        make_linear(q, c * s * s, f, bias=False), nn.BatchNorm1d(f), make_activation(q),
        make_linear(q, f, f, bias=False), nn.BatchNorm1d(f), make_activation(q),
        make_linear(q, f, num_classes, binary=q.binary_last), nn.BatchNorm1d(num_classes),
    )


@register_model("binarynet_vgg")
def binarynet_vgg(in_channels: int = 3, num_classes: int = 10, image_size: int = 32, width: float = 1.0,
                  **quant: Any) -> nn.Sequential:
    q = quant_kwargs("binarynet_vgg", quant, ("in_channels", "num_classes", "image_size", "width"),
                     activation="sign", proxy="htanh", weights="sign", binary_first=True, binary_last=True)
    return _binarynet_like("binarynet_vgg", q, in_channels, num_classes, image_size, width, 1024)


@register_model("sbn_conv")
def sbn_conv(in_channels: int = 3, num_classes: int = 10, image_size: int = 32, width: float = 1.0,
             **quant: Any) -> nn.Sequential:
    q = quant_kwargs("sbn_conv", quant, ("in_channels", "num_classes", "image_size", "width"),
                     activation="stochastic", weights="bernoulli")
    return _binarynet_like("sbn_conv", q, in_channels, num_classes, image_size, width, 1024)
