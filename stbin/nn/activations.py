"""Activation modules wrapping the estimators of :mod:`stbin.estimators`.

* :class:`StochasticSign` — noise-injected sign units with the principled ST backward;
  samples in training, and in evaluation uses ``eval_mode`` (``"mode"`` by default,
  ``"sample"`` for ensembles, ``"mean"`` for the mean-field relaxation);
* :class:`Sign` — deterministic sign with a backward proxy (htanh, tanh, identity, ...);
* :class:`Heaviside` — the binarized ReLU 1[x>0] with an STE;
* :class:`QuantReLU` — the b-bit quantized ReLU with fixed (Lloyd) resolution.

Each is registered in :data:`stbin.nn.BINARY_MODULES` (kind ``"activation"``) with its
options and declared precision (``module.precision``).
"""

from __future__ import annotations

import torch
from torch import nn

from stbin._registry import check_choice
from stbin._validation import check_int_at_least, check_positive
from stbin.estimators import heaviside, lloyd_alpha, quant_relu, sign, stochastic_sign
from stbin.estimators.noise import get_noise
from stbin.estimators.sign import SIGN_PROXIES
from stbin.estimators.ste import STES
from stbin.estimators.stochastic import MODES
from stbin.nn.plain import PlusMinusSign, Step, UniformQuantReLU
from stbin.nn.registry import BinaryModule, Precision, register_binary_module


