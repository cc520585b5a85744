"""Latent-weight updates (Shekhovtsov & Yanush, GCPR 2021, Sec. 4): mirror descent, the
weight-ST alternative, projection, hooks.

The sampled binary weights of a training forward are read back from the layer's output on
the identity matrix (a linear layer maps I to W^T), so a reference can check them without
knowing how the layer calls its random-number generator.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stbin.estimators.random import draw_seed, stream_uniforms
from stbin.nn import BinaryConv2d, BinaryLinear
from stbin.optim import LatentWeightRule
from stbin.estimators import NOISES as _NOISE_REGISTRY

NOISES = tuple(_NOISE_REGISTRY)  # every registered noise


def forward_with_readback(layer: BinaryLinear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Output of one forward on x, and the weight that forward used (layer without bias)."""
    eye = torch.eye(layer.in_features, dtype=x.dtype)
    out = layer(torch.cat([x, eye]))
    return out[: x.shape[0]], out[x.shape[0]:].T.detach()


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((out - y) ** 2).sum() / out.shape[0]


def dF(noise: str, t: float) -> float:
    """Density F'(t) of the standard noise (pure Python)."""
    if noise == "logistic":
        sg = 1.0 / (1.0 + math.exp(-t))
        return sg * (1.0 - sg)
    if noise == "uniform":
        return 0.5 if abs(t) <= 1.0 else 0.0
    return math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------- (a) BinaryConnect


