"""A gradient estimator registered from this file alone works everywhere the lab uses estimators."""

from __future__ import annotations

import math

import pytest
import torch

from stbin.analysis import GRADIENT_ESTIMATORS, GradientEstimator, LabConfig, exact_gradients, run_lab
from stbin.analysis.gradient_estimators import register
from stbin.analysis.protocol import logistic_loss, reference_data, reference_network
from stbin.analysis.report import write_report
from stbin.analysis.sampling import estimate_gradients, expected_estimate
from stbin.estimators import stochastic_sign


class HalfST(GradientEstimator):
    """Toy: the principled ST with its backward halved (so its expectation is exactly half ST's)."""

    name = "toy_half_st"
    description = "toy estimator of the extension test: ST with half the backward"
    enumerable = True

    def node_value(self, ctx, i, pre):
        nd = ctx.nodes[i]
        if ctx.forced is None:
            x = stochastic_sign(pre, nd.noise, nd.scale, "sample", ctx.generator)
        else:
            m = stochastic_sign(pre, nd.noise, nd.scale, "mean")
            x = ctx.sample(i, pre) + (m - m.detach())
        return x.detach() + 0.5 * (x - x.detach())


if "toy_half_st" not in GRADIENT_ESTIMATORS:
    register(HalfST())


def _net():
    x, y = reference_data(10, torch.Generator().manual_seed(0))
    m = reference_network(2, 3, generator=torch.Generator().manual_seed(1))
    return m, x, y


def test_toy_estimator_is_exactly_half_of_st_by_enumeration() -> None:
    m, x, y = _net()
    st = expected_estimate(m, logistic_loss, x, y, "st")
    toy = expected_estimate(m, logistic_loss, x, y, "toy_half_st")
    # a layer's gradient is halved once per stochastic layer it passes: output 1, layer 2 1/2, layer 1 1/4
    factors = {"0.": 0.25, "2.": 0.5, "4.": 1.0}
    for k in st:
        torch.testing.assert_close(toy[k], factors[k[:2]] * st[k])
        assert st[k].abs().max() > 1e-3


def test_toy_estimator_runs_in_the_lab_and_its_report(tmp_path) -> None:
    cfg = LabConfig.quick(epochs=(1,), n_estimates=40, ms=(1, 10), methods=("st", "toy_half_st"), sweep=False,
                          depth=2, width=3, n_per_class=10, timing_repeats=1)
    res = run_lab(cfg)
    toy = [r for r in res.rows if r["estimator"] == "toy_half_st" and r["tensor"] == "all"]
    assert {r["M"] for r in toy} == {1, 10}
    assert all(math.isfinite(r["cos_mean"]) and -1 <= r["cos_mean"] <= 1 for r in toy)
    path = write_report(res, str(tmp_path), [])
    assert "| toy_half_st |" in open(path).read()


def test_unknown_and_duplicate_names_are_refused() -> None:
    m, x, y = _net()
    with pytest.raises(ValueError, match="unknown gradient estimator 'toy_hlf_st'.*did you mean 'toy_half_st'"):
        estimate_gradients(m, logistic_loss, x, y, "toy_hlf_st")
    with pytest.raises(ValueError, match="already registered"):
        register(HalfST())
    with pytest.raises(ValueError, match="name"):
        register(type("Anon", (GradientEstimator,), {})())
    assert set(exact_gradients(m, logistic_loss, x, y)) == set(dict(m.named_parameters()))
