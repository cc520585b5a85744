"""Evaluation of a classifier in one eval mode: accuracy (%) and mean negative log-likelihood.

:func:`evaluate_batches` is the one loop; :func:`stbin.training.data_source.evaluate_source`
feeds it a data source's batches, :func:`evaluate` in-memory tensors.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], mode: str,
                     samples: int = 1) -> dict[str, float]:
    r"""Accuracy (%) and mean negative log-likelihood of ``model`` in ``mode`` over ``batches``.

    With ``samples`` :math:`S = 1` the predictive distribution is
    :math:`p(y \mid x) = \mathrm{softmax}(f(x))_y`; with :math:`S > 1` it is the ensemble
    :math:`\bar p(y \mid x) = \frac1S \sum_{s=1}^S \mathrm{softmax}(f_s(x))_y` of :math:`S`
    forward passes (each draws fresh noise in ``mode="sample"``). Over the :math:`n` examples,

    .. math::
        \text{accuracy} = \frac{100}{n} \sum_i [\arg\max_y p(y \mid x_i) = y_i], \qquad
        \text{loss} = -\frac1n \sum_i \log p(y_i \mid x_i).

    The batches are drawn inside the evaluation mode (``stbin.nn.eval_mode``); the model's own
    mode is restored afterwards.

    Args:
        model: a classifier returning logits of shape ``(B, classes)``.
        batches: an iterable of ``(inputs, labels)`` with labels of shape ``(B,)`` (int64).
        mode: one of ``"sample"``, ``"mode"``, ``"mean"`` (how stochastic units behave).
        samples: forward passes averaged per batch (an ensemble when ``> 1``).

    Raises:
        ValueError: when ``batches`` holds no example (an accuracy of nothing is not 0%).

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.eye(2))
        >>> x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1, 1])
        >>> r = evaluate_batches(model, [(x, y)], "mode")
        >>> round(r["accuracy"], 2), round(r["loss"], 4)  # 2 of 3 right; loss (2 log(1 + 1/e) + log(1 + e)) / 3
        (66.67, 0.6466)
    """
    from stbin.nn import eval_mode

    correct, loss, n = 0, 0.0, 0
    with eval_mode(model, mode):
        for xb, yb in batches:
            if samples > 1:
                p = sum(torch.softmax(model(xb).float(), -1) for _ in range(samples)) / samples
                logp = torch.log(p.clamp_min(1e-30))
            else:
                logp = torch.log_softmax(model(xb).float(), -1)
            loss += F.nll_loss(logp, yb, reduction="sum").item()
            correct += int((logp.argmax(-1) == yb).sum())
            n += len(yb)
    if n == 0:
        raise ValueError("evaluation got no examples (an empty test or validation set)")
    return {"accuracy": 100.0 * correct / n, "loss": loss / n}


def evaluate(model: nn.Module, data: Any, x: torch.Tensor, y: torch.Tensor, mode: str, batch_size: int,
             device: torch.device, samples: int = 1) -> dict[str, float]:
    """Accuracy (%) and loss of ``model`` in ``mode`` on the tensors ``x``, ``y``, as :func:`evaluate_batches`.

    The inputs go through ``data.prepare`` on ``device`` in batches of ``batch_size``.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> model = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.eye(2))
        >>> data = SimpleNamespace(prepare=lambda xb: xb)
        >>> x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1, 1])
        >>> r = evaluate(model, data, x, y, "mode", batch_size=2, device=torch.device("cpu"))
        >>> round(r["accuracy"], 2)  # the same figures in batches of 2
        66.67
    """
    batches = ((data.prepare(x[i: i + batch_size].to(device)), y[i: i + batch_size].to(device))
               for i in range(0, len(x), batch_size))
    return evaluate_batches(model, batches, mode, samples)


__all__ = ["evaluate_batches", "evaluate"]
