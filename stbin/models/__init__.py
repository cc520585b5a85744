"""Models, registered by name: ``build_model(name, **kwargs)``.

Each model module registers its builders in :data:`MODELS` with the
:func:`~stbin.models.registry.register_model` decorator; this package imports them. A
checkpoint stores the name and the keyword arguments, so that
:func:`stbin.training.load_model` can rebuild the network
(:func:`canonical_model_kwargs`: the form in which stored arguments are compared and rebuilt).

>>> import torch
>>> net = build_model("mlp", in_features=16, hidden=[8], num_classes=3, activation="sign")
>>> net(torch.randn(5, 16)).shape
torch.Size([5, 3])
"""

from __future__ import annotations

from stbin.models import birealnet, lenet, mlp, resnet, vgg  # noqa: F401  (register their models)
from stbin.models.common import QuantSpec
from stbin.models.registry import MODELS, build_model, canonical_model_kwargs, register_model

__all__ = ["MODELS", "build_model", "register_model", "canonical_model_kwargs", "QuantSpec"]
