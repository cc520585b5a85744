"""Any nn.Module of stbin layers (residual, binarize-converted): the hooked reference agrees with exact enumeration."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
from torch import nn

from stbin.analysis import gradient_quality, reference_sample
from stbin.analysis.control_variates import control_variate_sample
from stbin.analysis.graph import HookedModel
from stbin.nn import BinaryLinear, Sign, StochasticSign

D = torch.float64


def logistic_loss(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return nn.functional.softplus(-t * o[:, 0])


class Residual(nn.Module):
    """x -> s1(inp x) = h -> out(h + s2(mid h)): a skip connection around a Bernoulli-weight layer."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(2, 3)
        self.s1 = StochasticSign()
        self.mid = BinaryLinear(3, 2, weight_noise="gaussian", weight_noise_scale=0.8)  # 6 weights
        self.s2 = StochasticSign("uniform", 1.5)
        self.pad = nn.Linear(2, 3)
        self.out = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.s1(self.inp(x))
        return self.out(h + self.pad(self.s2(self.mid(h))))


def residual() -> Residual:
    m = Residual().to(D)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(2 * torch.rand(p.shape, generator=g, dtype=D) - 1)
    return m


def data(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 2, generator=g, dtype=D), torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0).to(D)


def exact_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The gradient of the batch-mean expected loss by enumerating every joint state (units per example,
    weights shared), each state weighted by its probability under the model's noises."""
    hm = HookedModel(model, x)
    B = x.shape[0]
    sizes = [(m.latent_weight.numel() if nd.kind == "weight" else None) for nd, m in zip(hm.nodes, hm.modules)]
    # per-example unit counts from a traced run
    shapes: dict[int, tuple[int, ...]] = {}
    hm.run(x, lambda i, pre: shapes.setdefault(i, tuple(pre.shape)) and torch.ones_like(pre))
    bits = [int(torch.tensor(shapes[i][1:]).prod()) if s is None else s for i, s in enumerate(sizes)]
    total = torch.zeros((), dtype=D)
    for states in itertools.product((-1.0, 1.0), repeat=sum(bits)):
        st = torch.tensor(states, dtype=D)
        parts = torch.split(st, bits)
        logp = [torch.zeros(B, dtype=D)]

        def value(i: int, pre: torch.Tensor) -> torch.Tensor:
            nd = hm.nodes[i]
            s = parts[i].view(shapes[i][1:]) if nd.kind == "act" else parts[i].view_as(pre)
            s = s.expand_as(pre)
            p = nd.noise.prob_plus(pre, nd.scale)
            prob = torch.where(s > 0, p, 1 - p)
            logp[0] = logp[0] * (prob.reshape(B, -1).prod(1) if nd.kind == "act" else prob.prod())
            return s
        logp[0] = torch.ones(B, dtype=D)
        out = hm.run(x, value)
        total = total + (logp[0] * logistic_loss(out, y)).mean()
    params = dict(model.named_parameters())
    return dict(zip(params, torch.autograd.grad(total, list(params.values()))))


def mean_and_se(samples: list[dict]) -> tuple[dict, dict]:
    n = len(samples)
    return ({k: torch.stack([s[k] for s in samples]).mean(0) for k in samples[0]},
            {k: torch.stack([s[k] for s in samples]).std(0) / n ** 0.5 for k in samples[0]})


@functools.lru_cache(maxsize=1)
def residual_exact() -> dict[str, torch.Tensor]:
    return exact_gradient(residual(), *data())


