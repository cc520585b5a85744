"""Reference gradients for real networks (plain and with the ST control variate) agree with the exact
oracle, within their stated errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stbin.analysis import exact_gradients, expected_estimate, reference_sample
from stbin.analysis import reference
from stbin.analysis.chain import parse_chain
from stbin.analysis.control_variates import control_variate_sample, paired_draw
from stbin.nn import BinaryConv2d, BinaryLinear, StochasticSign

D = torch.float64


def logistic_loss(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return nn.functional.softplus(-t * o[:, 0])


class Same(nn.Module):
    """An identity the fast paths do not recognise (forces the generic two-state evaluations)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.fixture
def small_net(uniform_init):
    """``small_net(generic=False)``: a seeded two-binary-layer network (``generic``: with a :class:`Same`)."""
    return lambda generic=False: _small_net(uniform_init, generic)


def _small_net(init, generic: bool) -> nn.Sequential:
    extra = [Same()] if generic else []
    return init(nn.Sequential(nn.Linear(2, 3), StochasticSign(), BinaryLinear(3, 3), *extra,
                              StochasticSign("uniform", 1.5),
                              BinaryLinear(3, 1, weight_noise="gaussian", weight_noise_scale=0.8)).to(D), 3)


def data(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 2, generator=g, dtype=D), torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0).to(D)


def mean_and_se(model, x, y, ref: str, n: int, seed: int) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    samples = [reference_sample(model, logistic_loss, x, y, ref, g) for _ in range(n)]
    mean = {k: torch.stack([s[k] for s in samples]).mean(0) for k in samples[0]}
    se = {k: torch.stack([s[k] for s in samples]).std(0) / n ** 0.5 for k in samples[0]}
    return mean, se


@pytest.mark.parametrize("ref", ["local_expectation", "disarm"])
@pytest.mark.parametrize("generic", [False, True])
def test_references_agree_with_the_exact_gradient(ref: str, generic: bool, small_net) -> None:
    """Every coordinate of the mean of 300 samples is within 4.5 of its standard errors of the truth
    (about 30 coordinates: a false alarm has probability < 1e-3), and the errors are small enough
    to see the bias of ST."""
    twin = small_net()                     # the oracle's copy (same parameters, no Same layer)
    m = small_net(generic)
    x, y = data()
    exact = list(exact_gradients(twin, logistic_loss, x, y).values())
    st = list(expected_estimate(twin, logistic_loss, x, y, "st", max_units=18).values())
    mean, se = mean_and_se(m, x, y, ref, 300, 7)
    seen_st_bias = False
    for k, g, gst in zip(mean, exact, st):
        z = (mean[k] - g) / se[k].clamp_min(1e-12)
        assert z.abs().max() < 4.5, (k, z)
        seen_st_bias |= bool(((gst - g).abs() > 4.5 * se[k]).any())
    if ref == "local_expectation":
        assert seen_st_bias  # the same test rejects ST's expectation: it has the power to see a bias


def test_unit_fast_path_equals_the_generic_evaluation(uniform_init, monkeypatch) -> None:
    """Flipping units through the rank-one update and thresholds gives the same numbers as rerunning the
    flipped states through every layer (same sample; without the next layer's control variate, which
    only the fast path has)."""
    monkeypatch.setattr(reference, "RAO_BLACKWELL", False)
    def net(generic: bool) -> nn.Sequential:
        extra = [Same()] if generic else []
        return uniform_init(nn.Sequential(nn.Linear(2, 4), StochasticSign(), nn.Linear(4, 3), nn.BatchNorm1d(3),
                                          *extra, StochasticSign("gaussian", 0.7), nn.Linear(3, 1)).to(D), 5)
    a, b = net(False), net(True)
    with torch.no_grad():
        for bn in (a[3], b[3]):
            bn.running_mean.copy_(torch.tensor([0.2, -0.1, 0.3])), bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.0]))
    x, y = data(5)
    ga = reference_sample(a, logistic_loss, x, y, "local_expectation", torch.Generator().manual_seed(1))
    gb = reference_sample(b, logistic_loss, x, y, "local_expectation", torch.Generator().manual_seed(1))
    assert len(ga) == len(gb)
    for va, vb in zip(ga.values(), gb.values()):
        torch.testing.assert_close(va, vb)
        assert va.abs().max() > 0


def test_conv_network_local_expectation_and_disarm_agree(uniform_init) -> None:
    """On a conv SBN (beyond the oracle) the two independent unbiased references have the same mean."""
    torch.manual_seed(0)
    m = uniform_init(nn.Sequential(BinaryConv2d(1, 2, 3, padding=1, weight_noise_scale=0.5), nn.BatchNorm2d(2),
                                   StochasticSign(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 1)).to(D), 2)
    m[1].eval()
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(4), dtype=D)
    y = torch.tensor([1.0, -1.0, 1.0], dtype=D)
    le, se_le = mean_and_se(m, x, y, "local_expectation", 300, 1)
    da, se_da = mean_and_se(m, x, y, "disarm", 300, 2)
    for k in le:
        z = (le[k] - da[k]) / (se_le[k] ** 2 + se_da[k] ** 2).sqrt().clamp_min(1e-12)
        assert z.abs().max() < 4.5, (k, z)
    assert le["0.latent_weight"].abs().max() > 3 * se_le["0.latent_weight"].max()


