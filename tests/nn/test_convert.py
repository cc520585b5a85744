"""stbin.nn.binarize: conversion of any float model, policy by execution order, report."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stbin.nn import (BINARY_MODULES, BinaryConv2d, BinaryLinear, Heaviside, QuantReLU, Sign, StochasticSign,
                      binarize)


class Reversed(nn.Module):
    """Modules registered in the reverse of their execution order."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8, 3)
        self.mid = nn.Linear(8, 8)
        self.act = nn.Tanh()
        self.stem = nn.Linear(5, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.mid(self.act(self.stem(x)))))


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.a(x))
        x = F.relu(self.b(x))
        return self.c(torch.tanh(x))


def test_first_and_last_found_by_execution_not_registration():
    net = binarize(Reversed(), torch.zeros(2, 5))
    rep = net.binarize_report
    assert rep.execution_order == ["stem", "mid", "head"]
    assert type(net.stem) is nn.Linear and type(net.head) is nn.Linear
    assert isinstance(net.mid, BinaryLinear) and isinstance(net.act, StochasticSign)
    assert {r[0]: r[2] for r in rep.kept_real} == {"stem": "first weight layer in execution order",
                                                   "head": "last weight layer in execution order"}
    assert ("mid", "Linear", "BinaryLinear") in rep.replaced


def test_conv_keeps_every_constructor_argument():
    conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, bias=False,
                     padding_mode="circular", dtype=torch.float64)
    model = nn.Sequential(nn.Conv2d(3, 4, 1, dtype=torch.float64), conv, nn.ReLU(), nn.Flatten(),
                          nn.LazyLinear(2, dtype=torch.float64))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    model(x)  # materialise the lazy layer
    net = binarize(model, x, weights="sign", channel_scale="mean_abs")
    b = net[1]
    assert isinstance(b, BinaryConv2d)
    assert (b.kernel_size, b.stride, b.padding, b.dilation, b.groups) == ((3, 2), (2, 1), (1, 2), (1, 2), 2)
    assert b.bias is None and b.padding_mode == "circular" and b.latent_weight.dtype == torch.float64
    assert (b.weights, b.channel_scale) == ("sign", "mean_abs")
    assert net(x).shape == (2, 2)
    assert type(model[1]) is nn.Conv2d  # a copy by default


def test_inplace_converts_the_model_itself():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    out = binarize(model, torch.zeros(1, 3), inplace=True)
    assert out is model and isinstance(model[2], BinaryLinear)


@pytest.mark.parametrize("name", BINARY_MODULES.names(kind="activation"))
def test_every_registered_activation_can_be_chosen(name):
    model = nn.Sequential(nn.Linear(3, 4), nn.Hardtanh(), nn.Linear(4, 2))
    net = binarize(model, torch.zeros(1, 3), activation=name)
    assert type(net[1]) is BINARY_MODULES.get(name).cls


def test_activation_options_and_keep():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU6(), nn.Linear(4, 2))
    net = binarize(model, torch.zeros(1, 3), activation="quant_relu", activation_options={"bits": 3})
    assert isinstance(net[1], QuantReLU) and net[1].bits == 3 and isinstance(net[3], QuantReLU)
    net = binarize(model, torch.zeros(1, 3), activation="keep")
    assert type(net[1]) is nn.ReLU and isinstance(net[2], BinaryLinear)
    net = binarize(model, torch.zeros(1, 3), activation="sign", activation_options={"proxy": "identity"})
    assert isinstance(net[1], Sign) and net[1].proxy == "identity"
    net = binarize(model, torch.zeros(1, 3), activation="heaviside")
    assert isinstance(net[3], Heaviside)


