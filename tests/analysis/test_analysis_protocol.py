"""The reference protocol: data, network, exact training, a tiny lab run."""

from __future__ import annotations

import math

import pytest
import torch

from stbin.analysis import LabConfig, exact_expected_loss, logistic_loss, reference_data, reference_network, run_lab
from stbin.analysis.protocol import layer_groups, lab_work, train_snapshots
from stbin.nn import StochasticSign


def test_reference_data() -> None:
    x, y = reference_data(100, torch.Generator().manual_seed(0))
    assert x.shape == (200, 2) and x.dtype == torch.float64
    assert (y[:100] == 1).all() and (y[100:] == -1).all()
    assert (x[:, 0].abs() <= math.pi / 2).all()
    pos, neg = x[:100], x[100:]
    assert ((pos[:, 1] >= 0) & (pos[:, 1] <= 1)).all()
    assert (neg[:, 1] < torch.cos(neg[:, 0])).all() and (neg[:, 1] >= -1).all()
    x2, _ = reference_data(100, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    with pytest.raises(ValueError):
        reference_data(0)


def test_reference_network() -> None:
    m = reference_network(generator=torch.Generator().manual_seed(0))
    assert [type(l).__name__ for l in m] == ["Linear", "StochasticSign"] * 3 + ["Linear"]
    assert all(l.noise == "logistic" and l.scale == 1.0 for l in m if isinstance(l, StochasticSign))
    assert all(p.abs().max() <= 1 and p.dtype == torch.float64 for p in m.parameters())
    assert layer_groups(m) == {"layer1": ["0.weight", "0.bias"], "layer2": ["2.weight", "2.bias"],
                               "layer3": ["4.weight", "4.bias"], "output": ["6.weight", "6.bias"]}
    with pytest.raises(ValueError, match="depth"):
        reference_network(depth=0)


def test_training_on_exact_loss_lowers_it_and_snapshots() -> None:
    x, y = reference_data(20, torch.Generator().manual_seed(1))
    m = reference_network(depth=2, width=3, generator=torch.Generator().manual_seed(2))
    before = exact_expected_loss(m, logistic_loss, x, y).item()
    snaps = train_snapshots(m, x, y, [0, 2, 8], generator=torch.Generator().manual_seed(3))
    assert sorted(snaps) == [0, 2, 8]
    assert exact_expected_loss(m, logistic_loss, x, y).item() < before
    m.load_state_dict(snaps[0])
    assert exact_expected_loss(m, logistic_loss, x, y).item() == pytest.approx(before)


def tiny_config(**kw) -> LabConfig:
    base = dict(epochs=(0, 2), n_estimates=40, ms=(1, 4, 10), methods=("st", "arm", "det_htanh"), depth=2,
                width=3, n_per_class=10, sweep=True, sweep_epochs=1, sweep_estimates=20, sweep_ms=(1, 5),
                sweep_depths=(1,), sweep_widths=(2,), sweep_scales=(0.5,), sweep_noises=("gaussian",),
                timing_repeats=1)
    base.update(kw)
    return LabConfig(**base)


def test_tiny_lab_run_is_complete_and_repeatable() -> None:
    cfg = tiny_config()
    ticks = []
    res = run_lab(cfg, lambda n, what: ticks.append(n))
    assert sum(ticks) == pytest.approx(lab_work(cfg))
    assert [s["epoch"] for s in res.snapshots] == [0, 2]
    prot = [r for r in res.rows if r["experiment"] == "protocol"]
    assert {r["estimator"] for r in prot} == set(cfg.methods)
    assert {r["tensor"] for r in prot} >= {"layer1", "layer2", "output", "all", "0.weight"}
    assert {r["M"] for r in prot} == {1, 4, 10}
    assert {r["experiment"] for r in res.rows} == {"protocol", "sweep:depth", "sweep:width", "sweep:scale",
                                                   "sweep:noise"}
    again = run_lab(cfg)
    assert [r["cos_mean"] for r in again.rows] == [r["cos_mean"] for r in res.rows]


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown gradient estimator"):
        tiny_config(methods=("nope",)).validate()
    with pytest.raises(ValueError, match="n_estimates"):
        tiny_config(n_estimates=1).validate()
    with pytest.raises(ValueError, match="epochs"):
        tiny_config(epochs=(-1,)).validate()


def test_sweep_base_point_is_the_protocol_snapshot() -> None:
    cfg = tiny_config(epochs=(1, 2), sweep_epochs=2, sweep_depths=(2,), sweep_widths=(), sweep_scales=(),
                      sweep_noises=())
    ticks = []
    res = run_lab(cfg, lambda n, what: ticks.append(n))
    assert sum(ticks) == pytest.approx(lab_work(cfg))  # the base point is not trained again
    prot = next(r for r in res.rows if r["experiment"] == "protocol" and r["epoch"] == 2 and r["tensor"] == "all")
    sweep = next(r for r in res.rows if r["experiment"] == "sweep:depth" and r["tensor"] == "all")
    assert sweep["grad_norm"] == prot["grad_norm"]