def stochastic_binary_connect(w0: torch.Tensor, xs: list[torch.Tensor], ys: list[torch.Tensor], lr: float,
                              seed: int, clip: bool = True) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Hand-written stochastic BinaryConnect (Courbariaux et al. 2015) with latent clipping.

    w_b = +1 with probability hard_sigmoid(w) = clip((w+1)/2, 0, 1), drawn as u < p with
    u from stbin's sampling stream (Philox words of the seed drawn from ``generator``, see
    :mod:`stbin.estimators.random`); dL/dw_b of L = 1/(2B) ||x w_b^T - y||^2 by hand;
    w <- clip(w - lr dL/dw_b, -1, 1). Returns the latent weights after every step and the
    binary weights used in every step.
    """
    g = torch.Generator().manual_seed(seed)
    w = w0.clone()
    latents, binaries = [], []
    for x, y in zip(xs, ys):
        p = ((w + 1) / 2).clamp(0, 1)
        u = stream_uniforms(w.numel(), draw_seed(g)).view(w.shape)
        wb = torch.where(u < p, 1.0, -1.0)
        r = x @ wb.T - y
        grad = r.T @ x / x.shape[0]
        w = w - lr * grad
        if clip:
            w = w.clamp(-1, 1)
        latents.append(w.clone())
        binaries.append(wb)
    return latents, binaries


def test_uniform_mirror_descent_is_stochastic_binary_connect_step_for_step() -> None:
    seed, lr, steps, n_in, n_out, batch = 17, 0.3, 20, 6, 4, 16
    torch.manual_seed(0)
    layer = BinaryLinear(n_in, n_out, bias=False, weights="bernoulli", weight_noise="uniform", weight_noise_scale=1.0,
                         generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # include saturated latents (+-1) so that both clipping sides are exercised
        layer.latent_weight[0, :3] = torch.tensor([1.0, -1.0, 0.0])
    w0 = layer.latent_weight.detach().clone()
    xs = [torch.randn(batch, n_in) for _ in range(steps)]
    w_true = torch.randn(n_out, n_in).sign() * 2
    ys = [x @ w_true.T + 0.1 * torch.randn(batch, n_out) for x in xs]

    opt = torch.optim.SGD(layer.parameters(), lr=lr)
    rule = LatentWeightRule(layer).attach(opt)
    assert rule.gradient == "mirror" and rule.project_mode == "auto"

    ref_latents, ref_binaries = stochastic_binary_connect(w0, xs, ys, lr, seed)
    clipped = 0
    for k in range(steps):
        opt.zero_grad()
        out, wb = forward_with_readback(layer, xs[k])
        mse(out, ys[k]).backward()
        opt.step()
        assert torch.equal(wb, ref_binaries[k]), f"binary weights differ at step {k}"
        torch.testing.assert_close(layer.latent_weight.detach(), ref_latents[k], rtol=0, atol=1e-6,
                                   msg=f"latent weights differ at step {k}")
        clipped += int((ref_latents[k].abs() == 1).sum())
    assert clipped > 0, "the test should exercise the latent clipping"
    # negative control: without the clipping the reference departs from the layer
    unclipped, _ = stochastic_binary_connect(w0, xs, ys, lr, seed, clip=False)
    assert (unclipped[-1] - layer.latent_weight.detach()).abs().max() > 0.1


# --------------------------------------------------------------------------- (b) weight ST gradient


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("s", [0.5, 1.0, 2.0])
def test_st_gradient_multiplies_by_closed_form_factor(noise: str, s: float) -> None:
    """gradient="st": g_theta = (2/s) F'(theta/s) dL/dw, with F' written out per noise."""
    thetas = [-3.0, -1.0, -0.5, -0.1, 0.0, 0.3, 0.5, 0.99, 1.0, 1.7, 4.0]
    layer = BinaryLinear(len(thetas), 1, bias=False, weight_noise=noise, weight_noise_scale=s, dtype=torch.float64)
    with torch.no_grad():
        layer.latent_weight.copy_(torch.tensor([thetas], dtype=torch.float64))
    x = torch.linspace(-2.0, 2.0, len(thetas), dtype=torch.float64).view(1, -1)
    layer(x).sum().backward()  # loss linear in w: dL/dw = x exactly, whatever w was sampled
    torch.testing.assert_close(layer.latent_weight.grad, x, rtol=0, atol=0)
    rule = LatentWeightRule(layer, gradient="st")
    rule.transform_gradients()
    expected = torch.tensor([[2.0 / s * dF(noise, th / s) * xv for th, xv in zip(thetas, x[0].tolist())]],
                            dtype=torch.float64)
    torch.testing.assert_close(layer.latent_weight.grad, expected, rtol=1e-12, atol=1e-15)


def test_st_gradient_uniform_freezes_saturated_weights() -> None:
    """Uniform noise: |theta| > s gives exactly zero ST gradient, so SGD never moves those weights."""
    s = 0.5
    layer = BinaryLinear(6, 3, bias=False, weight_noise="uniform", weight_noise_scale=s,
                         generator=torch.Generator().manual_seed(0))
    theta0 = torch.tensor([[0.6, -0.7, 0.2, -0.3, 2.0, 0.0]] * 3)
    with torch.no_grad():
        layer.latent_weight.copy_(theta0)
    frozen = theta0.abs() > s
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    LatentWeightRule(layer, gradient="st", project=None).attach(opt)
    torch.manual_seed(1)
    for _ in range(10):
        opt.zero_grad()
        x = torch.randn(8, 6)
        layer(x).square().sum().backward()
        opt.step()
        assert torch.equal(layer.latent_weight.grad[frozen], torch.zeros(int(frozen.sum())))
    theta = layer.latent_weight.detach()
    assert torch.equal(theta[frozen], theta0[frozen])
    assert not torch.equal(theta[~frozen], theta0[~frozen])  # the others did train


# --------------------------------------------------------------------------- (c) projection


def _push_outward(layer: nn.Module, lr: float = 1.0, steps: int = 3, **rule_kw) -> torch.Tensor:
    """SGD steps with a loss whose gradient pushes every latent weight away from 0."""
    opt = torch.optim.SGD(layer.parameters(), lr=lr)
    LatentWeightRule(layer, **rule_kw).attach(opt)
    for _ in range(steps):
        opt.zero_grad()
        (-(layer.latent_weight.detach().sign() * layer.effective_weight()).sum()).backward()
        opt.step()
    return layer.latent_weight.detach()


def test_logistic_not_projected() -> None:
    layer = BinaryLinear(4, 3, weight_noise="logistic", weight_noise_scale=0.5)
    theta0 = layer.latent_weight.detach().clone()
    theta = _push_outward(layer)
    # no projection: every weight moved by exactly 3 * lr outward
    torch.testing.assert_close(theta, theta0 + 3.0 * theta0.sign(), rtol=0, atol=1e-6)
    assert theta.abs().min() > 2.5


@pytest.mark.parametrize("cls", ["linear", "conv"])
def test_uniform_projected_onto_scale(cls: str) -> None:
    s = 0.4
    if cls == "linear":
        layer = BinaryLinear(4, 3, weight_noise="uniform", weight_noise_scale=s)
    else:
        layer = BinaryConv2d(2, 3, 2, weight_noise="uniform", weight_noise_scale=s)
    theta0 = layer.latent_weight.detach().clone()
    theta = _push_outward(layer, lr=0.05, steps=20)
    assert theta.abs().max() == pytest.approx(s)
    assert torch.equal(theta, (theta0 + 20 * 0.05 * theta0.sign()).clamp(-s, s))
    assert int((theta.abs() == s).sum()) == theta.numel()
    # project=None disables it
    layer2 = BinaryLinear(4, 3, weight_noise="uniform", weight_noise_scale=s)
    assert _push_outward(layer2, project=None).abs().min() > 2.5


@pytest.mark.parametrize("noise, s, c, bound", [
    ("logistic", 1.0, 0.3, 0.3),
    ("gaussian", 1.0, 0.3, 0.3),
    ("uniform", 1.0, 0.3, 0.3),   # the clip is tighter than the projection
    ("uniform", 0.2, 0.3, 0.2),   # the projection is tighter than the clip
])
def test_clip_clips_all(noise: str, s: float, c: float, bound: float) -> None:
    layer = BinaryLinear(5, 4, weight_noise=noise, weight_noise_scale=s)
    theta = _push_outward(layer, clip=c)
    assert torch.allclose(theta.abs(), torch.full_like(theta, bound))  # every weight pushed onto the bound
    layer2 = BinaryLinear(5, 4, weight_noise=noise, weight_noise_scale=s)
    theta2 = _push_outward(layer2, project=None, clip=c)
    assert theta2.abs().max().item() == pytest.approx(c)


def test_project_by_hand_without_attach() -> None:
    layer = BinaryLinear(3, 2, weight_noise="uniform", weight_noise_scale=0.5)
    with torch.no_grad():
        layer.latent_weight.copy_(torch.tensor([[2.0, -0.2, -9.0], [0.5, -0.5, 0.51]]))
    LatentWeightRule(layer).project()
    assert torch.equal(layer.latent_weight.detach(), torch.tensor([[0.5, -0.2, -0.5], [0.5, -0.5, 0.5]]))


# --------------------------------------------------------------------------- (d) optimizers, hooks


def _model(seed: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        BinaryLinear(6, 5, weight_noise="uniform", weight_noise_scale=0.5, generator=torch.Generator().manual_seed(seed)),
        nn.Tanh(),
        BinaryLinear(5, 2, weight_noise="logistic", generator=torch.Generator().manual_seed(seed + 1)),
    )


@pytest.mark.parametrize("gradient", ["mirror", "st"])
@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    lambda p: torch.optim.Adam(p, lr=0.05),
], ids=["momentum", "nesterov", "adam"])
def test_hooks_fire_with_momentum_and_adam(gradient: str, make_opt) -> None:
    """Attached hooks == calling transform_gradients() / project() by hand around step()."""
    hooked, manual, raw = _model(3), _model(3), _model(3)
    opt_h, opt_m, opt_r = make_opt(hooked.parameters()), make_opt(manual.parameters()), make_opt(raw.parameters())
    rule_h = LatentWeightRule(hooked, gradient=gradient).attach(opt_h)
    rule_m = LatentWeightRule(manual, gradient=gradient)
    torch.manual_seed(5)
    data = [(torch.randn(8, 6), torch.randn(8, 2)) for _ in range(15)]
    raw_escaped = False
    for x, y in data:
        before = [p.detach().clone() for p in hooked.parameters()]
        for model, opt in ((hooked, opt_h), (manual, opt_m), (raw, opt_r)):
            opt.zero_grad()
            mse(model(x), y).backward()
        opt_h.step()
        rule_m.transform_gradients()
        opt_m.step()
        rule_m.project()
        opt_r.step()
        for p, q in zip(hooked.parameters(), manual.parameters()):
            assert torch.equal(p, q)
        moved = [not torch.equal(b, p) for b, p in zip(before, hooked.parameters())]
        assert moved[0] and moved[2], "latent weights should move every step"
        assert hooked[0].latent_weight.abs().max() <= 0.5  # projection holds after every step
        raw_escaped |= bool(raw[0].latent_weight.abs().max() > 0.5)
    assert raw_escaped, "without the rule the latents leave [-s_w, s_w]: the projection is doing work"
    assert hooked[2].latent_weight.abs().max() > 0  # logistic layer: unprojected, sanity
    # detach(): hooks are gone, so the projection no longer runs
    rule_h.detach()
    for _ in range(30):
        opt_h.zero_grad()
        (-(hooked[0].latent_weight.detach().sign() * hooked[0].effective_weight()).sum()).backward()
        opt_h.step()
    assert hooked[0].latent_weight.abs().max() > 0.5


def test_detach_removes_st_transform() -> None:
    layer = BinaryLinear(4, 2, bias=False, weight_noise="uniform", weight_noise_scale=1.0, weights="sign",
                         dtype=torch.float64)
    with torch.no_grad():
        layer.latent_weight.copy_(torch.tensor([[0.5, 2.0, -3.0, 0.1], [-0.2, 0.3, 1.5, -1.5]], dtype=torch.float64))
    x = torch.ones(1, 4, dtype=torch.float64)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    rule = LatentWeightRule(layer, gradient="st", project=None).attach(opt)
    layer(x).sum().backward()
    theta0 = layer.latent_weight.detach().clone()
    opt.step()  # factor (1/s) 1[|theta|<=1]: saturated entries do not move
    assert torch.equal(layer.latent_weight.detach(), theta0 - 0.1 * (theta0.abs() <= 1).double())
    rule.detach()
    opt.zero_grad()
    layer(x).sum().backward()
    theta1 = layer.latent_weight.detach().clone()
    opt.step()  # plain gradient dL/dw = 1 everywhere
    assert torch.equal(layer.latent_weight.detach(), theta1 - 0.1)


# --------------------------------------------------------------------------- (e) logistic mirror step


@pytest.mark.parametrize("weights", ["bernoulli", "sign"])
def test_logistic_mirror_descent_step_is_minus_lr_dL_dw(weights: str) -> None:
    lr = 0.37
    torch.manual_seed(8)
    layer = BinaryLinear(5, 3, bias=False, weights=weights, weight_noise="logistic", weight_noise_scale=0.8,
                         generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        layer.latent_weight.mul_(30)  # large |theta|: the ST factor would be tiny, mirror descent does not care
    opt = torch.optim.SGD(layer.parameters(), lr=lr)
    LatentWeightRule(layer, gradient="mirror").attach(opt)
    x = torch.randn(7, 5, dtype=torch.float64)
    y = torch.randn(7, 3, dtype=torch.float64)
    theta0 = layer.latent_weight.detach().clone()
    out, wb = forward_with_readback(layer, x)
    mse(out, y).backward()
    # dL/dw from a float nn.Linear holding the same binary weights
    ref = nn.Linear(5, 3, bias=False, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(wb)
    mse(ref(x), y).backward()
    opt.step()
    delta = layer.latent_weight.detach() - theta0
    torch.testing.assert_close(delta, -lr * ref.weight.grad, rtol=1e-12, atol=1e-13)
    assert theta0.abs().max() > 5 and (layer.latent_weight.detach().abs() > 5).any()  # no projection


# --------------------------------------------------------------------------- (f) errors


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"no binary-weight layers"):
        LatentWeightRule(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    layer = BinaryLinear(2, 2)
    with pytest.raises(ValueError, match=r"'natural'.*mirror.*st"):
        LatentWeightRule(layer, gradient="natural")
    with pytest.raises(ValueError, match=r"'always'.*auto.*None"):
        LatentWeightRule(layer, project="always")
    with pytest.raises(ValueError, match=r"got -1"):
        LatentWeightRule(layer, clip=-1.0)
    with pytest.raises(ValueError, match=r"got 0"):
        LatentWeightRule(layer, clip=0)


def test_repr_and_layers_found() -> None:
    model = nn.Sequential(BinaryLinear(3, 3), nn.ReLU(), nn.Sequential(BinaryConv2d(1, 2, 3)), nn.Linear(2, 2))
    rule = LatentWeightRule(model, gradient="st", clip=0.5)
    assert len(rule.layers) == 2
    r = repr(rule)
    assert "gradient='st'" in r and "clip=0.5" in r and "layers=2" in r
