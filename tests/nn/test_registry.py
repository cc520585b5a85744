"""The registry of binary module types, declared precision, and the weight_scale rename."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from stbin.models.common import QuantSpec, activation_names, make_activation, quant_kwargs
from stbin.nn import (BINARY_MODULES, BinaryConv2d, BinaryLinear, BinaryModule, BinaryWeightLayer, Precision,
                      StochasticSign, precision_of, register_binary_module, stochastic_modules)
from stbin.optim import split_parameters

ACTIVATIONS = BINARY_MODULES.names(kind="activation")
LAYERS = BINARY_MODULES.names(kind="weight_layer")


def test_registry_holds_every_public_module_type():
    assert set(ACTIVATIONS) >= {"stochastic", "sign", "heaviside", "quant_relu"}
    assert set(LAYERS) == {"binary_linear", "binary_conv2d"}
    assert BINARY_MODULES.get("binary_linear").replaces == (nn.Linear,)
    assert BINARY_MODULES.get("binary_conv2d").replaces == (nn.Conv2d,)
    assert issubclass(BinaryLinear, BinaryWeightLayer) and issubclass(BinaryConv2d, BinaryWeightLayer)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_output_matches_declared_precision(name):
    entry = BINARY_MODULES.get(name)
    m = entry.build().eval()
    assert m.precision == entry.precision() == precision_of(m)
    p = m.precision
    assert p.weight_bits is None
    x = torch.linspace(-3, 3, 101)
    y = m(x)
    levels = torch.unique(y)
    assert len(levels) <= 2 ** p.output_bits
    if p.output_bits == 1:
        expected = {-1.0, 1.0} if p.output_signed else {0.0, 1.0}
        assert set(levels.tolist()) == expected
    else:
        assert float(y.min()) >= 0.0  # unsigned few-bit levels


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_is_buildable_from_model_options(name):
    assert name in activation_names()
    m = make_activation(QuantSpec(activation=name))
    assert type(m) is BINARY_MODULES.get(name).cls


def test_precision_follows_options_and_input_quantizer():
    assert BINARY_MODULES.get("quant_relu").precision(bits=4).output_bits == 4
    layer = BinaryLinear(3, 2)
    assert layer.precision == Precision(weight_bits=1, input_bits=None)
    layer = BinaryLinear(3, 2, input_quantizer=StochasticSign())
    assert layer.precision.input_bits == 1 and layer.precision.weight_bits == 1
    assert precision_of(nn.Linear(2, 2)) is None


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown option of stochastic 'nosie' \(did you mean 'noise'\?\)"):
        BINARY_MODULES.get("stochastic").build(nosie="uniform")
    with pytest.raises(ValueError, match="valid: .*binary_conv2d"):
        BINARY_MODULES.get("binary_conv")


def test_stochastic_flag_drives_eval_modes():
    net = nn.Sequential(BinaryLinear(3, 3, weights="sign"), StochasticSign(), BinaryLinear(3, 2))
    assert stochastic_modules(net) == [net[1], net[2]]


def test_registering_a_new_activation_from_a_test_file():
    @register_binary_module("_test_ternary", "activation")
    class Ternary(BinaryModule):
        """Ternary activation: sign with a dead zone."""

        OPTIONS = ("delta",)

        def __init__(self, delta: float = 0.5) -> None:
            super().__init__()
            self.delta = delta

        @staticmethod
        def precision_for(**options: object) -> Precision:
            return Precision(output_bits=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sign(x) * (x.abs() > self.delta)

    try:
        assert "_test_ternary" in activation_names()
        m = make_activation(QuantSpec(activation="_test_ternary"))
        assert isinstance(m, Ternary) and m.precision.output_bits == 2
        assert not QuantSpec(activation="_test_ternary").binary_activation
    finally:
        BINARY_MODULES._items.pop("_test_ternary")
    with pytest.raises(TypeError, match="BinaryModule"):
        register_binary_module("_x", "activation")(nn.ReLU)


def test_weight_scale_constructor_alias_is_deprecated():
    with pytest.warns(DeprecationWarning, match="weight_noise_scale"):
        layer = BinaryLinear(3, 2, weight_scale=0.25)
    assert layer.weight_noise_scale == 0.25
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="disagrees"):
        BinaryConv2d(1, 2, 3, weight_scale=0.25, weight_noise_scale=0.5)
    with pytest.warns(DeprecationWarning):
        q = quant_kwargs("mlp", {"weight_scale": 0.1})
    assert q.weight_noise_scale == 0.1


def test_learned_channel_scale_has_its_own_name_and_old_alias_warns():
    layer = BinaryLinear(4, 3, channel_scale="learned")
    assert "learned_channel_scale" in dict(layer.named_parameters())
    with pytest.warns(DeprecationWarning):
        assert layer.weight_scale is layer.learned_channel_scale
    latent, other = split_parameters(layer)
    assert [p.shape for p in latent] == [(3, 4)]
    assert layer.learned_channel_scale in other


def test_old_state_dict_with_weight_scale_key_loads():
    src = nn.Sequential(BinaryConv2d(2, 3, 3, channel_scale="learned"))
    with torch.no_grad():
        src[0].learned_channel_scale.copy_(torch.tensor([0.5, 2.0, -1.0]))
    old = {k.replace("learned_channel_scale", "weight_scale"): v for k, v in src.state_dict().items()}
    assert "0.weight_scale" in old
    dst = nn.Sequential(BinaryConv2d(2, 3, 3, channel_scale="learned"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dst.load_state_dict(old)
    assert torch.equal(dst[0].learned_channel_scale, src[0].learned_channel_scale)
    assert torch.equal(dst[0].latent_weight, src[0].latent_weight)


def test_old_checkpoint_model_options_rebuild():
    from stbin.models import build_model
    with pytest.warns(DeprecationWarning):
        net = build_model("mlp", in_features=4, hidden=[3], weight_scale=0.2, binary_first=True)
    assert [m.weight_noise_scale for m in net.modules() if isinstance(m, BinaryWeightLayer)] == [0.2]
    with pytest.warns(DeprecationWarning):
        net = build_model("sbn_mlp", in_features=4, hidden=[3, 3], weight_scale=0.3)
    assert [m.weight_noise_scale for m in net.modules() if isinstance(m, BinaryWeightLayer)] == [0.3]


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv_padding_modes_match_torch(mode):
    torch.manual_seed(0)
    ref = nn.Conv2d(2, 3, 3, padding=1, padding_mode=mode)
    b = BinaryConv2d(2, 3, 3, padding=1, padding_mode=mode, weights="sign")
    with torch.no_grad():
        ref.weight.copy_(b.binary_weight())
        ref.bias.copy_(b.bias)
    x = torch.randn(2, 2, 6, 5)
    torch.testing.assert_close(b(x), ref(x))
    ref = nn.Conv2d(2, 3, (3, 2), padding="same", dilation=2, padding_mode=mode)
    b = BinaryConv2d(2, 3, (3, 2), padding="same", dilation=2, padding_mode=mode, weights="sign")
    with torch.no_grad():
        ref.weight.copy_(b.binary_weight())
        ref.bias.copy_(b.bias)
    torch.testing.assert_close(b(x), ref(x))


def test_every_nn_module_file_is_imported_so_a_new_file_registers_itself():
    import pkgutil
    import sys

    import stbin.nn

    names = [i.name for i in pkgutil.iter_modules(stbin.nn.__path__)]
    assert "activations" in names and "binary" in names
    assert all(f"stbin.nn.{n}" in sys.modules for n in names)
