"""Checks of a model's keyword arguments (``[model]`` of a config) against the model's signature.

Each argument is checked by the type its builder declares (the builder's annotations, and
those of :class:`~stbin.models.common.QuantSpec` for the quantization arguments taken as
``**quant``) and by what sizes mean: every integer argument is a count or a size (>= 1),
every real argument a scale or a width multiplier (finite, > 0), every list of integers a
list of widths (non-empty, each >= 1). Errors name ``model.<key>``, the value and what is
expected, instead of the Python error the builder would raise:

>>> from stbin.training.model_args import check_model_kwargs
>>> check_model_kwargs("mlp", {"hidden": -5})
Traceback (most recent call last):
...
stbin.training.validation.ConfigError: model.hidden must be a non-empty list of integers >= 1, got -5
"""

from __future__ import annotations

import collections.abc
import math
import typing
from typing import Any

from stbin.training.validation import ConfigError

REAL_MAX = 1e6  # a scale or width multiplier above this is a typo (and overflows float32 initialisations)


def _hints(name: str) -> dict[str, Any]:
    from stbin.models import MODELS
    from stbin.models.common import QuantSpec

    builder = MODELS.get(name)
    hints = {k: v for k, v in typing.get_type_hints(builder).items() if k not in ("return", "quant")}
    import inspect
    if any(p.kind == p.VAR_KEYWORD for p in inspect.signature(builder).parameters.values()):
        hints.update({k: v for k, v in typing.get_type_hints(QuantSpec).items() if k not in hints})
    return hints


def _check(key: str, v: Any, hint: Any) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if args and type(None) in args:  # X | None
        if v is None:
            return
        rest = [a for a in args if a is not type(None)]
        hint, origin, args = rest[0], typing.get_origin(rest[0]), typing.get_args(rest[0])
    if hint is bool:
        if not isinstance(v, bool):
            raise ConfigError(f"{key} must be true or false, got {v!r}")
    elif hint is int:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{key} must be an integer >= 1, got {v!r}")
    elif hint is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= REAL_MAX:
            raise ConfigError(f"{key} must be a number in (0, {REAL_MAX:g}], got {v!r}")
    elif hint is str:
        if not isinstance(v, str):
            raise ConfigError(f"{key} must be a string, got {v!r}")
    elif origin in (collections.abc.Sequence, list, tuple) and args and args[0] is int:
        if not isinstance(v, (list, tuple)) or not v or not all(
                isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in v):
            raise ConfigError(f"{key} must be a non-empty list of integers >= 1, got {v!r}")


def check_fits_data(given: dict[str, Any], input_shape: tuple[int, ...], num_classes: int, dataset: str,
                    model: Any = None, sample: Any = None) -> None:
    """ConfigError if a data-derived argument given in ``[model]`` disagrees with the data, or (with
    ``model`` and a ``sample`` batch) if the built model cannot take the data's inputs."""
    derived = {"num_classes": num_classes, "in_channels": input_shape[0], "image_size": input_shape[-1],
               "in_features": math.prod(input_shape)}
    for k, v in derived.items():
        if k in given and given[k] != v:
            raise ConfigError(f"model.{k} = {given[k]!r} does not fit the data: {dataset} has {k} = {v} "
                              f"(leave model.{k} unset to take it from the data)")
    if model is not None:
        import torch

        from stbin.nn import eval_mode
        was_training = model.training
        model.eval()  # batch norms keep their running statistics
        try:
            with torch.no_grad(), eval_mode(model, "mode"):
                model(sample)
        except RuntimeError as e:  # shape mismatch: the configured network cannot take these inputs
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"model {given.get('name')!r} with these arguments cannot take the {dataset} "
                              f"inputs of shape {tuple(input_shape)}: {first[:160]}") from None
        finally:
            model.train(was_training)


def check_model_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Check the arguments of model ``name`` by their declared types and meaning (ConfigError if not valid)."""
    from stbin.models.common import DEPRECATED_OPTIONS

    hints = _hints(name)
    for k, v in kwargs.items():
        hint = hints.get(k, hints.get(DEPRECATED_OPTIONS.get(k, "")))  # a deprecated alias: its new name's type
        if hint is not None:
            _check(f"model.{k}", v, hint)


__all__ = ["check_model_kwargs"]
