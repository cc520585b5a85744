"""Single-sample estimators: unbiasedness by convergence, ST's exactness and bias by enumeration,
use of the library's ST, reproducibility and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stbin.analysis import (GRADIENT_ESTIMATORS as METHODS, estimate_gradients, exact_gradients, expected_estimate, sample_gradients)
from stbin.nn import BinaryLinear, Sign, StochasticSign

D = torch.float64


def logistic_loss(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return nn.functional.softplus(-t * o[:, 0])


def affine_loss(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return t * o[:, 0]


def data(n: int = 6, d: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=D)
    y = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0).to(D)
    return x, y


@pytest.fixture
def two_layer(uniform_init):
    """``two_layer(noise="logistic", scale=1.0, seed=1)``: a seeded Linear-StochasticSign-Linear network."""
    def build(noise: str = "logistic", scale: float = 1.0, seed: int = 1) -> nn.Sequential:
        return uniform_init(nn.Sequential(nn.Linear(2, 3), StochasticSign(noise, scale), nn.Linear(3, 2),
                                          StochasticSign(noise, scale), nn.Linear(2, 1)).to(D), seed)

    return build


def flat(d: dict[str, torch.Tensor], lead: int = 0) -> torch.Tensor:
    return torch.cat([v.reshape(*v.shape[:lead], -1) for v in d.values()], -1)


def z_scores(samples: dict[str, torch.Tensor], exact: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    s = flat(samples, 1)
    se = s.std(0) / s.shape[0] ** 0.5
    return (s.mean(0) - flat(exact)) / se, se


# -- unbiasedness: the sample mean converges to the exact gradient ---------------------------

UNBIASED = ("reinforce", "reinforce_baseline", "arm", "disarm")


@pytest.mark.parametrize("noise,scale", [("logistic", 1.0), ("gaussian", 0.8), ("uniform", 1.5)])
@pytest.mark.parametrize("method", UNBIASED)
def test_unbiased_estimators_converge_to_exact_gradient(method: str, noise: str, scale: float, two_layer) -> None:
    """Every coordinate of the mean of n estimates is within 5 standard errors (measured) of the truth."""
    m = two_layer(noise, scale)
    x, y = data()
    exact = exact_gradients(m, logistic_loss, x, y)
    n = 100000 if method == "reinforce" else 20000  # REINFORCE without baseline: the largest variance
    samples = sample_gradients(m, logistic_loss, x, y, method, n, torch.Generator().manual_seed(3))
    z, se = z_scores(samples, exact)
    assert z.abs().max() < 5.0, z
    # the tolerance is tight enough to see a bias of a few percent of the gradient
    assert (5 * se).norm() < 0.1 * flat(exact).norm()


@pytest.mark.parametrize("method", UNBIASED)
def test_unbiased_with_bernoulli_weights(method: str, uniform_init) -> None:
    m = uniform_init(nn.Sequential(BinaryLinear(2, 2, dtype=D), StochasticSign("logistic", 1.0),
                                   BinaryLinear(2, 1, weight_noise="gaussian", weight_noise_scale=0.8, dtype=D)), 4)
    x, y = data(5)
    exact = exact_gradients(m, logistic_loss, x, y)
    samples = sample_gradients(m, logistic_loss, x, y, method, 20000, torch.Generator().manual_seed(5))
    z, _ = z_scores(samples, exact)
    assert z.abs().max() < 5.0, z


def test_st_is_biased_by_convergence_too(two_layer) -> None:
    """Negative control of the convergence test: ST's mean is many standard errors off."""
    m = two_layer()
    x, y = data()
    exact = exact_gradients(m, logistic_loss, x, y)
    z, _ = z_scores(sample_gradients(m, logistic_loss, x, y, "st", 20000, torch.Generator().manual_seed(3)), exact)
    assert z.abs().max() > 10.0


# -- ST: exact for one hidden layer + affine loss, biased for two layers + cross-entropy -----

