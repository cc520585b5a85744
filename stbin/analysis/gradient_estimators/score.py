r"""Unbiased score-function estimators: REINFORCE (with and without a baseline), ARM and DisARM.

=====================  =================================================================================
name                   single-sample estimate
=====================  =================================================================================
``reinforce``          score function (Williams, Machine Learning 1992):
                       :math:`\hat g = \ell\,\nabla\log p(\text{sample}) + \nabla_{\text{direct}}\ell`
``reinforce_baseline`` the same with :math:`\ell_b - c_b`, :math:`c_b` = the loss of the *mean-field*
                       forward pass (every unit outputs :math:`2F(a/s)-1` of its mean input; weights
                       their mean). :math:`c_b` does not depend on the sample, so the estimate stays
                       unbiased; it costs one deterministic pass per call.
``arm``                ARM (Yin & Zhou, ICLR 2019) applied layer by layer (see below)
``disarm``             DisARM (Dong, Mnih & Tucker, NeurIPS 2020), same layer-wise scheme
=====================  =================================================================================

**REINFORCE.** With the joint sample of all binary variables and their log-probability
:math:`\log q = \sum \log F(x\,a/s)` (symmetric noise: :math:`P(x) = F(x a/s)`),
:math:`\hat g = \frac1B\sum_b [(\ell_b - c_b)\nabla\log q_b + \nabla_{\text{direct}}\ell_b]`,
where :math:`q_b` collects example :math:`b`'s units and the shared weights (the other
examples' units are independent of :math:`\ell_b` and are left out, a Rao-Blackwellisation)
and :math:`\nabla_{\text{direct}}` is the derivative with every binary state held fixed
(it reaches the parameters after the last stochastic node, e.g. the output layer).

**ARM / DisARM, layer by layer.** For a node :math:`k` (an activation layer or a weight
tensor) with uniform variates :math:`u_k`, the main sample is :math:`x_k = +1` iff
:math:`u_k < p_k` and the antithetic one :math:`\tilde x_k = +1` iff :math:`u_k > 1-p_k`. The
downstream network is run from both with the *same* uniforms for every later node (common
random numbers), giving losses :math:`\ell` and :math:`\tilde\ell_k`. With the logit
:math:`\phi = \operatorname{logit} p` and :math:`d\phi/da = p'/(p(1-p))` (:math:`=1/s` for
logistic noise),

.. math::
   \text{ARM:}\quad \hat g_{a_k} = (\tilde\ell_k - \ell)\,(u_k - \tfrac12)\,\frac{p'}{p(1-p)},
   \qquad
   \text{DisARM:}\quad \hat g_{a_{k,j}} = \tfrac12(\ell - \tilde\ell_k)\,x_{k,j}\,
   1[x_{k,j}\ne\tilde x_{k,j}]\,\frac{p'_j}{\min(p_j, 1-p_j)},

per example for activation layers (divided by :math:`B` for the batch mean) and on the
batch-mean loss for weight tensors; the parameter gradient is
:math:`\sum_k (\partial a_k/\partial\theta)^\top \hat g_{a_k}` with the upstream states of
the main sample, plus :math:`\nabla_{\text{direct}}\ell`. Each term is unbiased: given the
upstream sample, the single-sample downstream losses are unbiased for the conditional
expectations that the ARM / DisARM identities need (they are linear in them), and the
uniforms of later nodes are independent of :math:`u_k`. One estimate costs one forward
plus one downstream pass per stochastic node (the multi-layer ARM of Yin & Zhou, Sec. 2.3,
with a single downstream sample per branch).

>>> from stbin.analysis.gradient_estimators import GRADIENT_ESTIMATORS
>>> [GRADIENT_ESTIMATORS.get(n).unbiased for n in ("reinforce", "arm", "disarm")]
[True, True, True]
"""

from __future__ import annotations

import torch

from stbin.analysis._interpreter import LabContext, logit_slope, plus_minus
from stbin.analysis.gradient_estimators.base import GradientEstimator, register


class Reinforce(GradientEstimator):
    """Score function; ``baseline=True`` subtracts the mean-field pass's per-example loss."""

    enumerable = True
    unbiased = True
    pathwise = False

    def __init__(self, baseline: bool) -> None:
        self.mean_field_baseline = baseline
        self.name = "reinforce_baseline" if baseline else "reinforce"
        self.description = ("score function with the mean-field forward pass's loss as per-example baseline "
                            "(independent of the sample: unbiased)" if baseline
                            else "score function (REINFORCE), no baseline")

    def node_value(self, ctx: LabContext, i: int, pre: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return ctx.sample(i, pre)

    def surrogate(self, ctx: LabContext, L: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        coef = L.detach() if ctx.baseline is None else L.detach() - ctx.baseline
        score = sum(ctx.logq) if ctx.logq else torch.zeros_like(L)
        return ctx.batch_mean(coef * score + L)


class Antithetic(GradientEstimator):
    """ARM (``disarm=False``) or DisARM, layer by layer with common random numbers (see the module docstring)."""

    unbiased = True
    pathwise = False

    def __init__(self, disarm: bool) -> None:
        self.disarm = disarm
        self.name = "disarm" if disarm else "arm"
        self.description = ("DisARM, layer by layer, as ARM" if disarm else
                            "augment-REINFORCE-merge, layer by layer, one downstream sample per branch with "
                            "common random numbers")

    def node_value(self, ctx: LabContext, i: int, pre: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        nd = ctx.nodes[i]
        p = nd.noise.prob_plus(pre.detach(), nd.scale)
        u = ctx.uniform(pre)
        x_ = plus_minus(u < p, pre.dtype)
        ctx.cache[i] = (pre, u, p, x_)
        return x_

    def surrogate(self, ctx: LabContext, L: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        r"""Batch-mean loss plus :math:`\sum_k \langle a_k, \hat g_{a_k}\rangle` over every node."""
        Ld = L.detach()
        B = L.shape[1]
        total = torch.zeros((), dtype=L.dtype, device=L.device)
        for i, (pre, u, p, x_) in ctx.cache.items():
            nd = ctx.nodes[i]
            with torch.no_grad():
                xt = plus_minus(u > 1 - p, pre.dtype)

                def rerun(j: int, pre_j: torch.Tensor, i: int = i, xt: torch.Tensor = xt) -> torch.Tensor:
                    if j == i:
                        return xt
                    nj = ctx.nodes[j]
                    return plus_minus(ctx.cache[j][1] < nj.noise.prob_plus(pre_j, nj.scale), pre_j.dtype)

                Lt = ctx.rerun(nd.step, ctx.inputs[nd.step].detach(), rerun)
                if nd.kind == "act":          # per example, for the batch mean
                    d = ((Lt - Ld) / B).unsqueeze(-1)
                else:                         # weights are shared: the batch-mean loss
                    d = (Lt - Ld).mean(1).view(-1, *([1] * (pre.dim() - 1)))
                t = pre.detach() / nd.scale
                if not self.disarm:
                    g = d * (u - 0.5) * logit_slope(nd, t, p)
                else:
                    mn = torch.minimum(p, 1 - p)
                    ok = (x_ != xt) & (mn > 0)
                    slope = torch.where(ok, (nd.noise.pdf(t) / nd.scale) / torch.where(ok, mn, torch.ones_like(mn)),
                                        torch.zeros_like(mn))
                    g = -0.5 * d * x_ * slope
            total = total + (pre * g).sum()
        return L.mean(1).sum() + total


register(Reinforce(baseline=False))
register(Reinforce(baseline=True))
register(Antithetic(disarm=False))
register(Antithetic(disarm=True))
