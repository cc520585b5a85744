r"""Binary-weight layers: :class:`BinaryLinear` and :class:`BinaryConv2d`.

The stored parameter is the **latent weight** :math:`\theta` (``latent_weight``); the
weight used in the forward pass is binary:

* ``weights="bernoulli"`` — :math:`w = \operatorname{sign}(\theta - s_w z)` with noise
  ``weight_noise`` and scale ``weight_scale`` (SPEC A3): sampled anew at every training
  forward; in evaluation ``eval_mode`` chooses the mode :math:`\operatorname{sign}(\theta)`
  (default), a fresh sample (ensembles) or the mean :math:`2F(\theta/s_w)-1`;
* ``weights="sign"`` — :math:`w = \operatorname{sign}(\theta)` always (deterministic
  BinaryConnect / BinaryNet). The noise still names the ST factor used by
  :class:`stbin.optim.LatentWeightRule` with ``gradient="st"`` and the projection of
  uniform noise.

The backward gives :math:`\partial L/\partial\theta = \partial L/\partial w` (times the
channel scale when one is used), so any torch optimizer on ``latent_weight`` performs the
mirror-descent latent update; see :mod:`stbin.estimators.latent` and :mod:`stbin.optim`.

Optional per-output-channel scale (``channel_scale``): ``"mean_abs"`` multiplies the binary
weights of channel c by :math:`\operatorname{mean}|\theta_c|` (detached; XNOR-Net style);
``"learned"`` by a learned parameter ``weight_scale`` of shape (out,). An optional
``input_quantizer`` module (e.g. :class:`stbin.nn.StochasticSign`) binarizes the input, as
in Larq's quantized layers.

:meth:`binary_weight` returns the true ±1 weights (without the channel scale).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from stbin._registry import check_choice
from stbin._validation import check_int_at_least, check_positive
from stbin.estimators.latent import bernoulli_weight
from stbin.estimators.noise import get_noise
from stbin.estimators.stochastic import MODES

WEIGHT_KINDS = ("bernoulli", "sign")
CHANNEL_SCALES = (None, "mean_abs", "learned")


class _BinaryWeightMixin(nn.Module):
    """Shared parameterisation of the binary-weight layers (latent weight -> binary weight)."""

    latent_weight: nn.Parameter
    weight_scale: nn.Parameter | None

    def _init_binary(self, weight_shape: tuple[int, ...], bias: bool, weights: str, weight_noise: str,
                     weight_scale: float, channel_scale: str | None, eval_mode: str,
                     input_quantizer: nn.Module | None, generator: torch.Generator | None,
                     factory: dict[str, Any]) -> None:
        """Validate the binary options, create ``latent_weight``, ``weight_scale``, ``bias``; reset them."""
        self.weights = check_choice("weight kind", weights, WEIGHT_KINDS)
        self.weight_noise = get_noise(weight_noise).name
        self.weight_noise_scale = check_positive("weight_scale", weight_scale)
        self.channel_scale = check_choice("channel_scale", channel_scale, CHANNEL_SCALES)
        self.eval_mode = check_choice("eval_mode", eval_mode, MODES)
        self.input_quantizer = input_quantizer
        self.generator = generator
        self.latent_weight = nn.Parameter(torch.empty(weight_shape, **factory))
        if channel_scale == "learned":
            self.weight_scale = nn.Parameter(torch.ones(weight_shape[0], **factory))
        else:
            self.register_parameter("weight_scale", None)
        if bias:
            self.bias = nn.Parameter(torch.empty(weight_shape[0], **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Latent weights uniform (see :meth:`_reset_latent`), bias zero, learned scale = mean |theta|."""
        self._reset_latent()
        if self.bias is not None:
            with torch.no_grad():
                self.bias.zero_()

    # -- parameterisation -------------------------------------------------------------
    def _reset_latent(self) -> None:
        if self.weights == "bernoulli":
            # P(w=+1) spread over a wide range around 1/2: theta ~ U(-s_w, s_w).
            bound = self.weight_noise_scale
        else:
            fan_in = self.latent_weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        with torch.no_grad():
            self.latent_weight.uniform_(-bound, bound)
            if self.weight_scale is not None:
                self.weight_scale.copy_(self.latent_weight.abs().flatten(1).mean(1))

    @property
    def weight_mode(self) -> str:
        """The weight mode of the next forward: ``sample`` / ``mode`` / ``mean``."""
        if self.weights == "sign":
            return "mode"
        return "sample" if self.training else self.eval_mode

    def binary_weight(self, mode: str = "mode", generator: torch.Generator | None = None) -> torch.Tensor:
        """The binary weights as a ±1 tensor, without the channel scale (no autograd).

        ``mode="mode"`` (default) gives :math:`\\operatorname{sign}(\\theta)`, the weights a
        deployed deterministic network uses; ``"sample"`` draws a Bernoulli sample;
        ``"mean"`` gives the expectation (real-valued, in [-1, 1]).
        """
        check_choice("mode", mode, MODES)
        with torch.no_grad():
            return bernoulli_weight(self.latent_weight, self.weight_noise, self.weight_noise_scale, mode,
                                    generator if generator is not None else self.generator)

    def _channel_factor(self) -> torch.Tensor | None:
        shape = (-1,) + (1,) * (self.latent_weight.dim() - 1)
        if self.channel_scale == "mean_abs":
            return self.latent_weight.detach().abs().flatten(1).mean(1).view(shape)
        if self.channel_scale == "learned":
            assert self.weight_scale is not None
            return self.weight_scale.view(shape)
        return None

    def effective_weight(self) -> torch.Tensor:
        """The weight tensor used by the next forward (binary, times the channel scale)."""
        w = bernoulli_weight(self.latent_weight, self.weight_noise, self.weight_noise_scale,
                             self.weight_mode, self.generator)
        c = self._channel_factor()
        return w if c is None else w * c

    def _quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.input_quantizer is None else self.input_quantizer(x)

    def _binary_repr(self) -> str:
        s = f"weights={self.weights!r}, weight_noise={self.weight_noise!r}, weight_scale={self.weight_noise_scale:g}"
        if self.channel_scale is not None:
            s += f", channel_scale={self.channel_scale!r}"
        if self.weights == "bernoulli" and self.eval_mode != "mode":
            s += f", eval_mode={self.eval_mode!r}"
        return s