@pytest.mark.parametrize("noise,scale", [("logistic", 1.0), ("uniform", 2.0), ("gaussian", 0.5)])
def test_st_exact_one_hidden_layer_affine_loss(noise: str, scale: float, uniform_init) -> None:
    """E[g_ST] (all 2^4 states enumerated) equals the exact gradient; the hidden layer's ST has no variance."""
    m = uniform_init(nn.Sequential(nn.Linear(2, 4), StochasticSign(noise, scale), nn.Linear(4, 1)).to(D), 6)
    x, y = data()
    exact = exact_gradients(m, affine_loss, x, y)
    mean_st = expected_estimate(m, affine_loss, x, y, "st")
    for n in exact:
        assert torch.allclose(mean_st[n], exact[n], atol=1e-13, rtol=0), n
    s = sample_gradients(m, affine_loss, x, y, "st", 50, torch.Generator().manual_seed(0))
    for n in ("0.weight", "0.bias"):
        assert torch.allclose(s[n], s[n][:1].expand_as(s[n]), atol=1e-14, rtol=0)
    assert s["2.weight"].std(0).max() > 0  # the output layer sees the sampled states


def test_st_exact_for_bernoulli_weights_with_affine_loss(uniform_init) -> None:
    m = uniform_init(nn.Sequential(BinaryLinear(3, 2, dtype=D)), 7)
    x, y = data(4, d=3)
    loss = lambda o, t: t * (o[:, 0] - 2 * o[:, 1])  # noqa: E731
    exact, mean_st = exact_gradients(m, loss, x, y), expected_estimate(m, loss, x, y, "st")
    for n in exact:
        assert torch.allclose(mean_st[n], exact[n], atol=1e-13, rtol=0), n


def test_st_biased_two_layers_cross_entropy(two_layer) -> None:
    """With two stochastic layers and the logistic loss, E[g_ST] differs from the truth (REINFORCE: control)."""
    m = two_layer()
    x, y = data()
    exact = flat(exact_gradients(m, logistic_loss, x, y))
    st = flat(expected_estimate(m, logistic_loss, x, y, "st"))
    rf = flat(expected_estimate(m, logistic_loss, x, y, "reinforce"))
    assert torch.allclose(rf, exact, atol=1e-13, rtol=0)
    assert (st - exact).norm() / exact.norm() > 0.02
    # the output layer's ST gradient is pathwise and stays exact
    out = expected_estimate(m, logistic_loss, x, y, "st")["4.bias"]
    assert torch.allclose(out, exact_gradients(m, logistic_loss, x, y)["4.bias"], atol=1e-13)


def test_expected_estimate_agrees_with_sampling(two_layer) -> None:
    m = two_layer("gaussian", 0.7, seed=3)
    x, y = data()
    for method in ("st", "reinforce_baseline"):
        mean = expected_estimate(m, logistic_loss, x, y, method)
        z, _ = z_scores(sample_gradients(m, logistic_loss, x, y, method, 20000, torch.Generator().manual_seed(1)), mean)
        assert z.abs().max() < 5.0, (method, z)


# -- the estimators run the library's own estimators ---------------------------------------

def test_st_sample_is_the_library_st_backward(two_layer) -> None:
    """One ST estimate equals backprop through the model in training mode with the same random stream."""
    m = two_layer(seed=8)
    x, y = data()
    g_model = torch.Generator().manual_seed(11)
    for mod in m:
        if isinstance(mod, StochasticSign):
            mod.generator = g_model
    m.train()
    m.zero_grad()
    logistic_loss(m(x), y).mean().backward()
    est = sample_gradients(m, logistic_loss, x, y, "st", 1, torch.Generator().manual_seed(11), chunk_size=1)
    for n, p in m.named_parameters():
        assert torch.allclose(est[n][0], p.grad, atol=1e-14, rtol=1e-12), n


