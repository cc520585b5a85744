"""The evaluation loop (:mod:`stbin.training.evaluation`) against a whole-set computation by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stbin.nn import BinaryLinear, eval_mode
from stbin.training.evaluation import evaluate, evaluate_batches


class _Identity:
    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x


def _data(n: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_batched_accuracy_and_loss_equal_the_whole_set_values() -> None:
    torch.manual_seed(0)
    model, (x, y) = nn.Linear(4, 3), _data()
    with torch.no_grad():
        logp = torch.log_softmax(model(x), -1)
    want_acc = 100.0 * int((logp.argmax(-1) == y).sum()) / len(y)
    want_loss = F.nll_loss(logp, y).item()
    for bs in (1, 3, 7, 100):  # uneven last batch, one batch, a batch larger than the set
        r = evaluate(model, _Identity(), x, y, "mode", bs, torch.device("cpu"))
        assert r["accuracy"] == want_acc
        assert abs(r["loss"] - want_loss) < 1e-6
    assert model.training  # the evaluation mode is restored


def test_ensemble_averages_probabilities_not_logits() -> None:
    torch.manual_seed(0)
    model, (x, y) = nn.Sequential(BinaryLinear(4, 3)), _data()
    torch.manual_seed(1)
    got = evaluate_batches(model, [(x, y)], "sample", samples=4)
    torch.manual_seed(1)
    with torch.no_grad(), eval_mode(model, "sample"):
        p = sum(torch.softmax(model(x), -1) for _ in range(4)) / 4
    assert abs(got["loss"] - F.nll_loss(torch.log(p), y).item()) < 1e-6
    assert got["accuracy"] == 100.0 * int((p.argmax(-1) == y).sum()) / len(y)


def test_no_examples_is_an_error_not_zero_percent() -> None:
    import pytest

    model = nn.Linear(4, 3)
    with pytest.raises(ValueError, match="no examples"):
        evaluate_batches(model, [], "mode")
    x, y = _data(0)
    with pytest.raises(ValueError, match="no examples"):
        evaluate(model, _Identity(), x, y, "mode", batch_size=4, device=torch.device("cpu"))
