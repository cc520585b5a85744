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
    """Build the model registered as ``name`` (ValueError listing the valid names if unknown)."""
    return MODELS.get(name)(**kwargs)


from stbin.models import mlp as _mlp  # noqa: E402,F401  (registers its models)
from stbin.models import lenet as _lenet  # noqa: E402,F401
from stbin.models import vgg as _vgg  # noqa: E402,F401
from stbin.models import resnet as _resnet  # noqa: E402,F401
from stbin.models import birealnet as _birealnet  # noqa: E402,F401
from stbin.models.common import QuantSpec  # noqa: E402

__all__ = ["MODELS", "build_model", "QuantSpec"]
