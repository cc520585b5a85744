"""Properties of the binary-weight layers :class:`BinaryLinear` and :class:`BinaryConv2d` (Shekhovtsov & Yanush, GCPR 2021).

The sampled binary weights of a training forward are read back from the layer's own
output: a linear layer applied to the identity matrix returns W^T, a 1x1 convolution
applied to one-hot channels returns W. So the tests do not depend on how the layer draws
its random numbers, only on what it computes with them.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from stbin.nn import BinaryConv2d, BinaryLinear, Sign, StochasticSign
from stbin.nn.binary import CHANNEL_SCALES, WEIGHT_KINDS
from stbin.estimators import NOISES as _NOISE_REGISTRY

NOISES = tuple(_NOISE_REGISTRY)  # every registered noise


def cdf(noise: str, t: float) -> float:
    """F(t) of the standard noise from scipy.stats as an independent reference."""
    return float({"logistic": stats.logistic, "uniform": stats.uniform(-1.0, 2.0), "gaussian": stats.norm}[noise].cdf(t))


def mean_weight(noise: str, theta: torch.Tensor, s: float) -> torch.Tensor:
    """E[w] = 2F(theta/s) - 1 in closed form (tanh, hard tanh, erf)."""
    if noise == "logistic":
        return torch.tanh(theta / (2 * s))
    if noise == "uniform":
        return (theta / s).clamp(-1, 1)
    return torch.erf(theta / (s * math.sqrt(2.0)))


def ref_sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def linear_with_readback(layer: BinaryLinear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward of ``layer`` (bias must be None or zero) on [x; I]: (output on x, weight used)."""
    eye = torch.eye(layer.in_features, dtype=x.dtype)
    out = layer(torch.cat([x, eye]))
    return out[: x.shape[0]], out[x.shape[0]:].T


def set_latent(layer: nn.Module, theta: torch.Tensor) -> None:
    with torch.no_grad():
        layer.latent_weight.copy_(theta)


# --------------------------------------------------------------------------- deterministic forward


