r"""Latent weights from float weights: the transfer of a real-valued network to a binary one.

A float weight tensor :math:`W` (output channels first) is mapped to the latent weight
:math:`\theta` of a binary-weight layer so that the binary weights keep the float weights'
signs and, for Bernoulli weights, their relative magnitudes *in expectation*:

* **Bernoulli weights** (noise CDF :math:`F`, scale :math:`s_w`): with a per-output-channel
  scale :math:`c_o > 0` (the ``quantile`` of :math:`|W_o|`, default the 0.99 quantile), the
  expected weight is set to :math:`\mathbb{E}[w] = \operatorname{clip}(W/c_o, -1+\epsilon,
  1-\epsilon)`, i.e.

  .. math:: \theta = s_w\, F^{-1}\!\Big(\frac{1 + \operatorname{clip}(W/c_o)}{2}\Big),

  logistic: :math:`\theta = 2 s_w \operatorname{atanh}(W/c_o)`; uniform:
  :math:`\theta = s_w W / c_o`; gaussian: :math:`\theta = s_w \Phi^{-1}((1 + W/c_o)/2)`.
  Hence :math:`c_o\,\mathbb{E}[w] = W` wherever :math:`|W| < (1-\epsilon) c_o`; a learned
  channel scale is initialised to :math:`c_o` so that the expected layer equals the float one.
* **Sign weights**: :math:`\theta = W` (the forward pass uses :math:`\operatorname{sign}(W)`;
  the magnitude says how far each weight is from flipping); a channel scale is initialised
  to :math:`\alpha_o = \operatorname{mean}|W_o|` (XNOR-Net, Rastegari et al., ECCV 2016).

No exact transfer exists for the activations (a ReLU becomes a sign of the same
pre-activation), so a short fine-tuning is part of the method. Reference: A. Livochka,
A. Shekhovtsov, "Initialization and Transfer Learning of Stochastic Binary Networks from
Real-Valued Ones", CVPR Workshops 2021.

>>> W = torch.tensor([[0.5, -0.25, 0.0, 1.0]])
>>> theta, c = latent_from_float(W, "bernoulli", "uniform", 2.0, quantile=1.0)
>>> theta, c
(tensor([[ 1.0000, -0.5000,  0.0000,  1.9980]]), tensor([1.]))
"""

from __future__ import annotations

import torch

from stbin._registry import check_choice
from stbin._validation import check_positive
from stbin.estimators.noise import get_noise

#: default quantile of |W| per output channel that maps to E[w] = 1 - eps
DEFAULT_QUANTILE = 0.99
#: the expected weights are kept in [-1 + EPS, 1 - EPS] (theta finite for unbounded noise)
EPS = 1e-3


def channel_quantile(W: torch.Tensor, q: float) -> torch.Tensor:
    """Per-output-channel ``q``-quantile of ``|W|`` (shape (out,)); channels of zeros give 1."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {q!r}")
    a = W.detach().abs().flatten(1).double()
    c = torch.quantile(a, q, dim=1) if a.shape[1] else torch.zeros(a.shape[0], dtype=a.dtype)
    return torch.where(c > 0, c, torch.ones_like(c)).to(W.dtype)


@torch.no_grad()
def latent_from_float(W: torch.Tensor, weights: str, noise: str, noise_scale: float,
                      quantile: float = DEFAULT_QUANTILE, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(theta, channel_scale)`` for float weights ``W`` (see the module docstring).

    Args:
        W: float weights, shape (out, ...).
        weights: ``"bernoulli"`` or ``"sign"``.
        noise: noise family of the Bernoulli weights (``logistic``, ``uniform``, ``gaussian``).
        noise_scale: :math:`s_w > 0`.
        quantile: the quantile of :math:`|W_o|` used as :math:`c_o` (Bernoulli weights).
        eps: expected weights are clipped to :math:`\pm(1-\epsilon)`, :math:`0 < \epsilon < 1`.

    Returns:
        ``theta`` (shape of ``W``) and the per-channel scale (shape (out,)): :math:`c_o` for
        Bernoulli weights, :math:`\operatorname{mean}|W_o|` for sign weights.
    """
    check_choice("weights", weights, ("bernoulli", "sign"))
    if not torch.is_floating_point(W) or W.dim() < 2:
        raise ValueError(f"float weights must be a floating tensor with an output-channel dimension, got {W.shape}")
    if not bool(torch.isfinite(W).all()):
        raise ValueError("float weights contain NaN or infinite values")
    if weights == "sign":
        alpha = W.abs().flatten(1).mean(1)
        return W.clone(), alpha
    s = check_positive("noise_scale", noise_scale)
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    nz = get_noise(noise)
    c = channel_quantile(W, quantile)
    shape = (-1,) + (1,) * (W.dim() - 1)
    m = (W.double() / c.double().view(shape)).clamp(-1.0 + eps, 1.0 - eps)
    return (s * nz.mean_inverse(m)).to(W.dtype), c
