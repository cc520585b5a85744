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
    """Accuracy (%) and loss of ``model`` in ``mode`` over ``batches`` of (inputs, labels); ``samples`` > 1
    averages sampled softmaxes (ensemble). The batches are drawn inside the evaluation mode."""
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
    return {"accuracy": 100.0 * correct / max(1, n), "loss": loss / max(1, n)}


def evaluate(model: nn.Module, data: Any, x: torch.Tensor, y: torch.Tensor, mode: str, batch_size: int,
             device: torch.device, samples: int = 1) -> dict[str, float]:
    """Accuracy (%) and loss of ``model`` in ``mode`` on the tensors ``x``, ``y`` (inputs through
    ``data.prepare`` on ``device``); ``samples`` > 1 averages sampled softmaxes (ensemble)."""
    batches = ((data.prepare(x[i: i + batch_size].to(device)), y[i: i + batch_size].to(device))
               for i in range(0, len(x), batch_size))
    return evaluate_batches(model, batches, mode, samples)


__all__ = ["evaluate_batches", "evaluate"]
