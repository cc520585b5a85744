r"""Binary-weight layers: :class:`BinaryLinear` and :class:`BinaryConv2d`.

The stored parameter is the **latent weight** :math:`\theta` (``latent_weight``); the
weight used in the forward pass is binary:

* ``weights="bernoulli"`` — :math:`w = \operatorname{sign}(\theta - s_w z)` with noise
  ``weight_noise`` and scale ``weight_noise_scale`` (Shekhovtsov & Yanush, GCPR 2021, Sec. 4):
  sampled anew at every training forward; in evaluation ``eval_mode`` chooses the mode
  :math:`\operatorname{sign}(\theta)`, a fresh sample (ensembles) or the mean :math:`2F(\theta/s_w)-1`;
* ``weights="sign"`` — :math:`w = \operatorname{sign}(\theta)` always (deterministic
  BinaryConnect / BinaryNet). The noise still names the ST factor used by
  :class:`stbin.optim.LatentWeightRule` with ``gradient="st"`` and the projection of
  uniform noise.

The backward gives :math:`\partial L/\partial\theta = \partial L/\partial w` (times the
channel scale when one is used), so any torch optimizer on ``latent_weight`` performs the
mirror-descent latent update; see :mod:`stbin.estimators.latent` and :mod:`stbin.optim`.

Optional per-output-channel scale (``channel_scale``): ``"mean_abs"`` multiplies the binary
weights of channel c by :math:`\operatorname{mean}|\theta_c|` (detached; XNOR-Net style);
``"learned"`` by a learned parameter ``learned_channel_scale`` of shape (out,).

Renamed (deprecated aliases kept for one release): the constructor keyword ``weight_scale``
(the noise scale) is now ``weight_noise_scale``; the learned scale parameter ``weight_scale``
is now ``learned_channel_scale`` (old state dicts load). Both layers derive from
:class:`BinaryWeightLayer` and are registered in :data:`stbin.nn.BINARY_MODULES`
(``binary_linear`` replaces ``nn.Linear``, ``binary_conv2d`` ``nn.Conv2d``; ``from_float``
keeps all constructor arguments, latent weights from :mod:`stbin.nn.transfer`). An optional
``input_quantizer`` module (e.g. :class:`stbin.nn.StochasticSign`) binarizes the input.

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
from stbin.nn import exact_products
from stbin.nn._deprecated import RenamedChannelScale, noise_scale_argument
from stbin.nn.registry import BinaryModule, Precision, register_binary_module
from stbin.nn.transfer import DEFAULT_QUANTILE, latent_from_float

WEIGHT_KINDS = ("bernoulli", "sign")
CHANNEL_SCALES = (None, "mean_abs", "learned")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class BinaryWeightLayer(RenamedChannelScale, BinaryModule):
    """Base class of the binary-weight layers: latent weight -> binary weight (public API).

    A subclass creates its shape attributes, calls :meth:`_init_binary` and uses
    :meth:`effective_weight` (binary weights times the channel scale) in its forward. It
    declares 1-bit weights (``precision.weight_bits == 1``); its ``input_bits`` are those
    of its ``input_quantizer`` (``None`` when it takes its input as given).
    """

    OPTIONS = ("weights", "weight_noise", "weight_noise_scale", "channel_scale", "eval_mode")
    latent_weight: nn.Parameter
    learned_channel_scale: nn.Parameter | None

    @staticmethod
    def precision_for(**options: object) -> Precision:
        return Precision(weight_bits=1)

    @property
    def precision(self) -> Precision:
        q = self.input_quantizer
        bits = q.precision.output_bits if isinstance(q, BinaryModule) else None
        return Precision(weight_bits=1, input_bits=bits)

    @property
    def stochastic(self) -> bool:
        return self.weights == "bernoulli"

    @classmethod
    def option_declaration(cls) -> Any:
        """The keyword options of every weight layer, with their defaults, are declared once, by
        :meth:`_init_binary` (the constructors pass their ``**options`` on to it)."""
        return cls._init_binary

    def _init_binary(self, weight_shape: tuple[int, ...], bias: bool, *, weights: str = "bernoulli",
                     weight_noise: str = "logistic", weight_noise_scale: float = 1.0,
                     channel_scale: str | None = None, eval_mode: str = "mode",
                     input_quantizer: nn.Module | None = None, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                     weight_scale: float | None = None) -> None:
        """Validate the binary options (the keyword options of :class:`BinaryLinear`), create
        ``latent_weight``, ``learned_channel_scale``, ``bias``; reset them."""
        factory = {"device": device, "dtype": dtype}
        weight_noise_scale = noise_scale_argument(weight_noise_scale, weight_scale, type(self).__name__, stacklevel=4)
        self.weights = check_choice("weight kind", weights, WEIGHT_KINDS)
        self.weight_noise = get_noise(weight_noise).name
        self.weight_noise_scale = check_positive("weight_noise_scale", weight_noise_scale)
        self.channel_scale = check_choice("channel_scale", channel_scale, CHANNEL_SCALES)
        self.eval_mode = check_choice("eval_mode", eval_mode, MODES)
        if input_quantizer is not None and not isinstance(input_quantizer, nn.Module):
            raise ValueError(f"input_quantizer must be an nn.Module, got {type(input_quantizer).__name__}")
        self.input_quantizer = input_quantizer
        self.generator = generator
        self.latent_weight = nn.Parameter(torch.empty(weight_shape, **factory))
        if channel_scale == "learned":
            self.learned_channel_scale = nn.Parameter(torch.ones(weight_shape[0], **factory))
        else:
            self.register_parameter("learned_channel_scale", None)
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
            if self.learned_channel_scale is not None:
                self.learned_channel_scale.copy_(self.latent_weight.abs().flatten(1).mean(1))

    @torch.no_grad()
    def load_float_weight(self, weight: torch.Tensor, quantile: float = DEFAULT_QUANTILE) -> None:
        """Initialise the latent weight (and a learned channel scale) from float weights.

        See :func:`stbin.nn.transfer.latent_from_float`: Bernoulli weights get
        :math:`\theta = s_w F^{-1}((1 + W/c)/2)` with :math:`c` the per-channel ``quantile``
        of :math:`|W|`; sign weights get :math:`\theta = W`.
        """
        if tuple(weight.shape) != tuple(self.latent_weight.shape):
            raise ValueError(f"{type(self).__name__}: float weight of shape {tuple(weight.shape)} does not match "
                             f"the latent weight {tuple(self.latent_weight.shape)}")
        theta, c = latent_from_float(weight.to(self.latent_weight.dtype), self.weights, self.weight_noise,
                                     self.weight_noise_scale, quantile)
        self.latent_weight.copy_(theta)
        if self.learned_channel_scale is not None:
            self.learned_channel_scale.copy_(c)

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
            assert self.learned_channel_scale is not None
            return self.learned_channel_scale.view(shape)
        return None

    def effective_weight(self) -> torch.Tensor:
        """The weight tensor used by the next forward (binary, times the channel scale)."""
        w = bernoulli_weight(self.latent_weight, self.weight_noise, self.weight_noise_scale,
                             self.weight_mode, self.generator)
        c = self._channel_factor()
        return w if c is None else w * c

    def _exact_candidate(self) -> bool:
        """Whether the forward product may hold only -1, 0, +1 (binary weights without a channel scale; the
        input is checked): then :mod:`stbin.nn.exact_products` checks the values and takes the exact integer
        route where they are."""
        return self.channel_scale is None and self.weight_mode != "mean"

    def _quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.input_quantizer is None else self.input_quantizer(x)

    @torch.no_grad()
    def mode_module(self) -> nn.Module:
        """``nn.Linear``/``nn.Conv2d`` with weights sign(theta) (± constants) times the channel scale."""
        w = self.binary_weight("mode")
        c = self._channel_factor()
        core = self._plain_layer(w if c is None else w * c.detach())
        if self.bias is not None:
            core.bias.copy_(self.bias)  # type: ignore[union-attr]
        q = self.input_quantizer
        if q is None:
            return core
        return nn.Sequential(q.mode_module() if isinstance(q, BinaryModule) else q, core)

    def _plain_layer(self, weight: torch.Tensor) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _binary_repr(self) -> str:
        s = f"weights={self.weights!r}, weight_noise={self.weight_noise!r}, weight_noise_scale={self.weight_noise_scale:g}"
        if self.channel_scale is not None:
            s += f", channel_scale={self.channel_scale!r}"
        if self.weights == "bernoulli" and self.eval_mode != "mode":
            s += f", eval_mode={self.eval_mode!r}"
        return s


def _linear_from_float(m: nn.Linear, quantile: float = DEFAULT_QUANTILE, **options: Any) -> "BinaryLinear":
    """A :class:`BinaryLinear` with ``m``'s shape, bias, device and dtype; latent weights from ``m.weight``."""
    w = m.weight
    new = BinaryLinear(m.in_features, m.out_features, m.bias is not None, device=w.device, dtype=w.dtype, **options)
    _copy_float(new, m, quantile)
    return new


