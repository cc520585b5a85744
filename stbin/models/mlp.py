"""Multilayer perceptrons: the stochastic binary MLP (``sbn_mlp``) and the generic ``mlp``."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from stbin.models.common import make_activation, make_linear, quant_kwargs
from stbin.models.registry import register_model
from stbin.nn import BinaryLinear, StochasticSign
from stbin.nn._deprecated import noise_scale_argument


@register_model("sbn_mlp")
def sbn_mlp(in_features: int = 784, hidden: Sequence[int] = (512, 512, 512), num_classes: int = 10,
            noise: str = "logistic", scale: float = 1.0, weight_noise: str = "logistic",
            weight_noise_scale: float = 1.0, weight_scale: float | None = None) -> nn.Sequential:
    """A stochastic binary MLP (first and last layers real-valued)::

        Flatten -> Linear(in, H1) -> BN -> StochasticSign
                -> [BinaryLinear(H_i, H_{i+1}) -> BN -> StochasticSign] ...
                -> Linear(H_last, classes)

    Hidden units: ``x = sign(a - s z)`` with ``noise``/``scale``; hidden weights Bernoulli
    ``w = sign(theta - s_w z)`` with ``weight_noise``/``weight_noise_scale`` (``weight_scale``:
    its deprecated alias).

    Args:
        in_features: inputs per sample (after flattening).
        hidden: the widths of the hidden layers.
        num_classes: the number of outputs.
        noise, scale: the noise of the hidden units and its scale.
        weight_noise, weight_noise_scale: the noise of the Bernoulli weights and its scale.

    Shape:
        input (N, *) with ``in_features`` values per sample; output (N, num_classes).

    >>> import torch
    >>> net = sbn_mlp(in_features=16, hidden=[8, 8], num_classes=3)
    >>> net(torch.randn(4, 1, 4, 4)).shape
    torch.Size([4, 3])
    """
    s_w = noise_scale_argument(weight_noise_scale, weight_scale, "sbn_mlp")
    hidden = [int(h) for h in hidden]
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must be a non-empty list of positive widths, got {hidden}")
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(in_features, hidden[0]), nn.BatchNorm1d(hidden[0]),
                               StochasticSign(noise, scale)]
    for a, b in zip(hidden[:-1], hidden[1:]):
        layers += [BinaryLinear(a, b, weight_noise=weight_noise, weight_noise_scale=s_w), nn.BatchNorm1d(b),
                   StochasticSign(noise, scale)]
    layers.append(nn.Linear(hidden[-1], num_classes))
    return nn.Sequential(*layers)


@register_model("mlp")
def mlp(in_features: int = 784, hidden: Sequence[int] = (512, 512, 512), num_classes: int = 10,
        batch_norm: bool = True, **quant: Any) -> nn.Sequential:
    """MLP ``Flatten -> [Linear -> BN -> act] x len(hidden) -> Linear`` with any quantization.

    ``quant``: the arguments of :class:`stbin.models.common.QuantSpec`. The first layer
    (real-valued input) and the last (logits) are real-valued unless ``binary_first`` /
    ``binary_last``; ``batch_norm=False`` drops BN (used by the DDP equality test).

    Args:
        in_features: inputs per sample (after flattening).
        hidden: the widths of the hidden layers.
        num_classes: the number of outputs.
        batch_norm: batch norm before each activation (else the linear layers get biases).
        **quant: the arguments of :class:`stbin.models.common.QuantSpec`.

    Shape:
        input (N, *) with ``in_features`` values per sample; output (N, num_classes).

    >>> import torch
    >>> net = mlp(in_features=16, hidden=[8], num_classes=3, activation="quant_relu", bits=2, weights="real")
    >>> net(torch.randn(4, 16)).shape
    torch.Size([4, 3])
    """
    q = quant_kwargs("mlp", quant, ("in_features", "hidden", "num_classes", "batch_norm"))
    hidden = [int(h) for h in hidden]
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must be a non-empty list of positive widths, got {hidden}")
    layers: list[nn.Module] = [nn.Flatten()]
    widths = [in_features, *hidden]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(make_linear(q, a, b, bias=not batch_norm, binary=i > 0 or q.binary_first))
        if batch_norm:
            layers.append(nn.BatchNorm1d(b))
        layers.append(make_activation(q))
    layers.append(make_linear(q, hidden[-1], num_classes, binary=q.binary_last))
    return nn.Sequential(*layers)
