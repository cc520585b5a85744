"""Properties of the activation modules of :mod:`stbin.nn` (Shekhovtsov & Yanush, GCPR 2021; Yin et al., ICLR 2019).

StochasticSign samples in training and uses ``eval_mode`` in evaluation (``mode`` = sign,
``sample`` = a fresh draw, ``mean`` = 2F(a/s)-1); Sign / Heaviside / QuantReLU are
deterministic. Every closed form below is written out here independently of the library.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from stbin.nn import Heaviside, QuantReLU, Sign, StochasticSign
from stbin.estimators import NOISES as _NOISE_REGISTRY

NOISES = tuple(_NOISE_REGISTRY)  # every registered noise
HALF_AND_DOUBLE = (torch.float16, torch.bfloat16, torch.float64)


def cdf(noise: str, t: float) -> float:
    """F(t) of the standard noise from scipy.stats as an independent reference."""
    return float({"logistic": stats.logistic, "uniform": stats.uniform(-1.0, 2.0), "gaussian": stats.norm}[noise].cdf(t))


def mean_proxy(noise: str, a: float, s: float) -> float:
    """2F(a/s) - 1 in closed form (tanh, hard tanh, erf)."""
    if noise == "logistic":
        return math.tanh(a / (2.0 * s))
    if noise == "uniform":
        return min(max(a / s, -1.0), 1.0)
    return math.erf(a / (s * math.sqrt(2.0)))


def ref_sign(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1 (also for -0.0)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


# --------------------------------------------------------------------------- StochasticSign


@pytest.mark.parametrize("noise", NOISES)
def test_stochastic_sign_training_samples_with_probability_F(noise: str) -> None:
    """Training mode draws x = +1 with probability F(a/s): frequency within 5 binomial SEs."""
    s, n = 0.7, 20000
    a_values = [-1.0, -0.3, 0.0, 0.2, 0.6]
    g = torch.Generator().manual_seed(1234)
    m = StochasticSign(noise, scale=s, generator=g)
    assert m.training
    a = torch.tensor(a_values).repeat(n, 1)  # column j holds n copies of a_values[j]
    x = m(a)
    assert x.dtype == a.dtype and x.shape == a.shape
    assert set(x.unique().tolist()) <= {-1.0, 1.0}
    freq = (x == 1).double().mean(0)
    for j, av in enumerate(a_values):
        p = cdf(noise, av / s)
        se = math.sqrt(max(p * (1 - p), 1e-12) / n)
        assert abs(freq[j].item() - p) <= 5 * se + 1e-12, (noise, av, freq[j].item(), p)


def test_stochastic_sign_training_is_random_and_seeded() -> None:
    """Two training forwards differ; the same generator seed repeats bit for bit."""
    a = torch.zeros(1000)
    m = StochasticSign("logistic", generator=torch.Generator().manual_seed(0))
    x1, x2 = m(a), m(a)
    assert not torch.equal(x1, x2)
    m2 = StochasticSign("logistic", generator=torch.Generator().manual_seed(0))
    assert torch.equal(m2(a), x1) and torch.equal(m2(a), x2)
    torch.manual_seed(5)
    y1 = StochasticSign("gaussian")(a)
    torch.manual_seed(5)
    y2 = StochasticSign("gaussian")(a)
    assert torch.equal(y1, y2)


@pytest.mark.parametrize("noise", NOISES)
def test_stochastic_sign_eval_mode_is_sign_with_sign0_plus1(noise: str) -> None:
    m = StochasticSign(noise, scale=0.5).eval()
    assert m.eval_mode == "mode"
    a = torch.tensor([-2.0, -1e-6, -0.0, 0.0, 1e-6, 3.0])
    out = m(a)
    assert torch.equal(out, torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0, 1.0]))
    # deterministic: repeated calls agree
    assert torch.equal(m(a), out)


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("s", [0.5, 1.0, 2.0])
def test_stochastic_sign_eval_mean_is_2F_minus_1(noise: str, s: float) -> None:
    m = StochasticSign(noise, scale=s, eval_mode="mean").eval()
    vals = [-3.0, -1.0, -0.4, 0.0, 0.3, 0.5, 1.0, 2.5]
    a = torch.tensor(vals, dtype=torch.float64)
    out = m(a)
    expected = torch.tensor([mean_proxy(noise, v, s) for v in vals], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # training mode ignores eval_mode: it samples
    m.train()
    assert set(m(a.repeat(50)).unique().tolist()) <= {-1.0, 1.0}


def test_stochastic_sign_eval_sample_draws() -> None:
    g = torch.Generator().manual_seed(3)
    m = StochasticSign("uniform", scale=1.0, eval_mode="sample", generator=g).eval()
    a = torch.zeros(2000)
    x1, x2 = m(a), m(a)
    assert set(x1.unique().tolist()) == {-1.0, 1.0}
    assert not torch.equal(x1, x2)
    # uniform noise: |a| >= s is deterministic even when sampling
    sat = m(torch.tensor([-1.0, -5.0, 1.0, 5.0]).repeat(200))
    assert torch.equal(sat, torch.tensor([-1.0, -1.0, 1.0, 1.0]).repeat(200))


@pytest.mark.parametrize("noise", NOISES)
def test_stochastic_sign_backward_is_st_factor(noise: str) -> None:
    """Module backward = (2/s) F'(a/s) * upstream, in train and eval modes alike."""
    s = 0.8
    vals = [-2.0, -0.8, -0.3, 0.0, 0.5, 0.8, 1.5]

    def dF(t: float) -> float:
        if noise == "logistic":
            sg = 1.0 / (1.0 + math.exp(-t))
            return sg * (1 - sg)
        if noise == "uniform":
            return 0.5 if abs(t) <= 1.0 else 0.0
        return math.exp(-t * t / 2) / math.sqrt(2 * math.pi)

    up = torch.linspace(-1.0, 2.0, len(vals), dtype=torch.float64)
    expected = torch.tensor([2 / s * dF(v / s) for v in vals], dtype=torch.float64) * up
    for mode in ("train", "mode", "mean", "sample"):
        m = StochasticSign(noise, scale=s, eval_mode="mode" if mode == "train" else mode)
        m.train(mode == "train")
        a = torch.tensor(vals, dtype=torch.float64, requires_grad=True)
        (m(a) * up).sum().backward()
        torch.testing.assert_close(a.grad, expected, rtol=1e-12, atol=1e-14)