@register_binary_module("stochastic", "activation")
class StochasticSign(BinaryModule):
    r"""Stochastic binary activation :math:`x = \operatorname{sign}(a - s z)`, :math:`z \sim F`.

    In training mode the unit samples; in evaluation it uses ``eval_mode``. The backward
    is the principled ST factor :math:`\frac{2}{s}F'(a/s)` in every mode (see
    :func:`stbin.estimators.stochastic_sign`).

    Args:
        noise: ``"logistic"`` (default), ``"uniform"`` or ``"gaussian"``.
        scale: noise scale :math:`s > 0`.
        eval_mode: what :meth:`eval` uses: ``"mode"`` (sign(a)), ``"sample"`` or ``"mean"``.
        generator: optional ``torch.Generator`` for the samples (not saved in the state dict).

    Shape: any; output of the same shape, values in {-1, +1} (``mean``: in (-1, 1)).

    >>> m = StochasticSign("uniform", 1.0).eval()
    >>> m(torch.tensor([-0.5, 0.0, 2.0]))
    tensor([-1.,  1.,  1.])
    >>> m.precision.output_bits
    1
    """

    OPTIONS = ("noise", "scale", "eval_mode")

    @staticmethod
    def precision_for(**options: object) -> Precision:
        return Precision(output_bits=1, output_signed=True)

    @property
    def stochastic(self) -> bool:
        return True

    def mode_module(self) -> nn.Module:
        return PlusMinusSign()

    def __init__(self, noise: str = "logistic", scale: float = 1.0, eval_mode: str = "mode",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.noise = get_noise(noise).name
        self.scale = check_positive("scale", scale)
        self.eval_mode = check_choice("eval_mode", eval_mode, MODES)
        self.generator = generator

    @property
    def current_mode(self) -> str:
        return "sample" if self.training else self.eval_mode

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return stochastic_sign(a, self.noise, self.scale, self.current_mode, self.generator)

    def extra_repr(self) -> str:
        return f"noise={self.noise!r}, scale={self.scale:g}, eval_mode={self.eval_mode!r}"


@register_binary_module("sign", "activation")
class Sign(BinaryModule):
    """Deterministic sign (sign(0)=+1) with a straight-through backward ``proxy``.

    See :func:`stbin.estimators.sign` for the proxies and the noise each corresponds to.

    Args:
        proxy: backward proxy name (``htanh``, ``tanh``, ``identity``, ``approx_sign``, ...).
        clip: clipping level of the ``htanh`` proxy.
        beta: parameter of the ``swish_sign`` proxy.

    Shape: any; output of the same shape, values in {-1, +1}.

    >>> Sign()(torch.tensor([-0.5, 0.0, 2.0]))
    tensor([-1.,  1.,  1.])
    """

    OPTIONS = ("proxy", "clip", "beta")

    @staticmethod
    def precision_for(**options: object) -> Precision:
        return Precision(output_bits=1, output_signed=True)

    def mode_module(self) -> nn.Module:
        return PlusMinusSign()

    def __init__(self, proxy: str = "htanh", clip: float = 1.0, beta: float = 5.0) -> None:
        super().__init__()
        self.proxy = SIGN_PROXIES.get(proxy).name
        self.clip = check_positive("clip", clip)
        self.beta = check_positive("beta", beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sign(x, self.proxy, self.clip, self.beta)

    def extra_repr(self) -> str:
        s = f"proxy={self.proxy!r}"
        if self.proxy == "htanh":
            s += f", clip={self.clip:g}"
        if self.proxy == "swish_sign":
            s += f", beta={self.beta:g}"
        return s


@register_binary_module("heaviside", "activation")
class Heaviside(BinaryModule):
    """Binarized ReLU 1[x > 0] with STE ``identity``, ``relu`` or ``clipped_relu``.

    Args:
        ste: the straight-through backward (see :func:`stbin.estimators.heaviside`).

    Shape: any; output of the same shape, values in {0, 1}.

    >>> Heaviside()(torch.tensor([-0.5, 0.0, 2.0]))
    tensor([0., 0., 1.])
    """

    OPTIONS = ("ste",)

    @staticmethod
    def precision_for(**options: object) -> Precision:
        return Precision(output_bits=1, output_signed=False)

    def mode_module(self) -> nn.Module:
        return Step()

    def __init__(self, ste: str = "clipped_relu") -> None:
        super().__init__()
        STES.get(ste)
        self.ste = ste

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return heaviside(x, self.ste)

    def extra_repr(self) -> str:
        return f"ste={self.ste!r}"


@register_binary_module("quant_relu", "activation")
class QuantReLU(BinaryModule):
    r"""b-bit quantized ReLU (levels :math:`0, \alpha, \dots, (2^b-1)\alpha`) with an STE.

    ``alpha=None`` fits it by Lloyd's algorithm on half-Gaussian data
    (:func:`stbin.estimators.lloyd_alpha`), as Yin et al. do; put a batch norm without
    affine parameters before this module. ``alpha`` is a fixed hyper-parameter, stored as
    a buffer so that it travels with the state dict.

    Args:
        bits: number of bits b >= 1.
        alpha: resolution (``None``: Lloyd-optimal for half-Gaussian inputs).
        ste: the straight-through backward.

    Shape: any; output of the same shape.

    >>> QuantReLU(2, alpha=0.5)(torch.tensor([-1.0, 0.3, 0.6, 9.0]))
    tensor([0.0000, 0.5000, 0.5000, 1.5000])
    >>> QuantReLU(3).precision.output_bits
    3
    """

    OPTIONS = ("bits", "alpha", "ste")

    @staticmethod
    def precision_for(**options: object) -> Precision:
        return Precision(output_bits=int(options.get("bits", 2)), output_signed=False)  # type: ignore[call-overload]

    def mode_module(self) -> nn.Module:
        return UniformQuantReLU(self.bits, self.alpha)

    def __init__(self, bits: int = 2, alpha: float | None = None, ste: str = "clipped_relu") -> None:
        super().__init__()
        self.bits = check_int_at_least("bits", bits, 1)
        a = lloyd_alpha(self.bits) if alpha is None else check_positive("alpha", alpha)
        STES.get(ste)
        self.ste = ste
        self.alpha = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quant_relu(x, self.bits, self.alpha, self.ste)

    def get_extra_state(self) -> dict:
        return {"bits": self.bits, "alpha": self.alpha, "ste": self.ste}

    def set_extra_state(self, state: dict) -> None:
        self.bits = check_int_at_least("bits", state["bits"], 1)
        self.alpha = check_positive("alpha", state["alpha"])
        STES.get(state["ste"])
        self.ste = state["ste"]

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={self.alpha:.4f}, ste={self.ste!r}"
