"""torch.compile: every stbin module and model traces without graph breaks, and a compiled
training step samples from the same distribution as eager mode.

The sampler is the custom op ``stbin::philox_sign_`` (a fake implementation for tracing),
so sampling is one node of the graph rather than a graph break per call.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch
import torch._dynamo
from torch import nn

import stbin.nn as snn
from stbin.estimators import sampling
from stbin.estimators._common import THRESHOLDS
from stbin.models import MODELS, build_model

MODULES = {
    "StochasticSign": lambda: snn.StochasticSign(),
    "StochasticSign/gaussian": lambda: snn.StochasticSign("gaussian", 0.5),
    "Sign": lambda: snn.Sign("htanh"),
    "Heaviside": lambda: snn.Heaviside(),
    "QuantReLU": lambda: snn.QuantReLU(2),
    "BinaryLinear": lambda: snn.BinaryLinear(12, 5, input_quantizer=snn.StochasticSign()),
    "BinaryLinear/uniform-mean_abs": lambda: snn.BinaryLinear(12, 5, weight_noise="uniform", channel_scale="mean_abs"),
    "BinaryConv2d": lambda: snn.BinaryConv2d(3, 4, 3, padding=1, input_quantizer=snn.StochasticSign()),
}
INPUTS = {"BinaryConv2d": (2, 3, 6, 6)}


def _explain(fn, *args):
    torch._dynamo.reset()
    return torch._dynamo.explain(fn)(*args)


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("training", [True, False])
def test_modules_trace_without_graph_breaks(name, training):
    m = MODULES[name]().train(training)
    x = torch.randn(INPUTS.get(name, (4, 12)))
    e = _explain(m, x)
    assert (e.graph_count, e.graph_break_count) == (1, 0), e.break_reasons


def _model(name: str) -> tuple[nn.Module, torch.Tensor]:
    if name in ("mlp", "sbn_mlp"):
        return build_model(name, in_features=64, num_classes=10, hidden=[32]), torch.randn(4, 64)
    shape = (1, 28, 28) if name == "lenet5" else (3, 32, 32)
    return build_model(name, in_channels=shape[0], num_classes=10), torch.randn(2, *shape)


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("training", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_models_trace_without_graph_breaks(name, training):
    torch.manual_seed(0)
    m, x = _model(name)
    e = _explain(m.train(training), x)
    assert (e.graph_count, e.graph_break_count) == (1, 0), e.break_reasons


class SmallCNN(nn.Module):
    """Binary layers large enough for the parallel sampling kernel (>= 32768 weights and
    units) and the chunked ST backward (>= 131072 units)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = snn.StochasticSign()
        self.conv2 = snn.BinaryConv2d(32, 128, 3, padding=1, bias=False)  # 36,864 Bernoulli weights
        self.bn2 = nn.BatchNorm2d(128)
        self.act2 = snn.StochasticSign()
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))  # 8 x 32 x 32 x 32 = 262,144 units
        x = self.act2(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def _losses(step, x, y, n):
    out = []
    for _ in range(n):
        out.append(float(step(x, y)))
    return out


# inductor compiles C++ kernels for a new graph in minutes on a loaded 2-core machine: the
# default suite compiles through AOT autograd (graph capture, functionalization of the
# in-place custom op, fake tensors) and the full inductor run is marked slow.
@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_training_step_matches_eager_distribution(monkeypatch, two_threads, backend):
    torch.manual_seed(0)
    net = SmallCNN()
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    calls = []
    # the parallel kernel from 32 K elements (its default threshold is above this small CNN's tensors)
    monkeypatch.setattr(THRESHOLDS, "parallel_sampling_min_numel", 1 << 15)
    real = sampling._kernel.compare_inplace
    monkeypatch.setattr(sampling._kernel, "compare_inplace",
                        lambda p, s, par, th=None: (calls.append((p.size, par)), real(p, s, par, th)))

    def step(x, y):
        net.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss.detach()

    torch._dynamo.reset()
    compiled = torch.compile(step, backend=backend)
    n = 12
    compiled(x, y)  # compile
    calls.clear()
    torch.manual_seed(1)
    comp = _losses(compiled, x, y, n)
    assert (262_144, True) in calls and (36_864, True) in calls  # the parallel kernel ran, in the graph
    g_comp = net.conv2.latent_weight.grad.clone()
    torch.manual_seed(2)
    eager = _losses(step, x, y, n)
    g_eager = net.conv2.latent_weight.grad.clone()
    assert all(math.isfinite(v) for v in comp + eager)
    assert len(set(comp)) > 1  # the compiled step samples afresh at every call
    # same distribution: means within 5 standard errors of their difference
    se = math.sqrt(statistics.variance(comp) / n + statistics.variance(eager) / n)
    assert abs(statistics.fmean(comp) - statistics.fmean(eager)) < 5 * se + 1e-6, (comp, eager)
    assert g_comp.shape == g_eager.shape and torch.isfinite(g_comp).all()
    # evaluation in mode is deterministic: compiled and eager agree (in float64, so that
    # rounding differences of fused kernels cannot flip the sign of a near-zero unit)
    net.eval().double()
    torch._dynamo.reset()
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(net, backend=backend)(x.double()), net(x.double()),
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_trains_and_evaluates_compiled(name):
    torch.manual_seed(0)
    m, x = _model(name)
    y = torch.randint(0, 10, (x.shape[0],))
    opt = torch.optim.SGD(m.parameters(), lr=0.01)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        return loss.detach()

    torch._dynamo.reset()
    compiled = torch.compile(step)
    for _ in range(2):
        assert math.isfinite(float(compiled(x, y)))
        opt.step()
    # evaluation in mode is deterministic; in float64, so that the compiled kernels' rounding
    # (different from eager's in float32) cannot flip the sign of a near-zero pre-activation
    m.eval().double()
    x = x.double()
    torch._dynamo.reset()
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(m)(x), m(x), rtol=1e-9, atol=1e-9)
