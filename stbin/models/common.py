"""Factories shared by the models: activations and (binary or real) layers from names.

Every model takes the same quantization arguments:

* ``activation`` — hidden units: the name of a registered binary activation of
  :data:`stbin.nn.BINARY_MODULES` — ``"stochastic"`` (:class:`~stbin.nn.StochasticSign`, noise
  ``noise`` with scale ``scale``, principled ST), ``"sign"`` (deterministic sign with ST
  ``proxy``), ``"heaviside"`` (0/1 with STE ``ste``), ``"quant_relu"`` (``bits``-bit ReLU
  with STE ``ste``) — or a real-valued one of :data:`REAL_ACTIVATIONS` (``"relu"``,
  ``"htanh"``, ``"tanh"``: float twins). A registered activation receives the fields of
  :class:`QuantSpec` named like its declared options;
* ``weights`` — hidden-layer weights: ``"bernoulli"`` (stochastic binary, noise
  ``weight_noise``/``weight_noise_scale``), ``"sign"`` (deterministic binary) or ``"real"``;
  ``channel_scale`` (None, ``"mean_abs"``, ``"learned"``) for binary layers; the binary
  layer replacing ``nn.Linear`` / ``nn.Conv2d`` is the registry's weight-layer entry;
* ``binary_first`` / ``binary_last`` — make the first / last layer binary-weight too
  (default: real-valued, the usual practice).

``weight_scale`` is the deprecated name of ``weight_noise_scale`` (accepted with a
DeprecationWarning, e.g. from older config files and checkpoints).

>>> make_activation(QuantSpec(activation="quant_relu", bits=3))
QuantReLU(bits=3, alpha=0.3534, ste='clipped_relu')
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from stbin._registry import Registry, check_choice, unknown_name_message
from stbin.nn import BINARY_MODULES, BinaryModuleType

#: real-valued activations (float twins of the quantized networks), by name
REAL_ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")
REAL_ACTIVATIONS.register("relu", nn.ReLU)
REAL_ACTIVATIONS.register("htanh", nn.Hardtanh)
REAL_ACTIVATIONS.register("tanh", nn.Tanh)
WEIGHTS = ("bernoulli", "sign", "real")
#: deprecated model-option names -> their current names
DEPRECATED_OPTIONS = {"weight_scale": "weight_noise_scale"}


def activation_names() -> list[str]:
    """Every valid ``activation``: the registered binary activations and the real ones."""
    return sorted(BINARY_MODULES.names(kind="activation") + REAL_ACTIVATIONS.names())


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
    weight_noise_scale: float = 1.0
    channel_scale: str | None = None
    binary_first: bool = False
    binary_last: bool = False

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, activation_names())
        check_choice("weights", self.weights, WEIGHTS)
        make_activation(self)  # validates noise / proxy / ste / bits
        if self.weights != "real":
            make_linear(self, 1, 1)  # validates the weight options

    @property
    def binary_activation(self) -> bool:
        """Whether the hidden units output one bit (their declared ``output_bits == 1``)."""
        if self.activation not in BINARY_MODULES:
            return False
        entry = BINARY_MODULES.get(self.activation)
        return entry.precision(**_options_for(entry, self)).output_bits == 1


def quant_spec(**kwargs: Any) -> QuantSpec:
    """A :class:`QuantSpec` (deprecated option names accepted with a DeprecationWarning)."""
    return QuantSpec(**_renamed(kwargs, "QuantSpec"))


def current_option_names(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """``kwargs`` with every deprecated option name of :data:`DEPRECATED_OPTIONS` replaced by its
    current name (no warning; an alias given as None counts as not given).

    Args:
        kwargs: a model's keyword arguments.
        where: what they belong to, for the error message (``"model 'mlp'"``).

    Raises:
        ValueError: an alias and its current name are both given, with different values.

    >>> current_option_names({"weight_scale": 0.1, "bits": 2}, "model 'mlp'")
    {'bits': 2, 'weight_noise_scale': 0.1}
    """
    out = dict(kwargs)
    for old, new in DEPRECATED_OPTIONS.items():
        if old in out:
            value = out.pop(old)
            if value is None:
                continue
            if new in out and out[new] != value:
                raise ValueError(f"{where}: give {new} only ({old}={value!r} is its deprecated alias and disagrees "
                                 f"with {new}={out[new]!r})")
            out[new] = value
    return out


def _renamed(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """:func:`current_option_names`, with a DeprecationWarning for each deprecated name given."""
    for old, new in DEPRECATED_OPTIONS.items():
        if old in kwargs:
            warnings.warn(f"{where}: option {old!r} is deprecated; use {new!r}", DeprecationWarning, stacklevel=3)
    return current_option_names(kwargs, where)


def _options_for(entry: BinaryModuleType, q: QuantSpec) -> dict[str, Any]:
    """The fields of ``q`` named like the options ``entry`` declares."""
    return {k: getattr(q, k) for k in entry.options if k in QuantSpec.__dataclass_fields__}


def make_activation(q: QuantSpec) -> nn.Module:
    """The hidden-unit module of ``q.activation`` (a registered binary activation or a real one)."""
    if q.activation in BINARY_MODULES.names(kind="activation"):
        entry = BINARY_MODULES.get(q.activation)
        return entry.build(**_options_for(entry, q))
    return REAL_ACTIVATIONS.get(q.activation)()


def _weight_layer(float_type: type) -> BinaryModuleType:
    for entry in BINARY_MODULES.entries(kind="weight_layer"):
        if float_type in entry.replaces:
            return entry
    raise ValueError(f"no registered binary weight layer replaces {float_type.__name__}")  # pragma: no cover


def _binary_kwargs(q: QuantSpec, entry: BinaryModuleType) -> dict[str, Any]:
    return _options_for(entry, q)


def make_linear(q: QuantSpec, in_features: int, out_features: int, bias: bool = True,
                binary: bool = True) -> nn.Module:
    """Binary-weight linear layer per ``q`` (``binary`` and ``q.weights != "real"``), else nn.Linear."""
    if binary and q.weights != "real":
        entry = _weight_layer(nn.Linear)
        return entry.build(in_features, out_features, bias, **_binary_kwargs(q, entry))
    return nn.Linear(in_features, out_features, bias)


def make_conv(q: QuantSpec, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
              bias: bool = False, binary: bool = True) -> nn.Module:
    """Binary-weight conv per ``q`` (``binary`` and ``q.weights != "real"``), else nn.Conv2d."""
    if binary and q.weights != "real":
        entry = _weight_layer(nn.Conv2d)
        return entry.build(in_ch, out_ch, kernel_size, stride, padding, 1, 1, bias, **_binary_kwargs(q, entry))
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, bias=bias)


def residual_stages(q: QuantSpec, stem: list[nn.Module], chans: list[int], blocks: int,
                    block: Callable[[int, int, int], nn.Module], num_classes: int) -> nn.Sequential:
    """``stem``, then ``blocks`` residual blocks per width in ``chans`` (``block(in, out, stride)``; the
    first block of every stage after the first has stride 2), global average pooling and the
    classifier (binary-weight if ``q.binary_last``). Layers are built in that order."""
    layers = list(stem)
    c = chans[0]
    for i, out in enumerate(chans):
        for j in range(blocks):
            layers.append(block(c, out, 2 if (i > 0 and j == 0) else 1))
            c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), make_linear(q, c, num_classes, binary=q.binary_last)]
    return nn.Sequential(*layers)


def quant_kwargs(model: str, kwargs: dict[str, Any], own: tuple[str, ...] = (),
                 **defaults: Any) -> QuantSpec:
    """The :class:`QuantSpec` of a model's extra keyword arguments (``defaults`` first).

    An unknown keyword raises ValueError naming the nearest valid one (``own``: the model's
    other arguments, listed in the message).
    """
    names = set(QuantSpec.__dataclass_fields__)
    for k in kwargs:
        if k not in names and k not in DEPRECATED_OPTIONS:
            raise ValueError(unknown_name_message(f"argument of model {model!r}", k, sorted(names | set(own))))
    return QuantSpec(**{**defaults, **_renamed(kwargs, f"model {model!r}")})


#: every model option shared by the models (current and deprecated names)
QUANT_OPTIONS = frozenset(QuantSpec.__dataclass_fields__) | frozenset(DEPRECATED_OPTIONS)
