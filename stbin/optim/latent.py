r"""Latent-weight updates: mirror descent, the weight-ST alternative, projection and clipping.

The binary-weight layers (:mod:`stbin.nn.binary`) put :math:`g = \partial L/\partial w` (the
gradient with respect to the *binary* weight) into ``latent_weight.grad``. What an
optimizer then does with it defines the algorithm (Shekhovtsov & Yanush, GCPR 2021, Sec. 4):

``gradient="mirror"`` (default) — the latent update :math:`\theta \leftarrow \theta -
\text{lr}\, g`. With plain SGD this is **exact mirror descent** on the expected weights
:math:`\eta = 2F(\theta/s_w)-1 \in [-1,1]^n` with the mirror map whose gradient inverts
:math:`\theta \mapsto \eta`: for logistic noise :math:`\Phi` is twice the Bernoulli negative
entropy (Bregman divergence 2 KL) and :math:`\theta` is unconstrained; for uniform noise
:math:`\theta = s_w \eta` and mirror descent is projected SGD,
:math:`\theta \leftarrow \operatorname{clip}(\theta - \text{lr}\,g, -s_w, s_w)` — stochastic
BinaryConnect with latent clipping. With momentum or Adam the same gradient gives the
preconditioned variants used in practice: effective, **not** exact mirror descent.

``gradient="st"`` — plain SGD on :math:`\theta` through the weight ST factor,
:math:`g_\theta = \frac{2}{s_w}F'(\theta/s_w)\, g`. A different algorithm: weights whose
:math:`|\theta|` is large get a vanishing gradient and freeze (for uniform noise, exactly
zero outside :math:`[-s_w, s_w]`).

Projection: ``project="auto"`` projects uniform-noise layers onto :math:`[-s_w, s_w]` after
each step (the mirror-descent domain) and leaves unbounded noises alone; ``clip=c`` clips
every latent weight to :math:`[-c, c]` (BinaryNet's latent clipping), ``project=None``
disables projection. Weight decay on :math:`\theta` (the optimizer's ``weight_decay``) pulls
:math:`P(w=+1)` toward 1/2, an entropy-like regulariser.

Usage::

    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rule = LatentWeightRule(model, gradient="mirror").attach(opt)   # hooks into opt.step()
    ...
    loss.backward(); opt.step()    # gradient transform before, projection after

Reference: Shekhovtsov & Yanush, GCPR 2021, Section 4.
"""

from __future__ import annotations

import torch
from torch import nn

from stbin._registry import check_choice
from stbin._validation import check_positive
from stbin.estimators._common import upcast
from stbin.estimators.noise import get_noise
from stbin.optim.hooks import StepHooks
from stbin.optim.params import binary_layers

GRADIENTS = ("mirror", "st")
PROJECTIONS = ("auto", None)


class LatentWeightRule(StepHooks):
    """Gradient transform and projection of the latent weights of a model's binary layers.

    Args:
        model: the model (or a single layer) whose binary-weight layers to handle.
        gradient: ``"mirror"`` (:math:`g_\\theta = \\partial L/\\partial w`) or ``"st"``
            (:math:`g_\\theta = \\frac{2}{s_w}F'(\\theta/s_w)\\,\\partial L/\\partial w`).
        project: ``"auto"`` (uniform noise: onto :math:`[-s_w, s_w]`) or ``None``.
        clip: if given, clip every latent weight to ``[-clip, clip]`` after each step.

    :meth:`attach` registers hooks on an optimizer so that :meth:`transform_gradients`
    runs before and :meth:`project` after every ``optimizer.step()``; both can also be
    called by hand. :meth:`detach` removes the hooks.

    >>> import torch
    >>> from stbin.nn import BinaryLinear
    >>> layer = BinaryLinear(3, 2, bias=False, weight_noise="uniform", weight_noise_scale=1.0)
    >>> opt = torch.optim.SGD(layer.parameters(), lr=10.0)
    >>> rule = LatentWeightRule(layer).attach(opt)
    >>> layer(torch.randn(4, 3)).sum().backward()
    >>> opt.step()                                    # a huge step, then the projection
    >>> bool(layer.latent_weight.abs().max() <= 1.0)  # uniform noise: theta in [-s_w, s_w]
    True
    """

    def __init__(self, model: nn.Module, gradient: str = "mirror", project: str | None = "auto",
                 clip: float | None = None) -> None:
        self.gradient = check_choice("latent gradient", gradient, GRADIENTS)
        self.project_mode = check_choice("projection", project, PROJECTIONS)
        super().__init__()
        self.clip = None if clip is None else check_positive("clip", clip)
        self.layers = binary_layers(model)
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no binary-weight layers (BinaryLinear, BinaryConv2d)")

    @torch.no_grad()
    def transform_gradients(self) -> None:
        """Turn :math:`\\partial L/\\partial w` into the gradient the optimizer should use."""
        if self.gradient == "mirror":
            return
        for layer in self.layers:
            theta = layer.latent_weight
            if theta.grad is None:
                continue
            noise = get_noise(layer.weight_noise)
            factor = noise.st_factor(upcast(theta), layer.weight_noise_scale)
            theta.grad.copy_((upcast(theta.grad) * factor).to(theta.grad.dtype))

    @torch.no_grad()
    def project(self) -> None:
        """Project / clip the latent weights after a step."""
        for layer in self.layers:
            bound = None
            if self.project_mode == "auto" and get_noise(layer.weight_noise).bounded:
                bound = layer.weight_noise_scale
            if self.clip is not None:
                bound = self.clip if bound is None else min(bound, self.clip)
            if bound is not None:
                layer.latent_weight.clamp_(-bound, bound)

    def before_step(self) -> None:
        """:meth:`transform_gradients` (run before every step of an attached optimizer)."""
        self.transform_gradients()

    def after_step(self) -> None:
        """:meth:`project` (run after every step of an attached optimizer)."""
        self.project()

    def __repr__(self) -> str:
        return (f"LatentWeightRule(gradient={self.gradient!r}, project={self.project_mode!r}, "
                f"clip={self.clip}, layers={len(self.layers)})")