def _conv2d_from_float(m: nn.Conv2d, quantile: float = DEFAULT_QUANTILE, **options: Any) -> "BinaryConv2d":
    """A :class:`BinaryConv2d` with all of ``m``'s constructor arguments; latent weights from ``m.weight``."""
    w = m.weight
    new = BinaryConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                       m.bias is not None, m.padding_mode, device=w.device, dtype=w.dtype, **options)
    _copy_float(new, m, quantile)
    return new


def _copy_float(new: BinaryWeightLayer, m: nn.Module, quantile: float) -> None:
    new.load_float_weight(m.weight, quantile)
    if m.bias is not None:
        with torch.no_grad():
            new.bias.copy_(m.bias)  # type: ignore[union-attr]
    new.train(m.training)


@register_binary_module("binary_linear", "weight_layer", replaces=(nn.Linear,), from_float=_linear_from_float)
class BinaryLinear(BinaryWeightLayer):
    r"""Linear layer :math:`y = x\,(c \odot w)^\top + b` with binary weights :math:`w \in \{-1,+1\}`.

    Args:
        in_features, out_features, bias: as in :class:`torch.nn.Linear`.
        **options: the keyword options of every binary weight layer (declared once, with their
            defaults, by ``BinaryWeightLayer._init_binary``):
        weights: ``"bernoulli"`` (stochastic binary weights, default) or ``"sign"``.
        weight_noise: noise of the Bernoulli weights (``logistic``, ``uniform``, ``gaussian``).
        weight_noise_scale: noise scale :math:`s_w > 0`.
        channel_scale: ``None``, ``"mean_abs"`` or ``"learned"`` per-output-channel scale.
        eval_mode: weights in evaluation: ``"mode"``, ``"sample"`` or ``"mean"``.
        input_quantizer: optional module applied to the input first.
        generator: optional ``torch.Generator`` for the weight samples.
        device, dtype: as in torch.nn.
        weight_scale: deprecated alias of ``weight_noise_scale``.

    Shape: input (*, in_features), output (*, out_features).

    The latent weight (``latent_weight``, shape (out, in)) follows the module's dtype and
    device; :meth:`binary_weight` returns the ±1 weights.

    >>> layer = BinaryLinear(3, 2, weights="sign", bias=False)
    >>> with torch.no_grad():
    ...     _ = layer.latent_weight.copy_(torch.tensor([[0.3, -0.1, 0.0], [-2.0, 1.0, -0.5]]))
    >>> layer(torch.ones(1, 3))
    tensor([[ 1., -1.]], grad_fn=<MmBackward0>)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **options: Any) -> None:
        super().__init__()
        self.in_features = check_int_at_least("in_features", in_features, 1)
        self.out_features = check_int_at_least("out_features", out_features, 1)
        self._init_binary((out_features, in_features), bias, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__} expected input of shape (..., {self.in_features}), "
                             f"got {tuple(x.shape)}")
        if self._exact_candidate():
            return exact_products.linear(self._quantize_input(x), self.effective_weight(), self.bias)
        return F.linear(self._quantize_input(x), self.effective_weight(), self.bias)

    def _plain_layer(self, weight: torch.Tensor) -> nn.Module:
        m = nn.Linear(self.in_features, self.out_features, self.bias is not None, device=weight.device,
                      dtype=weight.dtype)
        m.weight.copy_(weight)
        return m

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, " + self._binary_repr())


@register_binary_module("binary_conv2d", "weight_layer", replaces=(nn.Conv2d,), from_float=_conv2d_from_float)
class BinaryConv2d(BinaryWeightLayer):
    r"""2-D convolution with binary weights :math:`w \in \{-1,+1\}` (see :class:`BinaryLinear`).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode: as in :class:`torch.nn.Conv2d`.
        weights, weight_noise, weight_noise_scale, channel_scale, eval_mode,
            input_quantizer, generator, device, dtype: as in :class:`BinaryLinear`.

    Shape: input (N, C_in, H, W) or (C_in, H, W); output (N, C_out, H', W') as in
    :class:`torch.nn.Conv2d`. Latent weight shape: (out, in/groups, kH, kW).

    Zero padding pads the (binarized) input with 0, as in PyTorch; the ``.stbn`` compiler
    accounts for it and refuses other padding modes.

    >>> conv = BinaryConv2d(1, 4, 3, padding=1, padding_mode="reflect")
    >>> conv(torch.randn(2, 1, 5, 5)).shape
    torch.Size([2, 4, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", **options: Any) -> None:
        super().__init__()
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
        self.padding_mode = check_choice("padding_mode", padding_mode, PADDING_MODES)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self._init_binary(shape, bias, **options)

    def _explicit_padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) padding of a non-zero padding mode (F.pad order)."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            out: list[int] = []
            for d, k in zip(reversed(self.dilation), reversed(self.kernel_size)):
                total = d * (k - 1)
                out += [total // 2, total - total // 2]
            return tuple(out)  # type: ignore[return-value]
        ph, pw = self.padding  # type: ignore[misc]
        return (pw, pw, ph, ph)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expected input of shape (N, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        x = self._quantize_input(x)
        conv = exact_products.conv2d if self._exact_candidate() else F.conv2d
        if self.padding_mode != "zeros":
            return conv(F.pad(x, self._explicit_padding(), mode=self.padding_mode), self.effective_weight(),
                        self.bias, self.stride, 0, self.dilation, self.groups)
        return conv(x, self.effective_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)

    def _plain_layer(self, weight: torch.Tensor) -> nn.Module:
        m = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding, self.dilation,
                      self.groups, self.bias is not None, self.padding_mode, device=weight.device, dtype=weight.dtype)
        m.weight.copy_(weight)
        return m

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
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s + ", " + self._binary_repr()
