"""The sparse flip propagation of local expectations (stbin.analysis._flips) against the row-by-row
evaluation and the exact oracle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stbin.analysis import _flips, exact_gradients, reference, reference_sample
from stbin.analysis.chain import analysis_mode, parse_chain
from stbin.estimators.noise import get_noise
from stbin.nn import BinaryLinear, StochasticSign

D = torch.float64


def ce(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(o, t, reduction="none")


def _deep_net(init) -> nn.Sequential:
    """Three stochastic layers: binary weights with batch norm (some scales negative), a real linear
    layer, a last binary layer with a learned channel scale into two logits."""
    net = init(nn.Sequential(nn.Linear(3, 5), StochasticSign(), BinaryLinear(5, 6, bias=False), nn.BatchNorm1d(6),
                             StochasticSign("gaussian", 0.7), nn.Linear(6, 4), StochasticSign("uniform", 1.5),
                             BinaryLinear(4, 2, channel_scale="learned", weight_noise_scale=0.5)).to(D), 11)
    with torch.no_grad():
        net[3].running_mean.copy_(torch.linspace(-0.3, 0.4, 6, dtype=D))
        net[3].running_var.copy_(torch.linspace(0.3, 2.0, 6, dtype=D))
        net[3].weight[0] = -abs(float(net[3].weight[0]))
    return net


@pytest.mark.parametrize("dense_outputs", [64, 0])
def test_sparse_flips_equal_the_row_by_row_evaluation(dense_outputs: int, uniform_init, monkeypatch) -> None:
    """Same sample, next-layer flip-noise terms on: the propagated flips (binary-weight stage in closed
    form, dense stages, the output by one batched product or, with ``dense_outputs=0``, by a sparse
    product) give the numbers of the row-by-row evaluation."""
    net = _deep_net(uniform_init)
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(2), dtype=D) * 2
    y = torch.arange(7) % 2
    monkeypatch.setattr(_flips, "DENSE_OUTPUTS", dense_outputs)
    out = {}
    for sparse in (True, False):
        monkeypatch.setattr(reference, "SPARSE_FLIPS", sparse)
        out[sparse] = [reference_sample(net, ce, x, y, "local_expectation", torch.Generator().manual_seed(s))
                       for s in range(3)]
    for a, b in zip(out[True], out[False]):
        for k in a:
            torch.testing.assert_close(a[k], b[k], msg=k)
    assert all(v.abs().max() > 0 for v in out[True][0].values())


def test_segments_are_read_only_where_the_chain_allows() -> None:
    """A non-linear map between stochastic layers (here a ReLU) leaves the row-by-row evaluation."""

    net = nn.Sequential(nn.Linear(3, 4), StochasticSign(), BinaryLinear(4, 4), StochasticSign(), nn.Linear(4, 4),
                        nn.ReLU(), StochasticSign(), nn.Linear(4, 2)).to(D)
    x, y = torch.randn(5, 3, dtype=D), torch.arange(5) % 2
    chain = parse_chain(net)
    with analysis_mode(net):
        s = reference._Sample(chain, x, y, ce, torch.Generator().manual_seed(0))
    assert _flips.segments(s, 0) is None and _flips.segments(s, 2) is None  # (act nodes 0, 2, 3; weights 1)
    segs = _flips.segments(s, 3)
    assert [g.node for g in segs] == [None] and segs[0].kappa is None
    net[5] = nn.Identity()
    chain = parse_chain(net)
    with analysis_mode(net):
        s = reference._Sample(chain, x, y, ce, torch.Generator().manual_seed(0))
    segs = _flips.segments(s, 0)
    assert [g.node for g in segs] == [2, 3, None]
    assert segs[0].kappa is not None and segs[1].kappa is None  # binary weights: |A| constant along the source


@pytest.mark.parametrize("noise,scale", [("logistic", 1.0), ("gaussian", 0.7), ("uniform", 1.5)])
@pytest.mark.parametrize("common", [0.0, 0.8])
def test_shifted_prob_sums_match_the_dense_sum(noise: str, scale: float, common: float) -> None:
    """S_ij = sum_b F((a_bi - kappa_i w_ij h_bj)/s) D_bi, with (common=0.8) and without a dominant input value."""
    g = torch.Generator().manual_seed(0)
    B, n, m = 9, 7, 5
    h = torch.randn(B, n, generator=g, dtype=D)
    h[torch.rand(B, n, generator=g) < common] = -0.42
    pre = torch.randn(B, m, generator=g, dtype=D)
    kappa = torch.randn(m, generator=g, dtype=D)
    w = torch.where(torch.rand(m, n, generator=g) < 0.5, 1.0, -1.0).to(D)
    Dw = torch.randn(B, m, generator=g, dtype=D)
    nd = parse_chain(nn.Sequential(nn.Linear(1, 1), StochasticSign(noise, scale))).nodes[0]
    want = (get_noise(noise).prob_plus(pre[:, :, None] - kappa[None, :, None] * w[None] * h[:, None, :], scale)
            * Dw[:, :, None]).sum(0)
    for budget in (1, 1 << 20):
        torch.testing.assert_close(_flips.shifted_prob_sums(nd, pre, kappa, w, h, Dw, budget), want)


def test_binary_first_layer_on_images_agrees_with_the_exact_gradient(uniform_init) -> None:
    """Bernoulli weights on real inputs with a background value (the weight term from common-value
    products plus the other inputs one by one): the mean of 300 samples is within 4.5 standard errors
    of the exact gradient in every coordinate."""
    net = uniform_init(nn.Sequential(BinaryLinear(4, 3, weight_noise_scale=0.8),
                                     StochasticSign(), nn.Linear(3, 2)).to(D), 4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=g, dtype=D)
    x[torch.rand(6, 4, generator=g) < 0.6] = -0.4
    y = torch.arange(6) % 2
    exact = exact_gradients(net, ce, x, y)
    samples = [reference_sample(net, ce, x, y, "local_expectation", g) for _ in range(300)]
    for k in exact:
        s = torch.stack([v[k] for v in samples])
        z = (s.mean(0) - exact[k]) / (s.std(0) / 300 ** 0.5).clamp_min(1e-12)
        assert z.abs().max() < 4.5, (k, z)
    assert samples[0]["0.latent_weight"].abs().max() > 0