class BinaryLinear(_BinaryWeightMixin):
    r"""Linear layer :math:`y = x\,(c \odot w)^\top + b` with binary weights :math:`w \in \{-1,+1\}`.

    Args:
        in_features, out_features, bias: as in :class:`torch.nn.Linear`.
        weights: ``"bernoulli"`` (stochastic binary weights, default) or ``"sign"``.
        weight_noise: noise of the Bernoulli weights (``logistic``, ``uniform``, ``gaussian``).
        weight_scale: noise scale :math:`s_w > 0`.
        channel_scale: ``None``, ``"mean_abs"`` or ``"learned"`` per-output-channel scale.
        eval_mode: weights in evaluation: ``"mode"``, ``"sample"`` or ``"mean"``.
        input_quantizer: optional module applied to the input first.
        generator: optional ``torch.Generator`` for the weight samples.
        device, dtype: as in torch.nn.

    The latent weight (``latent_weight``, shape (out, in)) follows the module's dtype and
    device; :meth:`binary_weight` returns the ±1 weights.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 weights: str = "bernoulli", weight_noise: str = "logistic", weight_scale: float = 1.0,
                 channel_scale: str | None = None, eval_mode: str = "mode",
                 input_quantizer: nn.Module | None = None, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.in_features = check_int_at_least("in_features", in_features, 1)
        self.out_features = check_int_at_least("out_features", out_features, 1)
        self._init_binary((out_features, in_features), bias, weights, weight_noise, weight_scale, channel_scale,
                          eval_mode, input_quantizer, generator, factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__} expected input of shape (..., {self.in_features}), "
                             f"got {tuple(x.shape)}")
        return F.linear(self._quantize_input(x), self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, " + self._binary_repr())


class BinaryConv2d(_BinaryWeightMixin):
    r"""2-D convolution with binary weights :math:`w \in \{-1,+1\}` (see :class:`BinaryLinear`).

    Arguments as :class:`torch.nn.Conv2d` (``padding_mode="zeros"`` only) plus the binary
    options of :class:`BinaryLinear`. Latent weight shape: (out, in/groups, kH, kW).
    Zero padding pads the (binarized) input with 0, as in PyTorch; binary-inference export
    must treat padded positions accordingly.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True, *,
                 weights: str = "bernoulli", weight_noise: str = "logistic", weight_scale: float = 1.0,
                 channel_scale: str | None = None, eval_mode: str = "mode",
                 input_quantizer: nn.Module | None = None, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.in_channels = check_int_at_least("in_channels", in_channels, 1)
        self.out_channels = check_int_at_least("out_channels", out_channels, 1)
        self.groups = check_int_at_least("groups", groups, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible "
                             f"by groups ({groups})")
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.dilation = _pair(dilation)
        if isinstance(padding, str):
            check_choice("padding", padding, ("same", "valid"))
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self._init_binary(shape, bias, weights, weight_noise, weight_scale, channel_scale, eval_mode,
                          input_quantizer, generator, factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expected input of shape (N, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        return F.conv2d(self._quantize_input(x), self.effective_weight(), self.bias, self.stride,
                        self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}")
        if self.padding not in ((0, 0), "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s + ", " + self._binary_repr()
