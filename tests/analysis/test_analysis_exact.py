"""The exact oracle: brute-force agreement, finite differences, limits and clear errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from stbin.analysis import exact_expected_loss, exact_gradients, exact_per_example_loss
from stbin.estimators.noise import get_noise
from stbin.nn import BinaryLinear, Sign, StochasticSign
from stbin.estimators import NOISES as _NOISE_REGISTRY

NOISES = tuple(_NOISE_REGISTRY)  # every registered noise
D = torch.float64


def logistic_loss(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return nn.functional.softplus(-t * o[:, 0])


def brute_force(model: nn.Sequential, loss_fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Naive recursion over every joint state of every unit and weight, one example at a time."""
    layers = list(model)

    def states(n: int):
        return [torch.tensor(c, dtype=D) for c in itertools.product((-1.0, 1.0), repeat=n)]

    def rec(i: int, h: torch.Tensor, prob: torch.Tensor, b: int) -> torch.Tensor:
        if i == len(layers):
            return prob * loss_fn(h[None], y[b:b + 1])[0]
        m = layers[i]
        if isinstance(m, nn.Linear):
            return rec(i + 1, m(h), prob, b)
        if isinstance(m, BinaryLinear):
            p = get_noise(m.weight_noise).prob_plus(m.latent_weight, m.weight_noise_scale).reshape(-1)
            return sum(rec(i + 1, h @ c.view_as(m.latent_weight).T + m.bias, prob * torch.where(c > 0, p, 1 - p).prod(), b)
                       for c in states(m.latent_weight.numel()))
        p = get_noise(m.noise).prob_plus(h, m.scale)
        return sum(rec(i + 1, c, prob * torch.where(c > 0, p, 1 - p).prod(), b) for c in states(h.numel()))

    return torch.stack([rec(0, x[b], torch.tensor(1.0, dtype=D), b) for b in range(x.shape[0])]).mean()


def data(n: int = 5, d: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=D)
    y = torch.where(torch.rand(n, generator=g, dtype=D) < 0.5, -1.0, 1.0).to(D)
    return x, y


@pytest.mark.parametrize("noise", NOISES)
def test_matches_brute_force_two_layers(noise: str, uniform_init) -> None:
    m = uniform_init(nn.Sequential(nn.Linear(2, 3), StochasticSign(noise, 0.7), nn.Linear(3, 2),
                                   StochasticSign(noise, 1.3), nn.Linear(2, 1)).to(D), 1)
    x, y = data()
    assert torch.allclose(exact_expected_loss(m, logistic_loss, x, y), brute_force(m, logistic_loss, x, y),
                          atol=1e-13, rtol=0)


def test_matches_brute_force_bernoulli_weights(uniform_init) -> None:
    m = uniform_init(nn.Sequential(BinaryLinear(2, 2, dtype=D), StochasticSign("gaussian", 0.8),
                                   BinaryLinear(2, 1, weight_noise="uniform", weight_noise_scale=1.5, dtype=D)), 2)
    x, y = data(4)
    assert torch.allclose(exact_expected_loss(m, logistic_loss, x, y), brute_force(m, logistic_loss, x, y),
                          atol=1e-13, rtol=0)
    # no activation layer at all: only random weights
    m2 = uniform_init(nn.Sequential(BinaryLinear(2, 3, dtype=D), nn.Linear(3, 1, dtype=D)), 3)
    assert torch.allclose(exact_expected_loss(m2, logistic_loss, x, y), brute_force(m2, logistic_loss, x, y),
                          atol=1e-13, rtol=0)


def test_per_example_losses_average_to_the_expected_loss(uniform_init) -> None:
    m = uniform_init(nn.Sequential(nn.Linear(2, 4), StochasticSign(), nn.Linear(4, 1)).to(D), 4)
    x, y = data(7)
    per = exact_per_example_loss(m, logistic_loss, x, y)
    assert per.shape == (7,)
    assert torch.allclose(per.mean(), exact_expected_loss(m, logistic_loss, x, y))


