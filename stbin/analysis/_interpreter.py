r"""The lab's interpreter: runs a parsed small network on (K, B, ...) with per-sample parameter copies.

``K`` samples of a batch of ``B`` examples run at once: every sample gets its own copy of
the parameters (a (K, ...) leaf tensor), the network runs on (K, B, d) activations with
batched matrix products, and the gradient of the sum of the K surrogate losses with
respect to the copies is the K per-sample estimates. Each stochastic node's value comes
from a node function (a registered gradient estimator's
:meth:`~stbin.analysis.gradient_estimators.GradientEstimator.node_value`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stbin.analysis._network import Network, Node, check_per_example_loss
from stbin.analysis.gradient_estimators.base import NodeContext

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NodeFn = Callable[[int, torch.Tensor], torch.Tensor]


class Params:
    """Parameter copies of shape (K, *shape): leaves (per-sample gradients) or expanded views."""

    def __init__(self, model: nn.Module, K: int, dtype: torch.dtype, per_sample: bool) -> None:
        self.K = K
        self.by_id: dict[int, torch.Tensor] = {}
        self.leaves: dict[str, torch.Tensor] = {}
        for name, p in model.named_parameters():
            if per_sample and p.requires_grad:
                rep = p.detach().to(dtype).unsqueeze(0).expand(K, *p.shape).clone().requires_grad_(True)
                self.leaves[name] = rep
            else:
                rep = p.to(dtype).unsqueeze(0).expand(K, *p.shape)
                if not per_sample and p.requires_grad:
                    self.leaves[name] = p
            self.by_id[id(p)] = rep

    def __call__(self, p: torch.Tensor | None) -> torch.Tensor | None:
        return None if p is None else self.by_id[id(p)]


def run_steps(net: Network, params: Params, h: torch.Tensor, start: int, node_fn: NodeFn,
              inputs: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Run steps ``start..`` on ``h`` (K, B, d); ``node_fn(node, pre)`` gives each stochastic node's value.

    ``inputs`` (if given) records the input of every step that owns a node.
    """
    for i in range(start, len(net.steps)):
        st = net.steps[i]
        m = st.module
        if inputs is not None and st.node is not None:
            inputs[i] = h
        if st.kind == "linear":
            w, b = params(m.weight), params(m.bias)
            h = torch.bmm(h, w.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        elif st.kind == "binary_linear":
            w = node_fn(st.node, params(m.latent_weight))  # type: ignore[arg-type]
            if m.learned_channel_scale is not None:
                w = w * params(m.learned_channel_scale).unsqueeze(2)
            b = params(m.bias)
            h = torch.bmm(h, w.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        elif st.kind == "act":
            h = node_fn(st.node, h)  # type: ignore[arg-type]
    return h


def losses(loss_fn: LossFn, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example losses (K, B) of outputs (K, B, o)."""
    K, B = out.shape[:2]
    yk = y.repeat(K, *([1] * (y.dim() - 1)))
    return check_per_example_loss(loss_fn(out.reshape(K * B, *out.shape[2:]), yk), K * B).view(K, B)


def plus_minus(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return mask.to(dtype) * 2 - 1


def log_prob(node: Node, pre: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log P(x | pre) elementwise, differentiable in ``pre`` (symmetric noise: P(x) = F(x pre / s)).

    Clamped at the smallest normal number, so that an impossible state (saturated uniform
    noise, only ever *forced* by enumeration) gives a finite value and no gradient.
    """
    t = x * pre / node.scale
    if node.noise.name == "logistic":
        return F.logsigmoid(t)
    return torch.log(node.noise.cdf(t).clamp_min(torch.finfo(t.dtype).tiny))


def logit_slope(node: Node, t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    r""":math:`d\,\mathrm{logit}(p)/da = p'/(p(1-p))`, 0 where p is 0 or 1."""
    if node.noise.name == "logistic":
        return torch.full_like(t, 1.0 / node.scale)
    v = p * (1 - p)
    dens = node.noise.pdf(t) / node.scale
    return torch.where(v > 0, dens / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))


def mean_field_losses(net: Network, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                      dtype: torch.dtype) -> torch.Tensor:
    """Per-example losses (B,) of the mean-field pass (each node outputs 2F(pre/s)-1); no gradient."""
    with torch.no_grad():
        params = Params(model, 1, dtype, per_sample=False)

        def node_fn(i: int, pre: torch.Tensor) -> torch.Tensor:
            nd = net.nodes[i]
            return nd.noise.mean(pre / nd.scale)

        out = run_steps(net, params, x.unsqueeze(0), 0, node_fn)
        return losses(loss_fn, out, y)[0]


class LabContext(NodeContext):
    """The context of one interpreter run: a :class:`NodeContext` plus what score-function and
    antithetic estimators need (the network, parameter copies, targets, log-probabilities of
    the sample, each node's cached draw and each node step's input)."""

    def __init__(self, net: Network, params: Params, loss_fn: LossFn, y: torch.Tensor,
                 generator: torch.Generator | None, temperature: float | None, baseline: torch.Tensor | None,
                 forced: list[torch.Tensor] | None = None) -> None:
        super().__init__(net.nodes, generator, temperature, forced)
        self.net = net
        self.params = params
        self.loss_fn = loss_fn
        self.y = y
        self.baseline = baseline
        self.logq: list[torch.Tensor] = []    # (K, B) per act node, (K, 1) per weight node
        self.probs: list[torch.Tensor] = []   # forced states only: their probabilities, same shapes
        self.cache: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.inputs: dict[int, torch.Tensor] = {}

    def sample(self, i: int, pre: torch.Tensor) -> torch.Tensor:
        """A ±1 sample (or the forced state) of node ``i``; records its log-probability (and probability)."""
        nd = self.nodes[i]
        x_ = super().sample(i, pre)
        lq = log_prob(nd, pre, x_)
        self.logq.append(lq.flatten(2).sum(2) if nd.kind == "act" else lq.flatten(1).sum(1, keepdim=True))
        if self.forced is not None:
            q = nd.noise.cdf(x_ * pre.detach() / nd.scale)
            self.probs.append(q.flatten(2).prod(2) if nd.kind == "act" else q.flatten(1).prod(1, keepdim=True))
        return x_

    def batch_mean(self, sur: torch.Tensor) -> torch.Tensor:
        """Sum over the K samples of the batch mean of ``sur`` (K, B); with forced states, each
        state's term weighted by its probability (so the result is an expectation)."""
        if self.forced is None:
            return sur.mean(1).sum()
        w = torch.ones_like(sur)
        for q in self.probs:
            w = w * q
        return (w * sur).mean(1).sum()

    def output_losses(self, out: torch.Tensor) -> torch.Tensor:
        """Per-example losses (K, B) of the network's output ``out`` (K, B, o)."""
        return losses(self.loss_fn, out, self.y)

    def rerun(self, step: int, h: torch.Tensor, node_fn: NodeFn) -> torch.Tensor:
        """Per-example losses (K, B) of the network run from ``step`` on ``h`` with ``node_fn``."""
        return losses(self.loss_fn, run_steps(self.net, self.params, h, step, node_fn), self.y)