def test_keep_real_and_only_patterns():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(),
                          nn.Linear(4, 2))
    x = torch.zeros(1, 3)
    net = binarize(model, x, keep_real=["4"])
    assert type(net[4]) is nn.Linear and isinstance(net[2], BinaryLinear)
    assert ("4", "Linear", "keep_real pattern '4'") in net.binarize_report.kept_real
    net = binarize(model, x, only=["2", "1"])
    assert isinstance(net[2], BinaryLinear) and type(net[4]) is nn.Linear and isinstance(net[1], StochasticSign)
    assert type(net[3]) is nn.ReLU
    assert ("4", "Linear", "not matched by only=") in net.binarize_report.kept_real
    net = binarize(model, None, keep_first=False, keep_last=False)
    assert all(isinstance(net[i], BinaryLinear) for i in (0, 2, 4, 6))


def test_functional_activations_are_reported_and_warned():
    with pytest.warns(UserWarning, match=r"F\.relu in the model.*torch\.tanh in the model"):
        net = binarize(Functional(), torch.zeros(1, 4))
    assert net.binarize_report.functional == [("", "F.relu"), ("", "torch.tanh")]
    assert "NOT replaced" in str(net.binarize_report)
    # nn.ReLU modules call F.relu internally: not a functional use
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = binarize(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), torch.zeros(1, 2))
    assert net.binarize_report.functional == []


def test_functional_call_attributed_to_its_submodule():
    model = nn.Sequential(nn.Linear(4, 4), Functional(), nn.Linear(2, 2))
    with pytest.warns(UserWarning):
        net = binarize(model, torch.zeros(1, 4))
    assert ("1", "F.relu") in net.binarize_report.functional


def test_unexecuted_layers_are_reported():
    class Branch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.unused, self.c = nn.Linear(2, 3), nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(self.b(self.a(x)))

    net = binarize(Branch(), torch.zeros(1, 2))
    assert net.binarize_report.not_executed == ["unused"] and isinstance(net.unused, BinaryLinear)


def test_tracing_restores_state():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = binarize(model, torch.randn(1, 3))  # batch of one: traced in eval mode
    assert net.training and all(m.training for m in net.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert torch.equal(net[1].running_mean, before["1.running_mean"])


@pytest.mark.parametrize("kwargs, match", [
    ({"weights": "bernouli"}, r"did you mean 'bernoulli'.*valid: bernoulli, sign"),
    ({"activation": "stochastik"}, r"did you mean 'stochastic'.*keep"),
    ({"channel_scale": "mean"}, r"valid: learned, mean_abs, None"),
    ({"weight_noise": "gauss"}, r"did you mean 'gaussian'"),
    ({"weight_noise_scale": 0.0}, r"weight_noise_scale"),
    ({"activation_options": {"nosie": "uniform"}}, r"unknown option of stochastic 'nosie'.*valid: eval_mode, noise"),
    ({"activation": "keep", "activation_options": {"bits": 2}}, r"activation='keep'"),
    ({"keep_real": ["nope*"]}, r"keep_real pattern 'nope\*' matches no module; module names: 0, 1, 2"),
    ({"only": ["x"]}, r"only pattern 'x' matches no module"),
])
def test_wrong_arguments_are_refused_listing_choices(kwargs, match):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=match):
        binarize(model, torch.zeros(1, 3), **kwargs)


def test_example_input_needed_for_the_first_last_policy():
    with pytest.raises(ValueError, match="example_input"):
        binarize(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="nn.Module"):
        binarize(lambda x: x, torch.zeros(1))  # type: ignore[arg-type]


def test_max_pooling_of_sampled_units_is_noted():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3),
                          nn.MaxPool2d(2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    x = torch.zeros(2, 1, 12, 12)
    notes = binarize(model, x).binarize_report.notes
    assert len(notes) == 1 and "MaxPool2d '3' pools the sampled outputs of '2'" in notes[0]
    assert binarize(model, x, activation="sign").binarize_report.notes == []  # deterministic: no bias
    # the mechanism: a max of four fair ±1 samples is +1 with probability 15/16
    torch.manual_seed(0)
    z = StochasticSign()(torch.zeros(4000, 1, 2, 2))
    assert abs(float((F.max_pool2d(z, 2) > 0).float().mean()) - 15 / 16) < 0.02
