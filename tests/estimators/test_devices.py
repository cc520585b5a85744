"""Every estimator and binary layer on every available device (CPU; CUDA when present).

These are the CUDA variants ``benchmarks/gpu_check.py`` runs (``-k cuda``): closed-form
backward, deterministic modes equal to CPU, sampled frequencies within binomial tolerance,
seeded reproducibility, half-precision finiteness, and the layers' training step.
"""

from __future__ import annotations

import math

import pytest
import torch

import stbin.nn as snn
from stbin.estimators import bernoulli_weight, heaviside, magnitude_aware_sign, quant_relu, sign, stochastic_sign
from stbin.estimators.noise import NOISES

NOISE_NAMES = NOISES.names()


def _factor(noise: str, a: torch.Tensor, s: float) -> torch.Tensor:
    if noise == "logistic":
        return (1.0 / (2 * s)) / torch.cosh(a / (2 * s)) ** 2
    if noise == "uniform":
        return (a.abs() <= s).double() / s
    return (2.0 / s) * torch.exp(-0.5 * (a / s) ** 2) / math.sqrt(2 * math.pi)


@pytest.mark.parametrize("noise", NOISE_NAMES)
@pytest.mark.parametrize("mode", ["sample", "mode", "mean"])
def test_st_backward_closed_form_on_device(device, noise, mode):
    a = torch.linspace(-4, 4, 4001, dtype=torch.float64, device=device).requires_grad_()
    g_out = torch.cos(torch.arange(4001, dtype=torch.float64, device=device))
    g = torch.Generator(device=device).manual_seed(0)
    (grad,) = torch.autograd.grad(stochastic_sign(a, noise, 0.8, mode, g), a, g_out)
    torch.testing.assert_close(grad, _factor(noise, a.detach(), 0.8) * g_out, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("noise", NOISE_NAMES)
@pytest.mark.parametrize("fn", [stochastic_sign, bernoulli_weight])
def test_sampled_frequencies_and_seeding_on_device(device, noise, fn):
    n = 20_000
    values = torch.tensor([-1.5, -0.2, 0.0, 0.4, 2.0], device=device)
    a = values.repeat(n, 1)
    x = fn(a, noise, 0.9, "sample", torch.Generator(device=device).manual_seed(3))
    assert x.device.type == torch.device(device).type and set(x.unique().tolist()) <= {-1.0, 1.0}
    p = NOISES.get(noise).cdf(values.double().cpu() / 0.9)
    freq = (x > 0).double().mean(0).cpu()
    assert ((freq - p).abs() <= 5 * torch.sqrt(p * (1 - p) / n) + 1e-12).all(), (freq, p)
    again = fn(a, noise, 0.9, "sample", torch.Generator(device=device).manual_seed(3))
    assert torch.equal(x, again)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_deterministic_estimators_equal_cpu(device, dtype):
    x = torch.tensor([-1e4, -2.0, -0.5, -0.0, 0.0, 0.3, 0.7, 1.0, 3.0, math.nan], dtype=dtype)
    calls = [lambda t: sign(t, "htanh"), lambda t: stochastic_sign(t, "logistic", 1.0, "mode"),
             lambda t: stochastic_sign(t, "gaussian", 0.5, "mean"), lambda t: heaviside(t),
             lambda t: quant_relu(t, 2, 0.5), lambda t: bernoulli_weight(t, "uniform", 1.0, "mode"),
             lambda t: magnitude_aware_sign(t.view(2, 5))]
    for fn in calls:
        cpu = fn(x)
        dev = fn(x.to(device)).cpu()
        assert dev.dtype == dtype
        torch.testing.assert_close(dev, cpu, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_binary_layer_training_step_on_device(device, layer):
    torch.manual_seed(0)
    q = snn.StochasticSign()
    if layer == "linear":
        m, x = snn.BinaryLinear(16, 8, input_quantizer=q), torch.randn(4, 16)
    else:
        m, x = snn.BinaryConv2d(3, 4, 3, padding=1, input_quantizer=q), torch.randn(2, 3, 8, 8)
    m = m.to(device)
    x = x.to(device).requires_grad_()
    out = m(x)
    out.square().sum().backward()
    assert out.device.type == torch.device(device).type
    for t in (m.latent_weight.grad, x.grad):
        assert t is not None and torch.isfinite(t).all()
    m.eval()
    cpu_m = m.to("cpu")
    with torch.no_grad():
        torch.testing.assert_close(cpu_m(x.detach().cpu()), m.to(device)(x.detach()).cpu(), rtol=1e-5, atol=1e-5)