def test_model_is_left_unchanged(small_net) -> None:
    m = small_net()
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x, y = data()
    reference_sample(m, logistic_loss, x, y, "local_expectation", torch.Generator().manual_seed(0))
    assert m.training and all(mod.training for mod in m.modules())
    assert all(p.grad is None for p in m.parameters())
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])


def test_bad_inputs(small_net) -> None:
    x, y = data()
    with pytest.raises(ValueError, match="unknown reference 'exact'"):
        reference_sample(small_net(), logistic_loss, x, y, "exact")
    from stbin.nn import Sign
    with pytest.raises(ValueError, match=r"layer '1' \(Sign\).*deterministic"):
        reference_sample(nn.Sequential(nn.Linear(2, 3), Sign(), nn.Linear(3, 1)), logistic_loss, x, y)
    with pytest.raises(ValueError, match="no stochastic binary units"):
        reference_sample(nn.Sequential(nn.Linear(2, 1)), logistic_loss, x, y)


@pytest.mark.parametrize("ref", ["local_expectation", "disarm"])
def test_control_variate_reference_is_unbiased(ref: str, small_net) -> None:
    """Every coordinate of the mean of 300 control-variate samples (units of two noises, Bernoulli weights
    of two noises) is within 4.5 standard errors of the exact gradient; for local expectations the same
    test rejects ST's expectation (the control variate's own mean)."""
    m = small_net()
    x, y = data()
    exact = exact_gradients(m, logistic_loss, x, y)
    st = expected_estimate(m, logistic_loss, x, y, "st", max_units=18)
    g = torch.Generator().manual_seed(3)
    samples = [control_variate_sample(m, logistic_loss, x, y, ref, g, st_samples=2) for _ in range(300)]
    seen_st_bias = False
    for k in exact:
        s = torch.stack([v[k] for v in samples])
        se = (s.std(0) / 300 ** 0.5).clamp_min(1e-12)
        z = (s.mean(0) - exact[k]) / se
        assert z.abs().max() < 4.5, (k, z)
        seen_st_bias |= bool(((st[k] - exact[k]).abs() > 4.5 * se).any())
    if ref == "local_expectation":
        assert seen_st_bias  # the test has the power to see a bias


def test_paired_difference_is_st_bias_with_less_variance(small_net) -> None:
    """E[s_0 - r] = E[ST] - g (within 4.5 standard errors), its variance is below that of the plain
    reference, and on the real output layer s_0 = r exactly (ST is exact there)."""
    m = small_net()
    x, y = data()
    exact = exact_gradients(m, logistic_loss, x, y)
    st = expected_estimate(m, logistic_loss, x, y, "st", max_units=18)
    bias = torch.cat([(st[k] - exact[k]).flatten() for k in exact])
    chain = parse_chain(m)
    params = chain.params()
    g = torch.Generator().manual_seed(5)
    draws = [paired_draw(chain, logistic_loss, x, y, "local_expectation", g, params, 1) for _ in range(300)]
    d = torch.stack([s0 - r for r, s0, _ in draws])
    r = torch.stack([r for r, _, _ in draws])
    z = (d.mean(0) - bias) / (d.std(0) / 300 ** 0.5).clamp_min(1e-12)
    assert z.abs().max() < 4.5
    assert d.var(0).sum() < 0.75 * r.var(0).sum()  # 0.56 here
    names = list(params)
    sizes = [p.numel() for p in params.values()]
    last = torch.split(d, sizes, dim=1)[names.index("4.bias")]
    assert last.abs().max() == 0


def test_bad_st_samples(small_net) -> None:
    x, y = data()
    with pytest.raises(ValueError, match="st_samples must be an integer >= 1, got 0"):
        control_variate_sample(small_net(), logistic_loss, x, y, st_samples=0)


def test_next_layer_control_variate_lowers_the_variance(monkeypatch, uniform_init) -> None:
    """The zero-mean next-layer term (unbiased: the oracle tests above run with it) lowers the variance of
    the first layer's local-expectation gradient on a net with three stochastic layers."""
    net = uniform_init(nn.Sequential(nn.Linear(2, 6), StochasticSign(), nn.Linear(6, 6), StochasticSign(),
                                     nn.Linear(6, 6), StochasticSign(), nn.Linear(6, 1)).to(D), 9)
    x, y = data(8)

    def spread(rb: bool) -> float:
        monkeypatch.setattr(reference, "RAO_BLACKWELL", rb)
        g = torch.Generator().manual_seed(0)
        s = torch.stack([reference_sample(net, logistic_loss, x, y, "local_expectation", g)["0.weight"]
                         for _ in range(150)])
        return float(s.var(0).sum())

    assert spread(True) < 0.2 * spread(False)  # 0.045 here