def central_differences(model: nn.Module, f, eps: float = 1e-6) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in model.named_parameters():
        g = torch.zeros_like(p)
        flat, gf = p.data.view(-1), g.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + eps
            hi = f().item()
            flat[i] = old - eps
            lo = f().item()
            flat[i] = old
            gf[i] = (hi - lo) / (2 * eps)
        out[name] = g
    return out


@pytest.mark.parametrize("noise,scale", [("logistic", 1.0), ("logistic", 0.4), ("gaussian", 1.7), ("uniform", 2.5)])
def test_gradient_equals_central_differences(noise: str, scale: float, uniform_init) -> None:
    m = uniform_init(nn.Sequential(nn.Linear(2, 3), StochasticSign(noise, scale), nn.Linear(3, 3),
                                   StochasticSign(noise, scale), nn.Linear(3, 1)).to(D), 5)
    x, y = data(6)
    g = exact_gradients(m, logistic_loss, x, y)
    with torch.no_grad():
        fd = central_differences(m, lambda: exact_expected_loss(m, logistic_loss, x, y))
    assert list(g) == [n for n, _ in m.named_parameters()]
    for n in g:
        assert g[n].shape == dict(m.named_parameters())[n].shape
        assert torch.allclose(g[n], fd[n], atol=1e-8, rtol=1e-6), n
    assert max(v.abs().max().item() for v in g.values()) > 1e-3  # not a trivially zero gradient


def test_gradient_equals_central_differences_bernoulli_weights(uniform_init) -> None:
    m = uniform_init(nn.Sequential(BinaryLinear(2, 2, channel_scale="learned", dtype=D), StochasticSign(),
                                   BinaryLinear(2, 1, weight_noise="gaussian", weight_noise_scale=0.7, dtype=D)), 6)
    x, y = data(5)
    g = exact_gradients(m, logistic_loss, x, y)
    with torch.no_grad():
        fd = central_differences(m, lambda: exact_expected_loss(m, logistic_loss, x, y))
    assert set(g) == {"0.latent_weight", "0.learned_channel_scale", "0.bias", "2.latent_weight", "2.bias"}
    for n in g:
        assert torch.allclose(g[n], fd[n], atol=1e-8, rtol=1e-6), n


def test_float32_model_gets_float32_gradients_and_training_flag_is_irrelevant(uniform_init) -> None:
    m = uniform_init(nn.Sequential(nn.Linear(2, 3), StochasticSign(), nn.Linear(3, 1)), 7)
    x, y = data(4)
    g_train = exact_gradients(m, logistic_loss, x.float(), y.float())
    m.eval()
    g_eval = exact_gradients(m, logistic_loss, x.float(), y.float())
    for n, p in m.named_parameters():
        assert g_train[n].dtype == torch.float32 and p.grad is None
        assert torch.equal(g_train[n], g_eval[n])


