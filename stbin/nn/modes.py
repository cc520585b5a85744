"""Switching how a stochastic binary network evaluates: mode, mean, or sampled ensembles."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from stbin._registry import check_choice
from stbin.estimators.stochastic import MODES
from stbin.nn.registry import BinaryModule


def stochastic_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose evaluation depends on ``eval_mode`` (those declaring ``stochastic``:
    stochastic activations, Bernoulli-weight layers)."""
    return [m for m in model.modules() if isinstance(m, BinaryModule) and m.stochastic]


def set_eval_mode(model: nn.Module, mode: str) -> None:
    """Set ``eval_mode`` (``"mode"``, ``"sample"`` or ``"mean"``) of every stochastic module."""
    check_choice("eval_mode", mode, MODES)
    for m in stochastic_modules(model):
        m.eval_mode = mode  # type: ignore[assignment]


@contextlib.contextmanager
def eval_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Context manager: evaluate ``model`` (``.eval()``) with ``mode``, restoring everything after."""
    check_choice("eval_mode", mode, MODES)
    mods = stochastic_modules(model)
    saved = [m.eval_mode for m in mods]
    was_training = model.training
    try:
        model.eval()
        set_eval_mode(model, mode)
        yield model
    finally:
        for m, s in zip(mods, saved):
            m.eval_mode = s  # type: ignore[assignment]
        model.train(was_training)


@torch.no_grad()
def ensemble_predict(model: nn.Module, x: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Average of the softmax outputs of ``n_samples`` sampled networks (log of the average returned)."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    with eval_mode(model, "sample"):
        probs = sum(torch.softmax(model(x).float(), dim=-1) for _ in range(n_samples)) / n_samples
    return torch.log(probs)  # type: ignore[arg-type]
