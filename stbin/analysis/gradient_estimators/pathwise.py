r"""Pathwise gradient estimators: the gradient flows through each node's value.

=====================  =================================================================================
name                   single-sample estimate
=====================  =================================================================================
``st``                 the library's principled ST (:func:`stbin.estimators.stochastic_sign`, ``sample``
                       mode, the model's own noise and scale): forward the sample, backward
                       :math:`\frac2sF'(a/s)`; Bernoulli weights use the same function on :math:`\theta`
                       (:math:`w=\operatorname{sign}(\theta-s_wz)` *is* a stochastic sign of :math:`\theta`)
``det_htanh``          deterministic ST at the mode: forward :math:`\operatorname{sign}(a)`, backward
``det_tanh``           the proxy of :func:`stbin.estimators.sign` (``htanh``: :math:`1[|a|\le1]`,
``det_identity``       ``tanh``: :math:`1-\tanh^2 a`, ``identity``: 1); zero variance, biased
``concrete:T``         binary Concrete relaxation at temperature T (default 1): every binary variable
                       becomes :math:`\tanh((a/s - z)/(2T))` with the node's own noise :math:`z`
                       (for logistic noise this is exactly the binary Concrete / Gumbel-softmax of
                       Maddison, Mnih & Teh, ICLR 2017 and Jang, Gu & Poole, ICLR 2017); the gradient
                       is the pathwise derivative of the relaxed network's loss
``st_concrete:T``      straight-through Concrete: forward the hard sample
                       :math:`\operatorname{sign}(a/s-z)`, backward the relaxed one's derivative
=====================  =================================================================================

Every one of them also runs on real networks (:func:`stbin.analysis.gradient_quality`).

>>> from stbin.analysis.gradient_estimators import parse_method
>>> parse_method("det_tanh")[0].random
False
"""

from __future__ import annotations

import torch

from stbin.analysis.gradient_estimators.base import GradientEstimator, NodeContext, register
from stbin.estimators import sign, stochastic_sign


class StraightThrough(GradientEstimator):
    """Principled ST: forward the sample, backward the factor (2/s) F'(a/s) (Shekhovtsov & Yanush, GCPR 2021)."""

    name = "st"
    description = "principled straight-through with the model's noise (stbin.estimators.stochastic_sign)"
    enumerable = True

    def node_value(self, ctx: NodeContext, i: int, pre: torch.Tensor) -> torch.Tensor:
        nd = ctx.nodes[i]
        if ctx.forced is None:
            return stochastic_sign(pre, nd.noise, nd.scale, "sample", ctx.generator)
        m = stochastic_sign(pre, nd.noise, nd.scale, "mean")  # forward E[x], backward the ST factor
        return ctx.sample(i, pre) + (m - m.detach())


class DeterministicST(GradientEstimator):
    """Deterministic ST at the mode: forward sign(a), backward a proxy of :func:`stbin.estimators.sign`."""

    random = False
    enumerable = True

    def __init__(self, proxy: str, description: str) -> None:
        self.proxy = proxy
        self.name = f"det_{proxy}"
        self.description = description

    def node_value(self, ctx: NodeContext, i: int, pre: torch.Tensor) -> torch.Tensor:
        if ctx.forced is not None:
            ctx.sample(i, pre)  # only for the probability weights of the enumeration
        return sign(pre, self.proxy)


class Concrete(GradientEstimator):
    """Binary Concrete relaxation at temperature T (``straight=True``: hard forward, relaxed backward)."""

    temperature = True

    def __init__(self, straight: bool) -> None:
        self.straight = straight
        self.name = "st_concrete" if straight else "concrete"
        self.description = ("straight-through Concrete at temperature T: hard forward, relaxed backward" if straight
                            else "binary Concrete relaxation at temperature T: pathwise gradient of the relaxed "
                                 "network")

    def node_value(self, ctx: NodeContext, i: int, pre: torch.Tensor) -> torch.Tensor:
        nd = ctx.nodes[i]
        t = ctx.temperature if ctx.temperature is not None else 1.0
        z = nd.noise.sample_z(pre.shape, generator=ctx.generator, dtype=pre.dtype, device=pre.device)
        d = pre / nd.scale - z
        soft = torch.tanh(d / (2 * t))
        if not self.straight:
            return soft
        return ((d.detach() >= 0).to(pre.dtype) * 2 - 1) + (soft - soft.detach())


register(StraightThrough())
register(DeterministicST("htanh", "deterministic ST at the mode, htanh backward 1[|a|<=1]"))
register(DeterministicST("tanh", "deterministic ST at the mode, tanh backward 1-tanh^2(a)"))
register(DeterministicST("identity", "deterministic ST at the mode, identity backward"))
register(Concrete(straight=False))
register(Concrete(straight=True))
