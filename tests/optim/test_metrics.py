"""Flip ratio: the fraction of binary weights (signs, sign(0) = +1) that a step changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stbin.nn import BinaryConv2d, BinaryLinear
from stbin.optim import Bop, FlipRatio, LatentWeightRule, flip_ratio


def test_flip_ratio_hand_made_with_zeros() -> None:
    before = torch.tensor([0.0, -1.0, 2.0, -3.0, 0.0, -0.0])
    after = torch.tensor([-0.5, -2.0, 0.0, 0.0, 1e-9, -1e-9])
    # signs before [+, -, +, -, +, +], after [-, -, +, +, +, -] -> idx 0, 3, 5 changed
    assert flip_ratio(before, after) == 3 / 6
    assert flip_ratio(before, before) == 0.0
    assert flip_ratio(before, -before - 1) == 1.0  # every sign changes (0 -> -1, -1 -> 0, ...)


def test_flip_ratio_over_lists_counts_entries_not_tensors() -> None:
    b = [torch.tensor([1.0, 1.0, 1.0, 1.0]), torch.tensor([[0.0, 0.0], [-1.0, -1.0]])]
    a = [torch.tensor([1.0, -1.0, 1.0, 1.0]), torch.tensor([[-1.0, 0.0], [0.0, 0.0]])]
    # 1 of 4 and 3 of 4 -> 4 / 8 (not the mean of the ratios 0.25 and 0.75 ... which is also 0.5)
    assert flip_ratio(b, a) == 4 / 8
    b2 = [torch.ones(2), torch.ones(6)]
    a2 = [-torch.ones(2), torch.ones(6)]
    assert flip_ratio(b2, a2) == 2 / 8  # the mean of per-tensor ratios would be 0.5
    assert flip_ratio([], []) == 0.0


def test_flip_ratio_errors() -> None:
    with pytest.raises(ValueError, match=r"2 tensors before and 1 after"):
        flip_ratio([torch.ones(2), torch.ones(2)], [torch.ones(2)])
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        flip_ratio(torch.ones(2), torch.ones(3))


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        BinaryLinear(8, 6, weights="sign", weight_noise="logistic"),
        nn.Tanh(),
        BinaryLinear(6, 3, weight_noise="uniform", weight_noise_scale=0.5, generator=torch.Generator().manual_seed(1)),
        nn.Unflatten(1, (3, 1, 1)),
        BinaryConv2d(3, 4, 1, weights="sign"),
    )


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_flip_ratio_tracker_matches_manual_count_per_layer(opt_name: str) -> None:
    model = _model()
    opt = (torch.optim.SGD(model.parameters(), lr=0.3) if opt_name == "sgd"
           else torch.optim.Adam(model.parameters(), lr=0.1))
    LatentWeightRule(model).attach(opt)
    fr = FlipRatio(model).attach(opt)
    assert fr.names == ["0", "2", "4"]
    layers = [model[0], model[2], model[4]]
    torch.manual_seed(3)
    nonzero = 0
    for step in range(6):
        x, y = torch.randn(16, 8), torch.randn(16, 4, 1, 1)
        before = [m.latent_weight.detach().clone() for m in layers]
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        after = [m.latent_weight.detach() for m in layers]
        changed = [int(((b >= 0) != (a >= 0)).sum()) for b, a in zip(before, after)]
        sizes = [b.numel() for b in before]
        assert fr.last == sum(changed) / sum(sizes) == flip_ratio(before, after)
        assert fr.last_per_layer == {n: c / s for n, c, s in zip(["0", "2", "4"], changed, sizes)}
        assert len(fr.history) == step + 1 and fr.history[-1] == fr.last
        nonzero += sum(changed)
    assert nonzero > 0, "the test should see some flips"


def test_flip_ratio_tracker_with_bop_agrees_with_last_flips() -> None:
    layer = BinaryLinear(10, 10, weights="sign")
    opt = Bop([layer.latent_weight], threshold=0.05, gamma=1.0)
    fr = FlipRatio(layer).attach(opt)
    assert fr.names == ["BinaryLinear"]
    opt.step()  # no grads yet: nothing changes
    torch.manual_seed(1)
    layer(torch.randn(4, 10)).sum().backward()
    opt.step()
    # Bop binarises at the first step with a grad, so sign changes = Bop's flips
    assert fr.last == opt.last_flips / 100 and opt.last_flips > 0
    assert fr.last_per_layer == {"BinaryLinear": fr.last}


def test_flip_ratio_tracker_errors_and_detach() -> None:
    with pytest.raises(ValueError, match=r"no binary-weight layers"):
        FlipRatio(nn.Linear(2, 2))
    layer = BinaryLinear(3, 3, weights="sign")
    fr = FlipRatio(layer)
    with pytest.raises(RuntimeError, match=r"before snapshot"):
        fr.update()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    fr.attach(opt)
    layer(torch.ones(1, 3)).sum().backward()
    opt.step()
    assert len(fr.history) == 1
    fr.detach()
    opt.step()
    assert len(fr.history) == 1
    # by hand: snapshot / update
    fr.snapshot()
    with torch.no_grad():
        layer.latent_weight.copy_(torch.tensor([[1.0, -1.0, 0.0]] * 3))
    fr.snapshot()
    with torch.no_grad():
        layer.latent_weight[0] = torch.tensor([-0.0, 1.0, 0.0])  # -0.0 keeps +1; -1 -> +1 flips
    assert fr.update() == 1 / 9
