"""VGG-11 and ResNet-20 on 1-channel 28x28 images (MNIST-like): same depth as on CIFAR's 3x32x32."""

import pytest
import torch
from torch import nn

from stbin.models import build_model


def _convs(m: nn.Module) -> list[nn.Module]:
    return [x for x in m.modules() if isinstance(x, nn.Conv2d) and x.kernel_size == (3, 3)]


@pytest.mark.parametrize("name", ["vgg11", "resnet20"])
def test_grayscale_28x28_keeps_the_depth_of_the_cifar_network(name):
    kw = dict(width=0.125, activation="quant_relu", bits=2, ste="relu", weights="real", bn_affine=False)
    small = build_model(name, in_channels=1, image_size=28, **kw)
    cifar = build_model(name, in_channels=3, image_size=32, **kw)
    assert len(_convs(small)) == len(_convs(cifar)) == (8 if name == "vgg11" else 19)
    assert _convs(small)[0].in_channels == 1 and _convs(cifar)[0].in_channels == 3
    assert [c.out_channels for c in _convs(small)] == [c.out_channels for c in _convs(cifar)]
    x = torch.randn(4, 1, 28, 28, requires_grad=True)
    out = small(x)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_vgg11_zero_pads_28x28_to_32x32_and_only_then():
    m = build_model("vgg11", in_channels=1, image_size=28, width=0.125)
    assert isinstance(m[0], nn.ZeroPad2d) and m[0].padding == (2, 2, 2, 2)
    x = torch.randn(1, 1, 28, 28)
    assert m[0](x).shape == (1, 1, 32, 32) and torch.equal(m[0](x)[..., 2:30, 2:30], x)
    assert m[0](x)[..., :2, :].abs().sum() == 0
    assert not isinstance(build_model("vgg11", in_channels=3, image_size=32, width=0.125)[0], nn.ZeroPad2d)
    odd = build_model("vgg11", in_channels=1, image_size=27, width=0.125)
    assert odd(torch.randn(2, 1, 27, 27)).shape == (2, 10)
