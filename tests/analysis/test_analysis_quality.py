"""gradient_quality: its intervals contain the exact values on a small network; budget and input checks."""

from __future__ import annotations

import math

import pytest
import torch

from stbin.analysis import exact_gradients, expected_estimate, gradient_quality
from stbin.analysis.protocol import logistic_loss, reference_data, reference_network


def _cos(a: dict, b: dict, keys) -> float:
    va = torch.cat([a[k].flatten() for k in keys])
    vb = torch.cat([b[k].flatten() for k in keys])
    return float(va @ vb / (va.norm() * vb.norm()))


def _net():
    x, y = reference_data(15, torch.Generator().manual_seed(0))
    return reference_network(2, 4, generator=torch.Generator().manual_seed(1)), x, y


def test_intervals_contain_the_exact_values() -> None:
    """The cosine of E[ST] and of the deterministic htanh estimate (exact, by enumeration) and ST's
    relative bias lie in the reported 95% intervals (up to chance misses)."""
    m, x, y = _net()
    exact = exact_gradients(m, logistic_loss, x, y)
    st = expected_estimate(m, logistic_loss, x, y, "st")
    det = expected_estimate(m, logistic_loss, x, y, "det_htanh")
    # a fixed number of draws: stopping when an interval happens to be narrow would bias the coverage
    res = gradient_quality(m, logistic_loss, x, y, methods=("st", "htanh"), tolerance=1e-6,
                           generator=torch.Generator().manual_seed(0), max_samples=300)
    assert not res.converged and res.n_samples == 300 and res.control_variate
    misses = 0
    # one-element tensors (the output bias) are left out: their cosine is +-1 whatever the estimate
    for t in [k for k in exact if exact[k].numel() > 1] + ["all"]:
        keys = list(exact) if t == "all" else [t]
        checks = [("st", "cosine_of_mean", _cos(st, exact, keys)), ("htanh", "cosine", _cos(det, exact, keys))]
        gs, ge = torch.cat([st[k].flatten() for k in keys]), torch.cat([exact[k].flatten() for k in keys])
        checks.append(("st", "rel_bias", float((gs - ge).norm() / ge.norm())))
        for meth, metric, truth in checks:
            v, hw = res.get(meth, t, metric), res.get(meth, t, metric + "_hw")
            assert math.isfinite(v) and hw >= 0
            misses += abs(v - truth) > hw + 1e-9  # (ST's bias on the output layer is 0 exactly, hw 0)
    assert misses <= 3  # 18 intervals at 95%: P(more than 3 misses) is about 1%
    assert res.layers == ["0.weight", "2.weight", "4.weight"]


def test_stops_at_the_tolerance() -> None:
    m, x, y = _net()
    res = gradient_quality(m, logistic_loss, x, y, methods=("st", "htanh"), tolerance=0.08,
                           generator=torch.Generator().manual_seed(2), max_samples=600)
    assert res.converged and "converged" in res.message and res.n_samples <= 600
    assert max(res.get(mt, t, "cosine_hw") for mt in ("st", "htanh") for t in res.layers + ["all"]) < 0.08


def test_budget_is_reported() -> None:
    m, x, y = _net()
    res = gradient_quality(m, logistic_loss, x, y, methods=("st",), tolerance=1e-4,
                           generator=torch.Generator().manual_seed(0), max_samples=10, groups=5, min_samples=5)
    assert not res.converged and res.n_samples == 10 and res.message.startswith("budget reached")


@pytest.mark.parametrize("kw,msg", [
    ({"methods": ("reinforce",)}, "not one"),
    ({"methods": ("foo",)}, "unknown gradient estimator 'foo'"),
    ({"methods": "st"}, "non-empty sequence"),
    ({"reference": "exact"}, "unknown reference"),
    ({"tolerance": 0}, "tolerance"),
    ({"tolerance": True}, "tolerance"),
    ({"groups": 2}, "groups"),
])
def test_bad_arguments(kw, msg) -> None:
    m, x, y = _net()
    with pytest.raises(ValueError, match=msg):
        gradient_quality(m, logistic_loss, x, y, **kw)


def _quick(m, loss, x, y):
    return gradient_quality(m, loss, x, y, methods=("st", "htanh"), generator=torch.Generator().manual_seed(0),
                            max_samples=5, groups=5, min_samples=5)


def test_a_loss_reduced_to_one_number_is_evaluated_per_example() -> None:
    """torch's default mean, and sum, reduce the batch: gradient_quality then evaluates the loss on each
    example alone, and every figure equals the per-example loss's (same generator, same draws)."""
    m, x, y = _net()
    ref = _quick(m, logistic_loss, x, y)
    for reduced in (lambda o, t: logistic_loss(o, t).mean(), lambda o, t: logistic_loss(o, t).sum()):
        res = _quick(m, reduced, x, y)
        assert len(res.rows) == len(ref.rows)
        for a, b in zip(res.rows, ref.rows):
            assert a.keys() == b.keys()
            for k in a:
                assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6) if isinstance(a[k], float) else a[k] == b[k]


@pytest.mark.parametrize("loss,msg", [
    (lambda o, t: logistic_loss(o, t)[:-1], "per-example losses of shape"),        # one loss missing
    (lambda o, t: logistic_loss(o, t)[:, None], "per-example losses of shape"),    # (n, 1)
    (lambda o, t: torch.tensor(float(logistic_loss(o, t).mean().item())), "cannot be evaluated per example"),
])
def test_a_loss_that_is_neither_per_example_nor_batchable_is_refused(loss, msg) -> None:
    m, x, y = _net()
    with pytest.raises(ValueError, match=msg):
        _quick(m, loss, x, y)
