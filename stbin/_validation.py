"""Argument checks with messages that name the offending value."""

from __future__ import annotations

import math
from numbers import Real

import torch


def check_positive(name: str, value: object) -> float:
    """A strictly positive, finite real number (e.g. a noise scale)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a positive scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_int_at_least(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


#: the most threads a command accepts (the training config's bound too): far above any machine's
#: cores, low enough that a mistyped value is refused before a pool of that many threads starts
MAX_THREADS = 4096


def check_threads(name: str, value: object) -> int:
    """A thread count in ``[1, MAX_THREADS]`` (``name`` is the option, e.g. ``--threads``).

    >>> check_threads("--threads", 2)
    2
    >>> check_threads("--threads", 100000)
    Traceback (most recent call last):
    ...
    ValueError: --threads must be an integer in [1, 4096], got 100000
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise ValueError(f"{name} must be an integer in [1, {MAX_THREADS}], got {value!r}")
    return value


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype in which elementwise factors are computed: float32 for half types."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def check_floating(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
