"""Helpers shared by the estimator Functions: dtype handling of the backward factor."""

from __future__ import annotations

import torch

from stbin._validation import compute_dtype


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype used for elementwise factors (float32 for float16/bfloat16)."""
    cdt = compute_dtype(x.dtype)
    return x if x.dtype == cdt else x.to(cdt)


def scaled_grad(grad: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``grad * factor`` computed in the factor's dtype and returned in ``grad``'s dtype."""
    if grad.dtype == factor.dtype:
        return grad * factor
    return (grad.to(factor.dtype) * factor).to(grad.dtype)


def plus_minus_one(positive: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Map a boolean tensor to +1 (True) / -1 (False) in ``dtype``."""
    return positive.to(dtype).mul_(2).sub_(1)
