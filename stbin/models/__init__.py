"""Models, registered by name: ``build_model(name, **kwargs)``.

Each model module registers its builders in :data:`MODELS`; a checkpoint stores the name and
the keyword arguments, so that :func:`stbin.training.load_model` can rebuild the network.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from stbin._registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build the model registered as ``name`` (ValueError listing the valid names if unknown), or
    the model of the import path ``"package.module:factory"`` (:mod:`stbin.plugins`).

    Args:
        name: a name registered in :data:`MODELS` (``mlp``, ``sbn_mlp``, ``lenet5``, ...).
        **kwargs: the builder's arguments (sizes and the quantization of
            :class:`stbin.models.common.QuantSpec`).

    >>> import torch
    >>> net = build_model("mlp", in_features=16, hidden=[8], num_classes=3, activation="sign")
    >>> net(torch.randn(5, 16)).shape
    torch.Size([5, 3])
    """
    from stbin.plugins import build_model_plugin, is_plugin

    if is_plugin(name):
        return build_model_plugin(name, **kwargs)
    return MODELS.get(name)(**kwargs)


from stbin.models import mlp as _mlp  # noqa: E402,F401  (registers its models)
from stbin.models import lenet as _lenet  # noqa: E402,F401
from stbin.models import vgg as _vgg  # noqa: E402,F401
from stbin.models import resnet as _resnet  # noqa: E402,F401
from stbin.models import birealnet as _birealnet  # noqa: E402,F401
from stbin.models.common import QuantSpec  # noqa: E402

__all__ = ["MODELS", "build_model", "QuantSpec"]
