r"""Reading a real stbin model as a chain of deterministic layers and stochastic binary nodes.

Used by :func:`stbin.analysis.gradient_quality` and the reference gradients of
:mod:`stbin.analysis.reference`. A supported model is an ``nn.Sequential`` (nested ones
are flattened) of

* :class:`stbin.nn.StochasticSign` — a layer of stochastic binary units (an ``act`` node);
* :class:`stbin.nn.BinaryLinear` / :class:`stbin.nn.BinaryConv2d` with
  ``weights="bernoulli"`` (``channel_scale`` None or ``"learned"``, no
  ``input_quantizer``) — Bernoulli weights :math:`w = \operatorname{sign}(\theta - s_w z)`
  (a ``weight`` node);
* any other module without stochastic or deterministic-binary submodules (``nn.Linear``,
  ``nn.Conv2d``, batch norm, pooling, ``nn.Flatten``, ...), applied as a deterministic map.

The analysis studies the expected training loss over the binary variables with every other
layer in evaluation mode (batch norm uses its running statistics, so examples are
independent and each example's loss depends only on its own units). Deterministic binary
layers (:class:`stbin.nn.Sign`, :class:`stbin.nn.Heaviside`, :class:`stbin.nn.QuantReLU`,
``weights="sign"``) are refused: their expected loss is piecewise constant, with no
gradient to estimate.

>>> import torch
>>> from torch import nn
>>> from stbin.nn import BinaryLinear, StochasticSign
>>> ch = parse_chain(nn.Sequential(nn.Linear(4, 3), StochasticSign(), BinaryLinear(3, 2)))
>>> [(n.kind, n.name) for n in ch.nodes]
[('act', '1'), ('weight', '2.latent_weight')]
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from stbin.analysis._network import binary_weight_obstacle, flatten_sequential
from stbin.estimators.noise import Noise, get_noise
from stbin.nn import BinaryConv2d, BinaryLinear, Heaviside, QuantReLU, Sign, StochasticSign

NodeValue = Callable[[int, torch.Tensor], torch.Tensor]
_BINARY = (BinaryLinear, BinaryConv2d)
_DETERMINISTIC_BINARY = (Sign, Heaviside, QuantReLU)


@dataclass
class ChainNode:
    """A group of binary variables: ``act`` (the units of a StochasticSign layer, per example) or
    ``weight`` (a Bernoulli weight tensor, shared by the batch)."""

    kind: str
    step: int
    noise: Noise
    scale: float
    name: str


@dataclass
class ChainStep:
    """One layer: ``kind`` is ``"act"``, ``"binary"`` (a Bernoulli-weight layer) or ``"det"``."""

    kind: str
    module: nn.Module
    name: str
    node: int | None = None


class NotAChain(ValueError):
    """The model has stochastic layers inside a non-Sequential block (read it with
    :class:`stbin.analysis.graph.HookedModel` instead)."""


def _refuse(where: str, m: nn.Module, why: str) -> ValueError:
    return ValueError(f"gradient quality: layer {where} ({type(m).__name__}) {why}")


def binary_forward(m: nn.Module, h: torch.Tensor, w: torch.Tensor, bias: bool = True) -> torch.Tensor:
    """The layer ``m`` (BinaryLinear / BinaryConv2d) on input ``h`` with binary weights ``w``
    (times its learned channel scale); ``bias=False`` leaves the bias out (for differences)."""
    if m.learned_channel_scale is not None:
        w = w * m.learned_channel_scale.view((-1,) + (1,) * (w.dim() - 1))
    b = m.bias if bias else None
    if isinstance(m, BinaryLinear):
        return F.linear(h, w, b)
    return F.conv2d(h, w, b, m.stride, m.padding, m.dilation, m.groups)


class Chain:
    """A parsed model: :class:`ChainStep` s and the stochastic :class:`ChainNode` s in forward order."""

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.steps: list[ChainStep] = []
        self.nodes: list[ChainNode] = []
        for name, m in flatten_sequential(model):
            where = repr(name) if name else "(the model)"
            if isinstance(m, StochasticSign):
                self.nodes.append(ChainNode("act", len(self.steps), get_noise(m.noise), float(m.scale), name))
                self.steps.append(ChainStep("act", m, name, len(self.nodes) - 1))
            elif isinstance(m, _BINARY):
                why = binary_weight_obstacle(m)
                if why:
                    raise _refuse(where, m, f"is not supported: {why}")
                label = f"{name}.latent_weight" if name else "latent_weight"
                self.nodes.append(ChainNode("weight", len(self.steps), get_noise(m.weight_noise),
                                            float(m.weight_noise_scale), label))
                self.steps.append(ChainStep("binary", m, name, len(self.nodes) - 1))
            elif isinstance(m, _DETERMINISTIC_BINARY):
                raise _refuse(where, m, "is a deterministic binary layer (its expected loss has no gradient); "
                                        "gradient quality needs StochasticSign units or Bernoulli weights")
            else:
                inner = [c for c in m.modules() if isinstance(c, (StochasticSign, *_BINARY, *_DETERMINISTIC_BINARY))]
                if inner:
                    raise NotAChain(f"gradient quality: layer {where} ({type(m).__name__}) contains binary layers "
                                    f"inside a non-Sequential block (e.g. a residual block)")
                self.steps.append(ChainStep("det", m, name))
        if not self.nodes:
            raise ValueError("gradient quality: the model has no stochastic binary units or Bernoulli weights")

    def run(self, h: torch.Tensor, node_value: NodeValue, start: int = 0, stop: int | None = None,
            record: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Run steps ``start..stop-1`` on ``h``; each node's value is ``node_value(i, pre)`` (``pre``:
        the pre-activation of an act node, the latent weight of a weight node). ``record[step]``
        keeps the input of every step."""
        stop = len(self.steps) if stop is None else stop
        for k in range(start, stop):
            st = self.steps[k]
            if record is not None:
                record[k] = h
            if st.kind == "act":
                h = node_value(st.node, h)  # type: ignore[arg-type]
            elif st.kind == "binary":
                w = node_value(st.node, st.module.latent_weight)  # type: ignore[arg-type]
                h = binary_forward(st.module, h, w)
            else:
                h = st.module(h)
        return h

    def params(self) -> dict[str, torch.Tensor]:
        """The parameters the analysis differentiates (``requires_grad``), by name."""
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def describe(self) -> str:
        n_act = sum(1 for n in self.nodes if n.kind == "act")
        return f"{n_act} stochastic layers, {len(self.nodes) - n_act} Bernoulli weight tensors"