@pytest.mark.parametrize("kind", ["local_expectation", "disarm", "control_variate"])
def test_residual_references_agree_with_exact_enumeration(kind: str) -> None:
    """Units of two noises and Bernoulli weights inside a residual block: every coordinate of the mean of
    200 samples is within 4.5 standard errors of the exact gradient."""
    m = residual()
    x, y = data()
    exact = residual_exact()
    g = torch.Generator().manual_seed(1)
    if kind == "control_variate":
        samples = [control_variate_sample(m, logistic_loss, x, y, "local_expectation", g, st_samples=1)
                   for _ in range(200)]
    else:
        samples = [reference_sample(m, logistic_loss, x, y, kind, g) for _ in range(200)]
    mean, se = mean_and_se(samples)
    assert set(mean) == set(exact)
    for k in exact:
        z = (mean[k] - exact[k]) / se[k].clamp_min(1e-12)
        assert z.abs().max() < 4.5, (k, z)
    assert mean["mid.latent_weight"].abs().max() > 0


def test_residual_gradient_quality_intervals_contain_exact_cosine() -> None:
    """gradient_quality on the residual net: the htanh proxy's cosine to the exact gradient (all parameters)
    lies in its interval, and the layers are found in the module order."""
    from stbin.analysis.gradient_estimators import parse_method
    from stbin.analysis.control_variates import method_sample
    m = residual()
    x, y = data()
    exact = residual_exact()
    hm = HookedModel(m, x)
    det = method_sample(hm, logistic_loss, x, y, parse_method("det_htanh")[0], None, None, hm.params())
    ge = torch.cat([exact[k].reshape(-1) for k in hm.params()])
    truth = float(det @ ge / (det.norm() * ge.norm()))
    res = gradient_quality(m, logistic_loss, x, y, methods=("st", "htanh"), tolerance=1e-6, max_samples=100,
                           generator=torch.Generator().manual_seed(4), st_samples=2)
    assert res.layers == ["inp.weight", "mid.latent_weight", "pad.weight", "out.weight"]
    v, hw = res.get("htanh", "all", "cosine"), res.get("htanh", "all", "cosine_hw")
    assert abs(v - truth) <= hw and hw < 0.2


def test_binarized_residual_module_agrees_with_exact_enumeration() -> None:
    """A float residual module converted by stbin.nn.binarize (ReLU -> stochastic units, the middle Linear ->
    Bernoulli weights): the control-variate reference agrees with exact enumeration, and gradient_quality
    runs on it."""
    from stbin.nn import binarize

    class FloatRes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.r1, self.b, self.r2, self.c = nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.ReLU(), \
                nn.Linear(2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.r1(self.a(x))
            return self.c(h + self.r2(self.b(h)))

    torch.manual_seed(0)
    x, y = data()
    m = binarize(FloatRes().to(D), x, activation="stochastic", weights="bernoulli", weight_noise_scale=4.0)
    assert isinstance(m.b, BinaryLinear) and isinstance(m.r1, StochasticSign)
    exact = exact_gradient(m, x, y)
    g = torch.Generator().manual_seed(2)
    mean, se = mean_and_se([control_variate_sample(m, logistic_loss, x, y, "local_expectation", g, st_samples=1)
                            for _ in range(200)])
    for k in exact:
        z = (mean[k] - exact[k]) / se[k].clamp_min(1e-12)
        assert z.abs().max() < 4.5, (k, z)
    res = gradient_quality(m, logistic_loss, x, y, methods=("st",), tolerance=0.5, max_samples=20,
                           generator=torch.Generator().manual_seed(0))
    assert res.n_samples >= 10 and "b.latent_weight" in res.layers


def test_hooked_model_refusals() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l, self.s = nn.Linear(2, 2), StochasticSign()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.s(self.l(self.s(self.l(x))))

    class Det(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l, self.s = nn.Linear(2, 1), Sign()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :1] + self.s(self.l(x))

    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="runs more than once"):
        HookedModel(Twice(), x)
    with pytest.raises(ValueError, match=r"layer 's' \(Sign\) is a deterministic binary layer"):
        HookedModel(Det(), x)
    with pytest.raises(ValueError, match="no stochastic binary units"):
        HookedModel(nn.Sequential(nn.Linear(2, 1)), x)
