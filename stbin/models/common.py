"""Factories shared by the models: activations and (binary or real) layers from names.

Every model takes the same quantization arguments:

* ``activation`` — hidden-unit estimator: ``"stochastic"`` (:class:`StochasticSign`, noise
  ``noise`` with scale ``scale``, principled ST), ``"sign"`` (deterministic sign with ST
  ``proxy``), ``"heaviside"`` (0/1 with STE ``ste``), ``"quant_relu"`` (``bits``-bit ReLU
  with STE ``ste``), or the real-valued ``"relu"`` / ``"htanh"`` / ``"tanh"`` (float twins);
* ``weights`` — hidden-layer weights: ``"bernoulli"`` (stochastic binary, noise
  ``weight_noise``/``weight_scale``), ``"sign"`` (deterministic binary) or ``"real"``;
  ``channel_scale`` (None, ``"mean_abs"``, ``"learned"``) for binary layers;
* ``binary_first`` / ``binary_last`` — make the first / last layer binary-weight too
  (default: real-valued, the usual practice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from stbin._registry import check_choice, unknown_name_message
from stbin.nn import BinaryConv2d, BinaryLinear, Heaviside, QuantReLU, Sign, StochasticSign

ACTIVATIONS = ("stochastic", "sign", "heaviside", "quant_relu", "relu", "htanh", "tanh")
WEIGHTS = ("bernoulli", "sign", "real")


@dataclass(frozen=True)
class QuantSpec:
    """How hidden units and hidden-layer weights are quantized (see the module docstring)."""

    activation: str = "stochastic"
    noise: str = "logistic"
    scale: float = 1.0
    proxy: str = "htanh"
    ste: str = "clipped_relu"
    bits: int = 2
    weights: str = "bernoulli"
    weight_noise: str = "logistic"
    weight_scale: float = 1.0
    channel_scale: str | None = None
    binary_first: bool = False
    binary_last: bool = False

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("weights", self.weights, WEIGHTS)
        make_activation(self)  # validates noise / proxy / ste / bits
        if self.weights != "real":
            BinaryLinear(1, 1, weights=self.weights, weight_noise=self.weight_noise,
                         weight_scale=self.weight_scale, channel_scale=self.channel_scale)

    @property
    def binary_activation(self) -> bool:
        return self.activation in ("stochastic", "sign", "heaviside")


def quant_spec(**kwargs: Any) -> QuantSpec:
    return QuantSpec(**kwargs)


def make_activation(q: QuantSpec) -> nn.Module:
    if q.activation == "stochastic":
        return StochasticSign(q.noise, q.scale)
    if q.activation == "sign":
        return Sign(q.proxy)
    if q.activation == "heaviside":
        return Heaviside(q.ste)
    if q.activation == "quant_relu":
        return QuantReLU(q.bits, ste=q.ste)
    if q.activation == "relu":
        return nn.ReLU()
    if q.activation == "htanh":
        return nn.Hardtanh()
    return nn.Tanh()


def _binary_kwargs(q: QuantSpec) -> dict[str, Any]:
    return {"weights": q.weights, "weight_noise": q.weight_noise, "weight_scale": q.weight_scale,
            "channel_scale": q.channel_scale}


def make_linear(q: QuantSpec, in_features: int, out_features: int, bias: bool = True,
                binary: bool = True) -> nn.Module:
    """Binary-weight linear layer per ``q`` (``binary`` and ``q.weights != "real"``), else nn.Linear."""
    if binary and q.weights != "real":
        return BinaryLinear(in_features, out_features, bias, **_binary_kwargs(q))
    return nn.Linear(in_features, out_features, bias)


def make_conv(q: QuantSpec, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
              bias: bool = False, binary: bool = True) -> nn.Module:
    """Binary-weight conv per ``q`` (``binary`` and ``q.weights != "real"``), else nn.Conv2d."""
    if binary and q.weights != "real":
        return BinaryConv2d(in_ch, out_ch, kernel_size, stride, padding, bias=bias, **_binary_kwargs(q))
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, bias=bias)


def quant_kwargs(model: str, kwargs: dict[str, Any], own: tuple[str, ...] = (),
                 **defaults: Any) -> QuantSpec:
    """The :class:`QuantSpec` of a model's extra keyword arguments (``defaults`` first).

    An unknown keyword raises ValueError naming the nearest valid one (``own``: the model's
    other arguments, listed in the message).
    """
    names = set(QuantSpec.__dataclass_fields__)
    for k in kwargs:
        if k not in names:
            raise ValueError(unknown_name_message(f"argument of model {model!r}", k, sorted(names | set(own))))
    return QuantSpec(**{**defaults, **kwargs})