def test_reference_size_network_equals_sum_over_all_joint_states(uniform_init) -> None:
    """15 units: the layer-by-layer sum equals a direct sum over all 2^15 joint states."""
    m = uniform_init(nn.Sequential(nn.Linear(2, 5), StochasticSign(), nn.Linear(5, 5), StochasticSign(),
                                   nn.Linear(5, 5), StochasticSign(), nn.Linear(5, 1)).to(D), 8)
    x, y = data(3)
    joint = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=15)), dtype=D)   # (32768, 15)
    h1, h2, h3 = joint[:, :5], joint[:, 5:10], joint[:, 10:]
    with torch.no_grad():
        def prob(a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
            p = torch.sigmoid(a)
            return torch.where(h > 0, p, 1 - p).prod(-1)
        rest = prob(m[2](h1), h2) * prob(m[4](h2), h3)                                # (32768,)
        out = m[6](h3)[:, 0]
        total = torch.stack([(prob(m[0](x[b]).expand(len(joint), 5), h1) * rest
                              * logistic_loss(out[:, None], y[b].expand(len(joint)))).sum() for b in range(3)])
        assert torch.allclose(total.mean(), exact_expected_loss(m, logistic_loss, x, y), atol=1e-13, rtol=0)


# -- limits and errors ---------------------------------------------------------------------

def test_too_many_units_is_refused_with_the_count() -> None:
    m = nn.Sequential(nn.Linear(2, 13), StochasticSign(), nn.Linear(13, 12), StochasticSign(), nn.Linear(12, 1))
    x, y = data(3)
    with pytest.raises(ValueError, match=r"25 binary units .*max_units=24"):
        exact_expected_loss(m, logistic_loss, x, y)
    with pytest.raises(ValueError, match=r"10 binary units \(5 stochastic activations \+ 5 Bernoulli weights\).*max_units=8"):
        exact_gradients(nn.Sequential(BinaryLinear(1, 5), StochasticSign(), nn.Linear(5, 1)), logistic_loss,
                        x[:, :1], y, max_units=8)
    small = nn.Sequential(nn.Linear(2, 3), StochasticSign(), nn.Linear(3, 1))
    exact_expected_loss(small, logistic_loss, x, y, max_units=3)  # configurable: exactly at the limit is fine
    with pytest.raises(ValueError, match="max_units=2"):
        exact_expected_loss(small, logistic_loss, x, y, max_units=2)


@pytest.mark.parametrize("layer,pattern", [
    (nn.ReLU(), r"unsupported layer '1' \(torch.nn.modules.activation.ReLU\).*supports.*StochasticSign"),
    (Sign("htanh"), r"unsupported layer '1' \(stbin.nn.activations.Sign\)"),
])
def test_unsupported_layer_names_type_and_alternatives(layer: nn.Module, pattern: str) -> None:
    m = nn.Sequential(nn.Linear(2, 3), layer, nn.Linear(3, 1))
    x, y = data(3)
    with pytest.raises(ValueError, match=pattern):
        exact_expected_loss(m, logistic_loss, x, y)


def test_unsupported_binary_linear_options() -> None:
    x, y = data(3)
    for kw, why in [({"weights": "sign"}, "deterministic"), ({"channel_scale": "mean_abs"}, "mean_abs"),
                    ({"input_quantizer": StochasticSign()}, "input_quantizer")]:
        with pytest.raises(ValueError, match=why):
            exact_expected_loss(nn.Sequential(BinaryLinear(2, 1, **kw)), logistic_loss, x, y)


def test_mismatched_shapes_are_clear() -> None:
    x, y = data(4)
    with pytest.raises(ValueError, match=r"mismatched shapes: layer '2' \(Linear\) expects 4 input features, got 3"):
        exact_expected_loss(nn.Sequential(nn.Linear(2, 3), StochasticSign(), nn.Linear(4, 1)), logistic_loss, x, y)
    m = nn.Sequential(nn.Linear(2, 3), StochasticSign(), nn.Linear(3, 1))
    with pytest.raises(ValueError, match=r"mismatched shapes: layer '0' \(Linear\) expects 2 input features, got 5"):
        exact_expected_loss(m, logistic_loss, torch.randn(4, 5, dtype=D), y)
    with pytest.raises(ValueError, match=r"x has 4 examples but y has shape \(3,\)"):
        exact_expected_loss(m, logistic_loss, x, y[:3])
    with pytest.raises(ValueError, match=r"per-example losses of shape \(\d+,\), got \(\)"):
        exact_expected_loss(m, lambda o, t: logistic_loss(o, t).mean(), x, y)


def test_flatten_first_and_identity_are_accepted(uniform_init) -> None:
    x, y = data(4, d=4)
    m = uniform_init(nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.Identity(), StochasticSign(),
                                   nn.Linear(2, 1)).to(D), 9)
    ref = uniform_init(nn.Sequential(nn.Linear(4, 2), StochasticSign(), nn.Linear(2, 1)).to(D), 9)
    a = exact_expected_loss(m, logistic_loss, x.view(4, 2, 2), y)
    assert torch.allclose(a, exact_expected_loss(ref, logistic_loss, x, y))
    with pytest.raises(ValueError, match="Flatten is supported only before"):
        exact_expected_loss(nn.Sequential(nn.Linear(4, 2), nn.Flatten(), nn.Linear(2, 1)), logistic_loss, x, y)
