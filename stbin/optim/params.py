"""Finding the binary-weight layers of a model and splitting its parameters."""

from __future__ import annotations

from torch import nn

from stbin.nn.binary import BinaryWeightLayer


def binary_layers(model: nn.Module) -> list[BinaryWeightLayer]:
    """All binary-weight layers (every :class:`stbin.nn.BinaryWeightLayer`) of ``model``.

    Args:
        model: any module; its sub-modules are searched in :meth:`~torch.nn.Module.modules` order.

    >>> from torch import nn
    >>> from stbin.nn import BinaryLinear
    >>> model = nn.Sequential(nn.Linear(4, 8), BinaryLinear(8, 8), nn.Linear(8, 2))
    >>> [type(m).__name__ for m in binary_layers(model)]
    ['BinaryLinear']
    """
    return [m for m in model.modules() if isinstance(m, BinaryWeightLayer)]


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(latent, other)``: the latent binary weights, and every other trainable parameter.

    Typical use: ``Bop`` on the first list and Adam on the second, or different learning
    rates / weight decay for the two groups. Frozen parameters (``requires_grad=False``) are
    in neither list.

    Args:
        model: the model whose parameters to split.

    >>> from torch import nn
    >>> from stbin.nn import BinaryLinear
    >>> model = nn.Sequential(nn.Linear(4, 8), BinaryLinear(8, 2, bias=False))
    >>> latent, other = split_parameters(model)
    >>> [tuple(p.shape) for p in latent], [tuple(p.shape) for p in other]
    ([(2, 8)], [(8, 4), (8,)])
    """
    latent_ids = {id(layer.latent_weight) for layer in binary_layers(model)}
    latent, other = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (latent if id(p) in latent_ids else other).append(p)
    return latent, other