@pytest.mark.parametrize("proxy", ["htanh", "tanh", "identity"])
def test_deterministic_proxies_are_backprop_through_sign(proxy: str, two_layer) -> None:
    m = two_layer(seed=9)
    x, y = data()
    det = nn.Sequential(*[Sign(proxy) if isinstance(mod, StochasticSign) else mod for mod in m])
    m.zero_grad()
    logistic_loss(det(x), y).mean().backward()
    s = sample_gradients(m, logistic_loss, x, y, f"det_{proxy}", 3)
    for n, p in m.named_parameters():
        assert torch.allclose(s[n], p.grad.expand_as(s[n]), atol=1e-14, rtol=1e-12), n


# -- API behaviour -------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["st", "det_tanh", "reinforce", "reinforce_baseline", "arm", "disarm",
                                    "concrete:0.1", "concrete", "st_concrete:1"])
def test_shapes_reproducibility_and_mean(method: str, uniform_init) -> None:
    m = uniform_init(nn.Sequential(BinaryLinear(2, 3, dtype=D), StochasticSign("uniform", 1.2), nn.Linear(3, 1)).to(D), 2)
    x, y = data(4)
    a = sample_gradients(m, logistic_loss, x, y, method, 7, torch.Generator().manual_seed(4), chunk_size=3)
    b = sample_gradients(m, logistic_loss, x, y, method, 7, torch.Generator().manual_seed(4), chunk_size=3)
    mean = estimate_gradients(m, logistic_loss, x, y, method, 7, torch.Generator().manual_seed(4), chunk_size=3)
    assert list(a) == [n for n, _ in m.named_parameters()]
    for n, p in m.named_parameters():
        assert a[n].shape == (7, *p.shape) and torch.isfinite(a[n]).all()
        assert torch.equal(a[n], b[n])
        assert torch.allclose(mean[n], a[n].mean(0), atol=1e-14)
        assert p.grad is None


def test_concrete_temperature_changes_the_estimate(two_layer) -> None:
    m = two_layer()
    x, y = data()
    a = estimate_gradients(m, logistic_loss, x, y, "concrete:0.5", 200, torch.Generator().manual_seed(0))
    b = estimate_gradients(m, logistic_loss, x, y, "concrete:2", 200, torch.Generator().manual_seed(0))
    assert not torch.allclose(flat(a), flat(b))


def test_bad_methods_and_arguments(two_layer) -> None:
    m = two_layer()
    x, y = data()
    with pytest.raises(ValueError, match=r"unknown gradient estimator 'reinforc' \(did you mean 'reinforce'\?\)"):
        sample_gradients(m, logistic_loss, x, y, "reinforc", 2)
    with pytest.raises(ValueError, match="takes no parameter"):
        sample_gradients(m, logistic_loss, x, y, "st:0.5", 2)
    with pytest.raises(ValueError, match="temperature must be positive"):
        sample_gradients(m, logistic_loss, x, y, "concrete:-1", 2)
    with pytest.raises(ValueError, match="bad temperature"):
        sample_gradients(m, logistic_loss, x, y, "concrete:hot", 2)
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        sample_gradients(m, logistic_loss, x, y, "st", 0)
    with pytest.raises(ValueError, match="expected_estimate supports"):
        expected_estimate(m, logistic_loss, x, y, "arm")
    with pytest.raises(ValueError, match=r"unsupported layer '1' \(torch.nn.modules.activation.Tanh\)"):
        sample_gradients(nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1)), logistic_loss, x, y, "st", 2)
    with pytest.raises(ValueError, match="mismatched shapes"):
        sample_gradients(m, logistic_loss, x, y[:-1], "st", 2)
    assert set(METHODS.names()) >= {"st", "arm", "disarm", "reinforce", "reinforce_baseline", "concrete",
                                    "st_concrete", "det_htanh", "det_tanh", "det_identity"}
