"""Shared helpers of the analysis tests (fixtures, as the tests are not a package)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def _uniform_init(model: nn.Module, seed: int, lo: float = -1.0, hi: float = 1.0) -> nn.Module:
    """Every parameter of ``model`` i.i.d. uniform on [lo, hi), from ``seed`` (in place; returns the model)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(lo + (hi - lo) * torch.rand(p.shape, generator=g, dtype=p.dtype))
    return model


@pytest.fixture
def uniform_init():
    """``uniform_init(model, seed, lo=-1, hi=1)``: seeded i.i.d. uniform parameters (see :func:`_uniform_init`)."""
    return _uniform_init