def test_binary_weight_is_sign_of_latent_with_sign0_plus1() -> None:
    layer = BinaryLinear(3, 2)
    theta = torch.tensor([[0.0, -0.0, -1e-8], [2.0, -3.0, 1e-30]])
    set_latent(layer, theta)
    w = layer.binary_weight()
    assert torch.equal(w, torch.tensor([[1.0, 1.0, -1.0], [1.0, -1.0, 1.0]]))
    conv = BinaryConv2d(2, 3, 3, weights="sign")
    conv.latent_weight.data[0, 0, 0, 0] = 0.0
    wc = conv.binary_weight()
    assert set(wc.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(wc, ref_sign(conv.latent_weight.detach()))
    assert not wc.requires_grad


@pytest.mark.parametrize("weights", ["bernoulli", "sign"])
@pytest.mark.parametrize("noise", NOISES)
def test_linear_eval_mode_equals_f_linear_with_binary_weight(weights: str, noise: str) -> None:
    torch.manual_seed(0)
    layer = BinaryLinear(7, 5, weights=weights, weight_noise=noise, weight_noise_scale=0.3).eval()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(4, 3, 7)
    out = layer(x)
    assert torch.equal(out, F.linear(x, layer.binary_weight(), layer.bias))
    assert torch.equal(layer.binary_weight(), ref_sign(layer.latent_weight.detach()))


@pytest.mark.parametrize("weights", ["bernoulli", "sign"])
@pytest.mark.parametrize("kw", [
    dict(stride=1, padding=0),
    dict(stride=2, padding=1, dilation=2),
    dict(stride=1, padding="same", groups=2),
])
def test_conv_eval_mode_equals_f_conv2d_with_binary_weight(weights: str, kw: dict) -> None:
    torch.manual_seed(1)
    conv = BinaryConv2d(4, 6, 3, weights=weights, **kw).eval()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 4, 9, 9)
    out = conv(x)
    ref = F.conv2d(x, conv.binary_weight(), conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    assert torch.equal(out, ref)
    # unbatched input (C, H, W) works as in torch
    ref0 = F.conv2d(x[0], conv.binary_weight(), conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    assert torch.equal(conv(x[0]), ref0)


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("cls", ["linear", "conv"])
def test_eval_mean_uses_2F_minus_1(noise: str, cls: str) -> None:
    s = 0.6
    torch.manual_seed(2)
    if cls == "linear":
        layer = BinaryLinear(6, 4, weight_noise=noise, weight_noise_scale=s, eval_mode="mean", dtype=torch.float64).eval()
        theta = torch.linspace(-1.2, 1.2, 24, dtype=torch.float64).view(4, 6)
        x = torch.randn(5, 6, dtype=torch.float64)
    else:
        layer = BinaryConv2d(2, 3, 2, weight_noise=noise, weight_noise_scale=s, eval_mode="mean",
                             dtype=torch.float64).eval()
        theta = torch.linspace(-1.2, 1.2, 24, dtype=torch.float64).view(3, 2, 2, 2)
        x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    set_latent(layer, theta)
    eta = mean_weight(noise, theta, s)
    torch.testing.assert_close(layer.binary_weight("mean"), eta, rtol=0, atol=1e-12)
    ref = F.linear(x, eta, layer.bias) if cls == "linear" else F.conv2d(x, eta, layer.bias)
    torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-12)


def test_eval_sample_mode_draws_fresh_weights() -> None:
    layer = BinaryLinear(16, 16, bias=False, eval_mode="sample",
                         generator=torch.Generator().manual_seed(0)).eval()
    set_latent(layer, torch.zeros(16, 16))
    x = torch.zeros(1, 16)
    _, w1 = linear_with_readback(layer, x)
    _, w2 = linear_with_readback(layer, x)
    assert set(w1.unique().tolist()) == {-1.0, 1.0}
    assert not torch.equal(w1, w2)


def test_sign_weights_are_deterministic_in_training() -> None:
    torch.manual_seed(3)
    layer = BinaryLinear(8, 6, bias=False, weights="sign", weight_noise="gaussian").train()
    x = torch.randn(3, 8)
    o1, w1 = linear_with_readback(layer, x)
    o2, w2 = linear_with_readback(layer, x)
    assert torch.equal(w1, w2) and torch.equal(o1, o2)
    assert torch.equal(w1, ref_sign(layer.latent_weight.detach()))
    conv = BinaryConv2d(3, 4, 3, weights="sign").train()
    xc = torch.randn(2, 3, 6, 6)
    assert torch.equal(conv(xc), conv(xc))
    assert torch.equal(conv(xc), F.conv2d(xc, conv.binary_weight(), conv.bias))


# --------------------------------------------------------------------------- Bernoulli sampling


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("cls", ["linear", "conv"])
def test_training_samples_plus_one_with_probability_F(noise: str, cls: str) -> None:
    """Frequency of w = +1 matches F(theta/s_w) within 5 standard errors of a binomial proportion.

    Column j of the latent weight holds theta_j in every one of n rows, so one forward gives
    n independent samples per theta value.
    """
    s, n = 0.7, 20000
    thetas = torch.tensor([-1.0, -0.5, -0.1, 0.0, 0.3, 0.69, 0.8])
    k = len(thetas)
    g = torch.Generator().manual_seed(42)
    if cls == "linear":
        layer = BinaryLinear(k, n, bias=False, weight_noise=noise, weight_noise_scale=s, generator=g)
        set_latent(layer, thetas.repeat(n, 1))
        w = layer(torch.eye(k)).T  # (n, k)
    else:
        layer = BinaryConv2d(k, n, 1, bias=False, weight_noise=noise, weight_noise_scale=s, generator=g)
        set_latent(layer, thetas.repeat(n, 1).view(n, k, 1, 1))
        w = layer(torch.eye(k).view(k, k, 1, 1)).view(k, n).T
    assert layer.training
    assert set(w.unique().tolist()) <= {-1.0, 1.0}
    freq = (w == 1).double().mean(0)
    for j, th in enumerate(thetas.tolist()):
        p = cdf(noise, th / s)
        se = math.sqrt(p * (1 - p) / n)
        if se == 0.0:  # uniform noise outside [-s, s]: deterministic
            assert freq[j].item() == p, (noise, th)
        else:
            assert abs(freq[j].item() - p) <= 5 * se, (noise, th, freq[j].item(), p)


def test_binary_weight_sample_mode_frequency() -> None:
    n = 20000
    layer = BinaryLinear(2, n, weight_noise="gaussian", weight_noise_scale=2.0)
    set_latent(layer, torch.tensor([0.5, -1.5]).repeat(n, 1))
    w = layer.binary_weight("sample", generator=torch.Generator().manual_seed(9))
    freq = (w == 1).double().mean(0)
    for j, th in enumerate([0.5, -1.5]):
        p = cdf("gaussian", th / 2.0)
        assert abs(freq[j].item() - p) <= 5 * math.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------- gradients


def _loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((out - target) ** 2).sum() / 2 + out.sin().sum()  # non-linear in the weights


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("weights", ["bernoulli", "sign"])
def test_latent_gradient_equals_binary_weight_gradient(noise: str, weights: str) -> None:
    """dL/dtheta == dL/dw for the (sampled) binary w used in the forward: compare with nn.Linear."""
    torch.manual_seed(4)
    layer = BinaryLinear(5, 3, bias=False, weights=weights, weight_noise=noise,
                         generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.randn(6, 5, dtype=torch.float64)
    target = torch.randn(6, 3, dtype=torch.float64)
    out, w = linear_with_readback(layer, x)
    _loss(out, target).backward()
    assert set(w.unique().tolist()) <= {-1.0, 1.0}
    ref = nn.Linear(5, 3, bias=False, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(w)
    ref_out = ref(x)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    _loss(ref_out, target).backward()
    torch.testing.assert_close(layer.latent_weight.grad, ref.weight.grad, rtol=1e-12, atol=1e-12)


def test_latent_gradient_with_mean_abs_channel_scale() -> None:
    """channel_scale="mean_abs": w_hat = alpha_c * w, alpha_c = mean|theta_c| (detached); grad = alpha_c dL/dw_hat."""
    torch.manual_seed(5)
    layer = BinaryLinear(5, 3, bias=False, channel_scale="mean_abs",
                         generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    theta = layer.latent_weight.detach().clone()
    alpha = theta.abs().mean(1, keepdim=True)
    x = torch.randn(6, 5, dtype=torch.float64)
    target = torch.randn(6, 3, dtype=torch.float64)
    out, w_hat = linear_with_readback(layer, x)
    w = w_hat / alpha
    torch.testing.assert_close(w, w.sign(), rtol=0, atol=1e-12)  # w_hat = alpha_c * (+-1)
    _loss(out, target).backward()
    ref = nn.Linear(5, 3, bias=False, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(w_hat)
    _loss(ref(x), target).backward()
    torch.testing.assert_close(layer.latent_weight.grad, alpha * ref.weight.grad, rtol=1e-12, atol=1e-12)


def test_latent_gradient_with_learned_channel_scale() -> None:
    """channel_scale="learned": w_hat = s_c * w; dL/dtheta = s_c dL/dw_hat, dL/ds_c = sum_j w_cj dL/dw_hat_cj."""
    torch.manual_seed(6)
    layer = BinaryLinear(5, 3, bias=False, channel_scale="learned", weights="sign", dtype=torch.float64)
    assert layer.learned_channel_scale is not None and layer.learned_channel_scale.shape == (3,)
    torch.testing.assert_close(layer.learned_channel_scale.detach(), layer.latent_weight.detach().abs().mean(1))
    with torch.no_grad():
        layer.learned_channel_scale.copy_(torch.tensor([0.5, 2.0, -1.5], dtype=torch.float64))
    sc = layer.learned_channel_scale.detach().clone().view(3, 1)
    w = ref_sign(layer.latent_weight.detach())
    x = torch.randn(6, 5, dtype=torch.float64)
    target = torch.randn(6, 3, dtype=torch.float64)
    _loss(layer(x), target).backward()
    ref = nn.Linear(5, 3, bias=False, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(sc * w)
    _loss(ref(x), target).backward()
    torch.testing.assert_close(layer.latent_weight.grad, sc * ref.weight.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.learned_channel_scale.grad, (w * ref.weight.grad).sum(1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channel_scale", [None, "mean_abs", "learned"])
def test_conv_latent_gradient_equals_binary_weight_gradient(channel_scale: str | None) -> None:
    torch.manual_seed(7)
    conv = BinaryConv2d(3, 4, 3, padding=1, stride=2, channel_scale=channel_scale, dtype=torch.float64).eval()
    with torch.no_grad():
        conv.bias.normal_()
    w = ref_sign(conv.latent_weight.detach())
    if channel_scale == "mean_abs":
        c = conv.latent_weight.detach().abs().mean((1, 2, 3)).view(-1, 1, 1, 1)
    elif channel_scale == "learned":
        c = conv.learned_channel_scale.detach().clone().view(-1, 1, 1, 1)
    else:
        c = torch.ones(4, 1, 1, 1, dtype=torch.float64)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    target = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    out = conv(x)
    _loss(out, target).backward()
    ref = nn.Conv2d(3, 4, 3, padding=1, stride=2, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(c * w)
        ref.bias.copy_(conv.bias)
    ref_out = ref(x)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    _loss(ref_out, target).backward()
    torch.testing.assert_close(conv.latent_weight.grad, c * ref.weight.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conv.bias.grad, ref.bias.grad, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- input quantizer


def test_input_quantizer_is_applied() -> None:
    torch.manual_seed(8)
    layer = BinaryLinear(6, 4, input_quantizer=Sign("htanh"), weights="sign", dtype=torch.float64)
    with torch.no_grad():
        layer.bias.normal_()
    x = (torch.randn(5, 6, dtype=torch.float64) * 2).requires_grad_(True)
    out = layer(x)
    xb = ref_sign(x.detach())
    assert torch.equal(out, F.linear(xb, layer.binary_weight(), layer.bias))
    up = torch.randn_like(out)
    out.backward(up)
    # gradient through the quantizer: htanh mask times (up @ W)
    expected = (up @ layer.binary_weight()) * (x.detach().abs() <= 1).double()
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-12)
    assert "input_quantizer" in dict(layer.named_children())


def test_conv_input_quantizer_is_applied() -> None:
    torch.manual_seed(9)
    conv = BinaryConv2d(2, 3, 3, input_quantizer=StochasticSign("logistic"), weights="sign").eval()
    x = torch.randn(1, 2, 5, 5)
    assert torch.equal(conv(x), F.conv2d(ref_sign(x), conv.binary_weight(), conv.bias))


# --------------------------------------------------------------------------- errors


def test_shape_errors_name_expected_shape() -> None:
    layer = BinaryLinear(4, 2)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\).*\(3, 5\)"):
        layer(torch.randn(3, 5))
    conv = BinaryConv2d(3, 2, 3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(1, 4, 8, 8\)"):
        conv(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        conv(torch.randn(8, 8))


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match=r"bernoulli.*sign"):
        BinaryLinear(2, 2, weights="binary")
    with pytest.raises(ValueError, match=r"gaussian.*logistic.*uniform"):
        BinaryLinear(2, 2, weight_noise="normal")
    with pytest.raises(ValueError, match=r"got -1"):
        BinaryLinear(2, 2, weight_noise_scale=-1.0)
    with pytest.raises(ValueError, match=r"'max'.*learned, mean_abs, None"):
        BinaryLinear(2, 2, channel_scale="max")
    with pytest.raises(ValueError, match=r"mean.*mode.*sample"):
        BinaryLinear(2, 2, eval_mode="avg")
    with pytest.raises(ValueError, match=r"got 0"):
        BinaryLinear(0, 2)
    with pytest.raises(ValueError, match=r"divisible"):
        BinaryConv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match=r"same.*valid"):
        BinaryConv2d(2, 2, 3, padding="full")
    with pytest.raises(ValueError, match=r"mean.*mode.*sample"):
        BinaryLinear(2, 2).binary_weight("expected")


# --------------------------------------------------------------------------- state, dtype, device, repr


@pytest.mark.parametrize("channel_scale", [None, "mean_abs", "learned"])
def test_state_dict_round_trip_gives_identical_eval_outputs(channel_scale: str | None) -> None:
    torch.manual_seed(10)
    kw = dict(weight_noise="gaussian", weight_noise_scale=0.5, channel_scale=channel_scale, eval_mode="mean")
    src = BinaryLinear(6, 4, **kw).eval()
    with torch.no_grad():
        src.bias.normal_()
        if src.learned_channel_scale is not None:
            src.learned_channel_scale.mul_(3)
    torch.manual_seed(11)
    dst = BinaryLinear(6, 4, **kw).eval()
    x = torch.randn(3, 6)
    assert not torch.equal(src(x), dst(x))
    dst.load_state_dict(src.state_dict())
    assert torch.equal(src(x), dst(x))
    csrc = BinaryConv2d(2, 3, 3, padding=1, channel_scale=channel_scale).eval()
    cdst = BinaryConv2d(2, 3, 3, padding=1, channel_scale=channel_scale).eval()
    cdst.load_state_dict(csrc.state_dict())
    xc = torch.randn(2, 2, 5, 5)
    assert torch.equal(csrc(xc), cdst(xc))


def test_to_float64_and_factory_kwargs() -> None:
    layer = BinaryLinear(4, 3, channel_scale="learned").to(torch.float64)
    assert layer.latent_weight.dtype == torch.float64 and layer.learned_channel_scale.dtype == torch.float64
    assert layer.bias.dtype == torch.float64
    x = torch.randn(2, 4, dtype=torch.float64)
    out = layer(x)
    assert out.dtype == torch.float64
    out.sum().backward()
    assert layer.latent_weight.grad.dtype == torch.float64
    layer.eval()
    assert torch.equal(layer(x), F.linear(x, layer.binary_weight() * layer.learned_channel_scale.detach()[:, None], layer.bias))

    for cls, args in ((BinaryLinear, (4, 3)), (BinaryConv2d, (2, 3, 3))):
        m = cls(*args, channel_scale="learned", dtype=torch.float64, device="cpu")
        for p in m.parameters():
            assert p.dtype == torch.float64 and p.device == torch.device("cpu")
        m32 = cls(*args, device=torch.device("cpu"))
        assert m32.latent_weight.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_dtypes_train_forward_backward(dtype: torch.dtype) -> None:
    torch.manual_seed(12)
    layer = BinaryLinear(8, 4, weight_noise="logistic").to(dtype)
    x = torch.randn(3, 8, dtype=dtype)
    out = layer(x)
    assert out.dtype == dtype and torch.isfinite(out).all()
    out.float().sum().backward()
    assert layer.latent_weight.grad.dtype == dtype and torch.isfinite(layer.latent_weight.grad).all()
    assert set(layer.binary_weight().unique().tolist()) <= {-1.0, 1.0}


def test_extra_repr_mentions_weights_and_noise() -> None:
    r = repr(BinaryLinear(3, 2, weights="bernoulli", weight_noise="uniform", weight_noise_scale=0.5,
                          channel_scale="mean_abs", eval_mode="mean"))
    for part in ("in_features=3", "out_features=2", "weights='bernoulli'", "weight_noise='uniform'",
                 "weight_noise_scale=0.5", "channel_scale='mean_abs'", "eval_mode='mean'"):
        assert part in r, (part, r)
    rc = repr(BinaryConv2d(2, 4, 3, stride=2, padding=1, bias=False, weights="sign", weight_noise="gaussian"))
    for part in ("2, 4", "kernel_size=(3, 3)", "stride=(2, 2)", "padding=(1, 1)", "bias=False",
                 "weights='sign'", "weight_noise='gaussian'"):
        assert part in rc, (part, rc)


# --------------------------------------------------------------------------- reproducibility


def test_seeded_runs_repeat_bit_for_bit() -> None:
    def run_global(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        layer = BinaryLinear(6, 5, weight_noise="gaussian")
        conv = BinaryConv2d(2, 3, 3)
        x, xc = torch.randn(4, 6), torch.randn(1, 2, 5, 5)
        outs = [layer(x), layer(x), conv(xc)]
        (outs[0].sum() + outs[2].sum()).backward()
        return outs + [layer.latent_weight.grad.clone()]

    a, b = run_global(0), run_global(0)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert not torch.equal(a[0], a[1])  # fresh samples each forward

    def run_gen(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(123)  # same init
        layer = BinaryLinear(6, 5, generator=torch.Generator().manual_seed(seed))
        x = torch.ones(4, 6)
        torch.manual_seed(seed * 7 + 1)  # the global RNG must not matter for the samples
        return [layer(x) for _ in range(3)]

    for u, v in zip(run_gen(1), run_gen(1)):
        assert torch.equal(u, v)
    assert any(not torch.equal(u, v) for u, v in zip(run_gen(1), run_gen(2)))


# --------------------------------------------------------------------------- property test


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    in_f=st.integers(1, 9),
    out_f=st.integers(1, 9),
    batch=st.lists(st.integers(1, 4), min_size=0, max_size=2),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    weights=st.sampled_from(list(WEIGHT_KINDS)),
    noise=st.sampled_from(list(NOISES)),
    channel_scale=st.sampled_from(list(CHANNEL_SCALES)),
    training=st.booleans(),
    bias=st.booleans(),
)
def test_linear_property_shapes_finite_pm1(in_f, out_f, batch, dtype, weights, noise, channel_scale,
                                           training, bias) -> None:
    torch.manual_seed(in_f * 100 + out_f)
    layer = BinaryLinear(in_f, out_f, bias=bias, weights=weights, weight_noise=noise,
                         channel_scale=channel_scale, dtype=dtype).train(training)
    x = torch.randn(*batch, in_f, dtype=dtype, requires_grad=True)
    out = layer(x)
    assert out.shape == (*batch, out_f) and out.dtype == dtype
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert x.grad.shape == x.shape and torch.isfinite(x.grad).all()
    g = layer.latent_weight.grad
    assert g.shape == (out_f, in_f) and g.dtype == dtype and torch.isfinite(g).all()
    wb = layer.binary_weight()
    assert wb.shape == (out_f, in_f) and bool(((wb == 1) | (wb == -1)).all())


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    cin=st.integers(1, 4),
    cout=st.integers(1, 4),
    k=st.integers(1, 3),
    hw=st.integers(3, 6),
    n=st.integers(1, 3),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    noise=st.sampled_from(list(NOISES)),
    training=st.booleans(),
)
def test_conv_property_shapes_finite_pm1(cin, cout, k, hw, n, dtype, noise, training) -> None:
    torch.manual_seed(cin * 10 + cout)
    conv = BinaryConv2d(cin, cout, k, weight_noise=noise, dtype=dtype).train(training)
    x = torch.randn(n, cin, hw, hw, dtype=dtype, requires_grad=True)
    out = conv(x)
    assert out.shape == (n, cout, hw - k + 1, hw - k + 1) and out.dtype == dtype
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all() and conv.latent_weight.grad.shape == conv.latent_weight.shape
    assert torch.isfinite(conv.latent_weight.grad).all()
    wb = conv.binary_weight()
    assert bool(((wb == 1) | (wb == -1)).all())