def test_stochastic_sign_extra_repr() -> None:
    r = repr(StochasticSign("gaussian", scale=0.25, eval_mode="mean"))
    assert r.startswith("StochasticSign(")
    assert "noise='gaussian'" in r and "scale=0.25" in r and "eval_mode='mean'" in r


def test_stochastic_sign_state_dict_round_trip() -> None:
    m = StochasticSign("uniform", scale=0.5).eval()
    sd = m.state_dict()
    m2 = StochasticSign("uniform", scale=0.5).eval()
    m2.load_state_dict(sd, strict=True)
    a = torch.linspace(-1, 1, 11)
    assert torch.equal(m(a), m2(a))


# --------------------------------------------------------------------------- Sign / Heaviside


def test_sign_module_values_and_modes() -> None:
    m = Sign("htanh", clip=1.0)
    a = torch.tensor([-2.0, -0.5, -0.0, 0.0, 0.5, 2.0], requires_grad=True)
    for training in (True, False):
        m.train(training)
        out = m(a)
        assert torch.equal(out, ref_sign(a.detach()))
    out.backward(torch.ones_like(out))
    # htanh backward: 1[|a| <= 1]
    assert torch.equal(a.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.0]))


def test_sign_module_tanh_and_identity_backward() -> None:
    a = torch.tensor([-1.5, -0.2, 0.0, 0.7, 3.0], dtype=torch.float64, requires_grad=True)
    Sign("tanh")(a).sum().backward()
    torch.testing.assert_close(a.grad, 1 - torch.tanh(a.detach()) ** 2, rtol=1e-12, atol=1e-14)
    a.grad = None
    Sign("identity")(a).sum().backward()
    assert torch.equal(a.grad, torch.ones_like(a))


def test_sign_extra_repr() -> None:
    assert "proxy='htanh'" in repr(Sign()) and "clip=0.5" in repr(Sign("htanh", clip=0.5))
    r = repr(Sign("swish_sign", beta=3.0))
    assert "proxy='swish_sign'" in r and "beta=3" in r
    assert "proxy='tanh'" in repr(Sign("tanh"))


def test_heaviside_module_values_and_extra_repr() -> None:
    m = Heaviside("relu")
    x = torch.tensor([-1.0, -0.0, 0.0, 1e-7, 0.5, 2.0], requires_grad=True)
    out = m(x)
    assert torch.equal(out, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))
    out.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))  # relu STE: 1[x>0]
    assert "ste='relu'" in repr(m)
    assert "ste='clipped_relu'" in repr(Heaviside())