def parse_chain(model: nn.Module) -> Chain:
    """Read ``model`` into a :class:`Chain` (ValueError naming the layer if it is not supported)."""
    return Chain(model)


@contextlib.contextmanager
def analysis_mode(model: nn.Module) -> Iterator[None]:
    """Every module in evaluation mode for the duration (restored afterwards)."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, t in flags.items():
            m.training = t


def flipped_weight_differences(m: nn.Module, inp: torch.Tensor, w: torch.Tensor, base: torch.Tensor, chunk: int,
                               loss_mean: torch.Tensor, downstream) -> torch.Tensor:
    r""":math:`w_e\,(\bar f - \frac1B\sum_b f_b(w_e \to -w_e))` for every weight e of layer ``m``: each weight
    flipped in turn (``chunk`` at a time, batched with ``torch.func.vmap``) and the rows run downstream.

    ``base`` is the layer's output on ``inp`` with weights ``w`` (batch B first), ``loss_mean`` the
    sample's mean loss :math:`\bar f`, and ``downstream(rows, n)`` the per-example losses
    (``B * n`` values, example-major) of the ``n`` flipped copies of the layer's output ``rows``.
    """
    B, E = base.shape[0], w.numel()
    flat_w = w.reshape(-1)
    out = torch.empty(E, dtype=w.dtype, device=w.device)
    for e0 in range(0, E, chunk):
        e = torch.arange(e0, min(E, e0 + chunk), device=w.device)
        dW = torch.zeros(e.numel(), E, dtype=w.dtype, device=w.device)
        dW[torch.arange(e.numel()), e] = -2 * flat_w[e]
        with torch.no_grad():
            delta = torch.func.vmap(lambda d: binary_forward(m, inp, d.view_as(w), bias=False))(dW)
        rows = (base[:, None] + delta.transpose(0, 1)).reshape(B * e.numel(), *base.shape[1:])
        out[e0:e0 + e.numel()] = flat_w[e] * (loss_mean - downstream(rows, e.numel()).view(B, e.numel()).mean(0))
    return out.view_as(w)


def disarm_term(nd: ChainNode, pre: torch.Tensor, u: torch.Tensor, x: torch.Tensor, loss: torch.Tensor, batch: int,
                loss_with) -> torch.Tensor:
    r"""DisARM's estimate (Dong, Mnih & Tucker, NeurIPS 2020) of the gradient with respect to one node's
    pre-activation (or latent weight) ``pre``: with the antithetic states :math:`\tilde x` (``u > 1 - p``,
    ``p = F(pre/s)``) and ``loss_with(x_tilde)`` the per-example losses with the node's state replaced,
    :math:`-\tfrac12 (f(\tilde x) - f(x))\, x\, \tfrac{F'(pre/s)/s}{\min(p, 1-p)}` where :math:`x \ne \tilde x`, else 0.
    ``loss`` holds the main sample's per-example losses (``batch`` of them)."""
    p = nd.noise.prob_plus(pre, nd.scale)
    xt = (u > 1 - p).to(pre.dtype) * 2 - 1
    d = loss_with(xt) - loss
    d = (d / batch).view(-1, *([1] * (pre.dim() - 1))) if nd.kind == "act" else d.mean()
    mn = torch.minimum(p, 1 - p)
    ok = (x != xt) & (mn > 0)
    slope = torch.where(ok, (nd.noise.pdf(pre / nd.scale) / nd.scale) / torch.where(ok, mn, torch.ones_like(mn)),
                        torch.zeros_like(mn))
    return -0.5 * d * x * slope
