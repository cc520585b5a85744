"""The model registry: :data:`MODELS`, :func:`register_model`, :func:`build_model`, and the
canonical form of a model's arguments (:func:`canonical_model_kwargs`).

This module imports no model module: a model module registers its builders with the
``@register_model("name")`` decorator, and :mod:`stbin.models` imports the model modules, so
that no module imports a package that imports it back.

>>> from stbin.models import canonical_model_kwargs  # the package registers the models
>>> canonical_model_kwargs("mlp", {"hidden": [512, 512, 512], "batch_norm": True, "weight_scale": 0.1})
{'weight_noise_scale': 0.1}
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, TypeVar

from torch import nn

from stbin._registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[F], F]:
    """Decorator: register a model builder under ``name`` in :data:`MODELS` (ValueError if taken).

    Args:
        name: the name used by ``build_model``, ``[model] name`` in configs and checkpoints.
    """
    return MODELS.register(name)  # type: ignore[return-value]


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build the model registered as ``name`` (ValueError listing the valid names if unknown), or
    the model of the import path ``"package.module:factory"`` (:mod:`stbin.plugins`).

    Args:
        name: a name registered in :data:`MODELS` (``mlp``, ``sbn_mlp``, ``lenet5``, ...).
        **kwargs: the builder's arguments (sizes and the quantization of
            :class:`stbin.models.common.QuantSpec`).

    >>> import torch
    >>> from stbin.models import build_model  # the package registers the models
    >>> net = build_model("mlp", in_features=16, hidden=[8], num_classes=3, activation="sign")
    >>> net(torch.randn(5, 16)).shape
    torch.Size([5, 3])
    """
    from stbin.plugins import build_model_plugin, is_plugin

    if is_plugin(name):
        return build_model_plugin(name, **kwargs)
    return MODELS.get(name)(**kwargs)


def same_argument(a: Any, b: Any) -> bool:
    """Whether two values of a model argument are the same: ``a == b``, a list equal to a tuple of
    the same items, but True never equal to 1.

    >>> same_argument([16, 16], (16, 16)), same_argument(1, 1.0), same_argument(True, 1)
    (True, True, False)
    """
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_argument(x, y) for x, y in zip(a, b))
    return isinstance(a, bool) is isinstance(b, bool) and a == b


def _without_defaults(params: Mapping[str, inspect.Parameter], kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items()
            if not (k in params and params[k].default is not inspect.Parameter.empty
                    and same_argument(v, params[k].default))}


def canonical_model_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of model ``name`` in the form in which two sets of arguments are compared
    (resuming a checkpoint, reusing a recipe's run) and a checkpoint's model is rebuilt.

    Deprecated option names are mapped to their current names
    (:data:`stbin.models.common.DEPRECATED_OPTIONS`, without a warning: the names are those of a
    stored file), and arguments equal to the default the builder declares in its signature are
    left out (a list equals a tuple default of the same items). The quantization options taken
    as ``**quant`` are always kept: some models have their own defaults for them. The arguments
    of a model plugin, or of a name not registered, are returned as they are.

    Args:
        name: the model's registered name (or a plugin's import path).
        kwargs: its keyword arguments (a checkpoint's ``model.kwargs``, a config's ``[model]``
            without ``name``).

    Raises:
        ValueError: a deprecated name and its current name are both given, with different values.
    """
    from stbin.models.common import current_option_names
    from stbin.plugins import is_plugin

    out = dict(kwargs)
    if is_plugin(name) or name not in MODELS:
        return out
    params = inspect.signature(MODELS.get(name)).parameters
    # a default-valued explicit argument first (sbn_mlp's weight_scale=None, weight_noise_scale=1.0
    # mean "not given"), then the renaming, then the renamed value if it is the default
    return _without_defaults(params, current_option_names(_without_defaults(params, out), f"model {name!r}"))


__all__ = ["MODELS", "register_model", "build_model", "canonical_model_kwargs", "same_argument"]
