"""Models: every registered model builds, runs forward/backward, and follows the quantization arguments."""

import pytest
import torch
from torch import nn

from stbin.models import MODELS, build_model
from stbin.nn import BinaryConv2d, BinaryLinear, Sign, StochasticSign, stochastic_modules
from stbin.optim import LatentWeightRule

SMALL = {
    "sbn_mlp": ({"in_features": 64, "hidden": (16, 16)}, (1, 8, 8)),
    "mlp": ({"in_features": 64, "hidden": (16, 16)}, (1, 8, 8)),
    "lenet5": ({"in_channels": 1, "image_size": 28, "width": 0.5}, (1, 28, 28)),
    "vgg11": ({"width": 1 / 16}, (3, 32, 32)),
    "binarynet_vgg": ({"width": 1 / 32}, (3, 32, 32)),
    "sbn_conv": ({"width": 1 / 32}, (3, 32, 32)),
    "resnet20": ({"width": 0.25}, (3, 32, 32)),
    "bireal_resnet18": ({"width": 1 / 16, "convs": 1}, (3, 32, 32)),
}


def binary_layers(m):
    return [x for x in m.modules() if isinstance(x, (BinaryLinear, BinaryConv2d))]


def weight_layers(m):
    return [x for x in m.modules() if isinstance(x, (nn.Linear, nn.Conv2d, BinaryLinear, BinaryConv2d))]


def test_every_registered_model_is_covered():
    assert set(MODELS.names()) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_backward_and_latent_rule(name):
    torch.manual_seed(0)
    kw, shape = SMALL[name]
    m = build_model(name, **kw)
    x = torch.randn(4, *shape)
    out = m(x)
    assert out.shape == (4, 10)
    out.logsumexp(-1).sum().backward()
    assert binary_layers(m), "hidden layers are binary by default"
    assert all(layer.latent_weight.grad is not None for layer in binary_layers(m))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    LatentWeightRule(m).attach(opt)
    opt.step()
    m.eval()
    assert m(x).shape == (4, 10)


@pytest.mark.parametrize("name", ["mlp", "lenet5", "vgg11", "sbn_conv", "resnet20"])
def test_first_and_last_layers_real_unless_asked(name):
    kw, shape = SMALL[name]
    layers = weight_layers(build_model(name, **kw))
    assert not isinstance(layers[0], (BinaryLinear, BinaryConv2d))
    assert not isinstance(layers[-1], (BinaryLinear, BinaryConv2d))
    layers = weight_layers(build_model(name, binary_first=True, binary_last=True, **kw))
    assert isinstance(layers[0], (BinaryLinear, BinaryConv2d)) and isinstance(layers[-1], (BinaryLinear, BinaryConv2d))


def test_binarynet_is_all_binary_with_sign_units():
    m = build_model("binarynet_vgg", width=1 / 32)
    layers = weight_layers(m)
    assert all(isinstance(x, (BinaryLinear, BinaryConv2d)) and x.weights == "sign" for x in layers)
    assert any(isinstance(x, Sign) for x in m.modules()) and not stochastic_modules(m)


@pytest.mark.parametrize("name", ["mlp", "lenet5", "resnet20"])
def test_quantization_arguments_reach_the_layers(name):
    kw, shape = SMALL[name]
    m = build_model(name, activation="stochastic", noise="uniform", scale=0.5, weights="bernoulli",
                    weight_noise="gaussian", weight_noise_scale=2.0, **kw)
    units = [x for x in m.modules() if isinstance(x, StochasticSign)]
    assert units and all(u.noise == "uniform" and u.scale == 0.5 for u in units)
    assert all(b.weight_noise == "gaussian" and b.weight_noise_scale == 2.0 for b in binary_layers(m))
    twin = build_model(name, activation="relu", weights="real", **kw)
    assert not binary_layers(twin) and not stochastic_modules(twin)
    assert any(isinstance(x, nn.ReLU) for x in twin.modules())
    q = build_model(name, activation="quant_relu", bits=2, weights="sign", **kw)
    assert all(b.weights == "sign" for b in binary_layers(q))
    q(torch.randn(2, *shape)).sum().backward()


def test_lenet_has_batch_norm_before_each_activation():
    m = build_model("lenet5")
    mods = list(m)
    units = [i for i, x in enumerate(mods) if isinstance(x, StochasticSign)]
    assert len(units) == 4  # two conv and two hidden linear layers
    assert all(isinstance(mods[i - 1], (nn.BatchNorm1d, nn.BatchNorm2d)) for i in units)


@pytest.mark.parametrize("name", ["lenet5", "vgg11", "resnet20"])
def test_bn_affine_false_removes_every_batch_norm_scale_and_shift(name):
    """Yin et al.'s setting (ICLR 2019, their experiments): a plain normalisation before each quantizer."""
    kw, shape = SMALL[name]
    for affine in (True, False):
        m = build_model(name, activation="quant_relu", weights="real", bn_affine=affine, **kw)
        bns = [x for x in m.modules() if isinstance(x, nn.modules.batchnorm._BatchNorm)]
        assert bns and all(b.affine is affine for b in bns)
        out = m(torch.randn(4, *shape))
        assert out.shape == (4, 10)


@pytest.mark.parametrize("bad, message", [
    ({"activaton": "sign"}, "did you mean 'activation'"),
    ({"activation": "swish"}, "unknown activation 'swish'"),
    ({"noise": "gauss"}, "unknown noise 'gauss'"),
    ({"weights": "ternary"}, "unknown weights 'ternary'"),
])
def test_bad_arguments_raise_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        build_model("mlp", **bad)


def test_images_too_small_for_lenet():
    with pytest.raises(ValueError, match="at least 12x12"):
        build_model("lenet5", image_size=8)
