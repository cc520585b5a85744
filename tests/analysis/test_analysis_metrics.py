"""Metrics of estimates against an exact gradient, as functions of M."""

from __future__ import annotations

import math

import pytest
import torch

from stbin.analysis import estimator_metrics, group_metrics

D = torch.float64


def test_exact_estimates_have_no_error() -> None:
    g = torch.tensor([1.0, -2.0, 0.5], dtype=D)
    rows = group_metrics(g.expand(10, 3), g, [1, 2, 5, 20])
    assert [r["M"] for r in rows] == [1, 2, 5]  # M > K skipped
    for r in rows:
        assert r["bias"] == 0 and r["variance"] == 0 and r["rel_rmse"] == 0
        assert r["cos_mean"] == pytest.approx(1.0) and r["cos_p15"] == pytest.approx(1.0)
    assert rows[-1]["n_groups"] == 2


def test_constant_biased_estimate() -> None:
    g = torch.tensor([3.0, 4.0], dtype=D)
    est = torch.tensor([3.0, 0.0], dtype=D)
    (r,) = group_metrics(est.expand(4, 2), g, [1])
    assert r["bias"] == pytest.approx(4.0) and r["rel_bias"] == pytest.approx(0.8)
    assert r["rel_rmse"] == pytest.approx(0.8) and r["variance"] == 0
    assert r["cos_mean"] == pytest.approx(0.6)


def test_noise_variance_and_rmse_scale_with_m() -> None:
    torch.manual_seed(0)
    K, Dm, sigma = 40000, 4, 0.5
    g = torch.ones(Dm, dtype=D)
    s = g + sigma * torch.randn(K, Dm, dtype=D)
    rows = {r["M"]: r for r in group_metrics(s, g, [1, 4, 100])}
    for M, r in rows.items():
        assert r["variance"] == pytest.approx(Dm * sigma ** 2 / M, rel=0.15)
        assert r["rel_rmse"] == pytest.approx(math.sqrt(Dm * sigma ** 2 / M) / 2.0, rel=0.15)
        assert r["cos_p15"] <= r["cos_mean"] <= r["cos_p85"] <= 1.0
    assert rows[1]["cos_mean"] < rows[4]["cos_mean"] < rows[100]["cos_mean"]
    assert rows[1]["bias"] < 0.02


def test_zero_estimates_have_cosine_zero_and_zero_gradient_gives_nan() -> None:
    g = torch.tensor([1.0, 0.0], dtype=D)
    (r,) = group_metrics(torch.zeros(3, 2, dtype=D), g, [1])
    assert r["cos_mean"] == 0.0
    (r,) = group_metrics(torch.ones(3, 2, dtype=D), torch.zeros(2, dtype=D), [1])
    assert math.isnan(r["cos_mean"]) and math.isnan(r["rel_rmse"]) and r["bias"] == pytest.approx(math.sqrt(2))


def test_single_group_variance_is_nan() -> None:
    (r,) = group_metrics(torch.randn(5, 2, dtype=D), torch.ones(2, dtype=D), [5])
    assert r["n_groups"] == 1 and math.isnan(r["variance"])


def test_estimator_metrics_per_tensor_groups_and_all() -> None:
    samples = {"w": torch.ones(6, 2, 2, dtype=D), "b": torch.zeros(6, 2, dtype=D)}
    exact = {"w": torch.ones(2, 2, dtype=D), "b": torch.ones(2, dtype=D)}
    rows = estimator_metrics(samples, exact, [1, 3])
    assert {r["tensor"] for r in rows} == {"w", "b", "all"}
    by = {(r["tensor"], r["M"]): r for r in rows}
    assert by[("w", 1)]["rel_rmse"] == 0 and by[("b", 3)]["cos_mean"] == 0
    assert by[("all", 1)]["cos_mean"] == pytest.approx(4 / math.sqrt(4 * 6))
    rows = estimator_metrics(samples, exact, [1], groups={"layer": ["w", "b"]})
    assert {r["tensor"] for r in rows} == {"w", "b", "layer"}


def test_metric_errors() -> None:
    with pytest.raises(ValueError, match="mismatched shapes"):
        group_metrics(torch.zeros(3, 2), torch.zeros(3), [1])
    with pytest.raises(ValueError, match="positive integer"):
        group_metrics(torch.zeros(3, 2), torch.zeros(2), [0])
    with pytest.raises(ValueError, match="lack tensors"):
        estimator_metrics({}, {"w": torch.zeros(2)}, [1])
    with pytest.raises(ValueError, match="mismatched shapes for 'w'"):
        estimator_metrics({"w": torch.zeros(4, 3)}, {"w": torch.zeros(2)}, [1])
    with pytest.raises(ValueError, match="unknown tensors"):
        estimator_metrics({"w": torch.zeros(4, 2)}, {"w": torch.zeros(2)}, [1], groups={"g": ["v"]})
