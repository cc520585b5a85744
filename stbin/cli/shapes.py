"""The input shape of one sample, for ``stbin summary`` and ``stbin export``: parsed from
``--input-shape``, read from a checkpoint (checked: a crafted file may hold anything), and
tried on the model before any work is done.

>>> parse_shape("3,32,32"), parse_shape("1x28x28")
((3, 32, 32), (1, 28, 28))
>>> parse_shape("0,28,28")
Traceback (most recent call last):
...
ValueError: --input-shape must be positive integers with at most 67108864 values in all, got '0,28,28'
"""

from __future__ import annotations

import math
import re
from typing import Any

#: the most values one input sample may have (3 x 4096 x 4096 fits); larger is a typo, not an image
MAX_INPUT_VALUES = 2 ** 26
_EXPECTED = f"positive integers with at most {MAX_INPUT_VALUES} values in all"


def _valid(shape: tuple[Any, ...]) -> bool:
    return (bool(shape) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
            and math.prod(shape) <= MAX_INPUT_VALUES)


def parse_shape(text: str) -> tuple[int, ...]:
    """The shape ``"C,H,W"`` (or ``CxHxW``) of ``--input-shape``; ValueError naming the option otherwise."""
    try:
        shape = tuple(int(s) for s in re.split(r"[,xX]", text.strip()))
    except ValueError:
        raise ValueError(f"--input-shape must be integers separated by commas, e.g. 3,32,32, got {text!r}") from None
    if not _valid(shape):
        raise ValueError(f"--input-shape must be {_EXPECTED}, got {text!r}")
    return shape


def recorded_shape(value: Any, where: str) -> tuple[int, ...] | None:
    """The input shape a checkpoint records (``model.input_shape`` or the plugin argument), checked;
    None if it records none (``value`` not a list).

    >>> recorded_shape([1, 8, 8], "ck.pt"), recorded_shape(None, "ck.pt")
    ((1, 8, 8), None)
    >>> recorded_shape([-5, 8], "ck.pt")
    Traceback (most recent call last):
    ...
    ValueError: ck.pt: the recorded input shape must be positive integers with at most 67108864 values in all, got [-5, 8]
    """
    if not isinstance(value, (list, tuple)):
        return None
    shape = tuple(value)
    if not _valid(shape):
        raise ValueError(f"{where}: the recorded input shape must be {_EXPECTED}, got {value!r:.80}")
    return shape


def check_input_shape(model: Any, shape: tuple[int, ...], what: str) -> None:
    """ValueError unless a batch of two zero inputs of ``shape`` runs through ``model`` (in mode),
    naming ``what`` (e.g. ``"--input-shape 1,9,9"``) and the model's complaint."""
    import torch

    from stbin.nn import eval_mode

    try:
        with torch.no_grad(), eval_mode(model, "mode"):
            model(torch.zeros((2, *shape)))
    except (RuntimeError, ValueError, IndexError, MemoryError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{what} does not fit the model: {reason[:200]}") from None


__all__ = ["MAX_INPUT_VALUES", "parse_shape", "recorded_shape", "check_input_shape"]