# --------------------------------------------------------------------------- QuantReLU


def test_quant_relu_levels_and_ties() -> None:
    m = QuantReLU(bits=2, alpha=0.5)
    x = torch.tensor([-1.0, 0.0, 0.2, 0.25, 0.3, 0.74, 0.76, 1.3, 5.0])
    # nearest of {0, .5, 1, 1.5}; ties round up (0.25 -> 0.5); clipped at 3 alpha
    assert torch.equal(m(x), torch.tensor([0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.5, 1.5]))


def test_quant_relu_default_alpha_is_lloyd() -> None:
    from stbin.estimators import lloyd_alpha

    for b in (1, 2, 4):
        assert QuantReLU(bits=b).alpha == lloyd_alpha(b)


def test_quant_relu_extra_repr() -> None:
    r = repr(QuantReLU(bits=3, alpha=0.25, ste="relu"))
    assert "bits=3" in r and "alpha=0.2500" in r and "ste='relu'" in r


def test_quant_relu_state_dict_carries_alpha_bits_ste() -> None:
    src = QuantReLU(bits=2, alpha=0.5, ste="identity")
    sd = src.state_dict()
    assert "_extra_state" in sd
    dst = QuantReLU(bits=3, alpha=0.9, ste="relu")
    dst.load_state_dict(sd)
    assert dst.alpha == 0.5 and dst.bits == 2 and dst.ste == "identity"
    x = torch.linspace(-1, 3, 41, requires_grad=True)
    out = dst(x)
    assert torch.equal(out, src(x.detach()))
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # identity STE travelled too


def test_quant_relu_bad_extra_state_raises() -> None:
    m = QuantReLU(bits=2, alpha=0.5)
    bad = dict(m.state_dict())
    bad["_extra_state"] = {"bits": 2, "alpha": -1.0, "ste": "relu"}
    with pytest.raises(ValueError, match="-1.0"):
        m.load_state_dict(bad)
    bad["_extra_state"] = {"bits": 2, "alpha": 0.5, "ste": "nope"}
    with pytest.raises(ValueError, match="clipped_relu"):
        m.load_state_dict(bad)


# --------------------------------------------------------------------------- dtypes


def _modules() -> list[torch.nn.Module]:
    return [
        StochasticSign("logistic").train(),
        StochasticSign("gaussian", eval_mode="mean").eval(),
        StochasticSign("uniform", eval_mode="mode").eval(),
        Sign("swish_sign"),
        Sign("tanh"),
        Heaviside(),
        QuantReLU(bits=2),
    ]


@pytest.mark.parametrize("dtype", HALF_AND_DOUBLE, ids=str)
def test_to_dtype_gives_finite_outputs_of_that_dtype(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, generator=g) * 3
    for m in _modules():
        m = m.to(dtype)
        x = x0.to(dtype).requires_grad_(True)
        out = m(x)
        assert out.dtype == dtype, (m, out.dtype)
        assert torch.isfinite(out).all(), m
        out.float().pow(2).sum().backward()
        assert x.grad is not None and x.grad.dtype == dtype and torch.isfinite(x.grad).all(), m


# --------------------------------------------------------------------------- errors


def test_bad_names_list_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"gaussian.*logistic.*uniform"):
        StochasticSign(noise="gauss")
    with pytest.raises(ValueError, match=r"mean.*mode.*sample"):
        StochasticSign(eval_mode="deterministic")
    with pytest.raises(ValueError, match=r"approx_sign.*htanh.*identity.*swish_sign.*tanh"):
        Sign(proxy="hardtanh")
    with pytest.raises(ValueError, match=r"clipped_relu.*identity.*relu"):
        Heaviside(ste="clip")
    with pytest.raises(ValueError, match=r"clipped_relu.*identity.*relu"):
        QuantReLU(ste="crelu")


@pytest.mark.parametrize("build, bad", [
    (lambda: StochasticSign(scale=0.0), "0.0"),
    (lambda: StochasticSign(scale=-2.5), "-2.5"),
    (lambda: StochasticSign(scale=float("nan")), "nan"),
    (lambda: Sign(clip=-1.0), "-1.0"),
    (lambda: Sign(beta=0), "0"),
    (lambda: QuantReLU(bits=0), "0"),
    (lambda: QuantReLU(bits=2.5), "2.5"),
    (lambda: QuantReLU(alpha=-0.5), "-0.5"),
])
def test_bad_values_name_the_value(build, bad: str) -> None:
    with pytest.raises(ValueError, match=f"got {bad}"):
        build()
