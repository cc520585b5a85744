r"""Reading a model as a chain of stochastic binary nodes (shared by the oracle and the estimators).

A supported model is a :class:`torch.nn.Sequential` (nested ones are flattened) of

* :class:`torch.nn.Linear` — deterministic affine map;
* :class:`stbin.nn.StochasticSign` — a layer of stochastic binary units
  :math:`x = \operatorname{sign}(a - s z)`, :math:`P(x=+1 \mid a) = F(a/s)`;
* :class:`stbin.nn.BinaryLinear` with ``weights="bernoulli"`` — an affine map whose weights
  :math:`w = \operatorname{sign}(\theta - s_w z)` are random (``channel_scale=None`` or
  ``"learned"``, no ``input_quantizer``);
* :class:`torch.nn.Identity` anywhere and :class:`torch.nn.Flatten` before any other layer.

Every unit and every Bernoulli weight is a binary random variable; the analysis treats
them as random whatever the module's ``training`` flag is (the *training* semantics of the
network, whose expected loss is what SGD on a stochastic binary network minimises).

The model is read into a list of :class:`Step` s and a list of :class:`Node` s (the
stochastic variables, in forward order: the Bernoulli weights of a segment come before the
activation layer that follows it). :class:`Network` also counts the binary units; anything
else raises :class:`ValueError` naming the layer and listing what is supported.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from stbin.estimators.noise import Noise, get_noise
from stbin.nn import BinaryLinear, StochasticSign
from stbin.nn.binary import BinaryWeightLayer

SUPPORTED = ("torch.nn.Linear", "stbin.nn.StochasticSign", "stbin.nn.BinaryLinear (weights='bernoulli')",
             "torch.nn.Identity", "torch.nn.Flatten (first layers only)")

#: the default limit of :func:`stbin.analysis.exact_expected_loss` on binary units
DEFAULT_MAX_UNITS = 24


@dataclass
class Node:
    """A group of binary random variables: an activation layer or a Bernoulli weight tensor.

    ``kind`` is ``"act"`` (``size`` units per example) or ``"weight"`` (``size`` weights
    shared by the batch); ``noise``/``scale`` define :math:`P(+1) = F(\\text{pre}/s)` where
    ``pre`` is the pre-activation (act) or the latent weight :math:`\\theta` (weight).
    """

    kind: str
    step: int
    size: int
    noise: Noise
    scale: float
    name: str


@dataclass
class Step:
    """One layer of the chain; ``node`` is the index of its stochastic node (or None)."""

    kind: str  # "linear" | "binary_linear" | "act" | "identity" | "flatten"
    module: nn.Module
    name: str
    in_features: int
    out_features: int
    node: int | None = None


@dataclass
class Network:
    """A parsed model: steps, stochastic nodes and unit counts."""

    steps: list[Step]
    nodes: list[Node]
    in_features: int
    out_features: int
    leading: list[nn.Module] = field(default_factory=list)  # Flatten layers applied to the raw input

    @property
    def n_units(self) -> int:
        """Total number of binary random variables (activation units + Bernoulli weights)."""
        return sum(n.size for n in self.nodes)

    @property
    def n_act_units(self) -> int:
        return sum(n.size for n in self.nodes if n.kind == "act")

    @property
    def n_weight_units(self) -> int:
        return sum(n.size for n in self.nodes if n.kind == "weight")

    def act_nodes(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.kind == "act"]

    def describe_units(self) -> str:
        s = f"{self.n_units} binary units ({self.n_act_units} stochastic activations"
        if self.n_weight_units:
            s += f" + {self.n_weight_units} Bernoulli weights"
        return s + ")"


def flatten_sequential(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The leaves of nested ``nn.Sequential`` containers as (dotted name, module), in order."""
    if isinstance(model, nn.Sequential):
        out: list[tuple[str, nn.Module]] = []
        for name, child in model.named_children():
            out += flatten_sequential(child, f"{prefix}{name}.")
        return out
    return [(prefix[:-1], model)]


def binary_weight_obstacle(m: BinaryWeightLayer) -> str | None:
    """Why the exact and Monte Carlo analyses cannot take the binary-weight layer ``m`` (None: they can)."""
    if m.weights != "bernoulli":
        return ("weights='sign' is deterministic (its expected loss is piecewise constant in the latent weight); "
                "use weights='bernoulli'")
    if m.channel_scale == "mean_abs":
        return ("channel_scale='mean_abs' uses a detached statistic of the latent weight; "
                "use channel_scale=None or 'learned'")
    if m.input_quantizer is not None:
        return f"input_quantizer is not supported; put a StochasticSign layer before the {type(m).__name__} instead"
    return None


def _unsupported(where: str, module: nn.Module, why: str = "") -> ValueError:
    msg = f"unsupported layer {where} ({type(module).__module__}.{type(module).__name__})"
    if why:
        msg += f": {why}"
    return ValueError(msg + "; the estimator lab supports nn.Sequential models of " + ", ".join(SUPPORTED))


def parse_network(model: nn.Module, in_shape: tuple[int, ...]) -> Network:
    """Read ``model`` into a :class:`Network` for inputs of shape ``in_shape`` = (batch, ...)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers = flatten_sequential(model)
    if not layers:
        raise ValueError("the model has no layers")
    leading: list[nn.Module] = []
    feat_shape = tuple(in_shape[1:])
    i = 0
    while i < len(layers) and isinstance(layers[i][1], (nn.Flatten, nn.Identity)):
        m = layers[i][1]
        if isinstance(m, nn.Flatten):
            leading.append(m)
            feat_shape = tuple(m(torch.empty((1,) + feat_shape, device="meta")).shape[1:])
        i += 1
    if len(feat_shape) != 1:
        raise ValueError(f"inputs must be (batch, features) (or flattened by leading nn.Flatten layers), "
                         f"got per-example shape {feat_shape}")
    d = feat_shape[0]
    in_features = d
    steps: list[Step] = []
    nodes: list[Node] = []
    for name, m in layers[i:]:
        where = f"{name!r}" if name else "(the model)"
        if isinstance(m, nn.Linear):
            if m.in_features != d:
                raise ValueError(f"mismatched shapes: layer {where} (Linear) expects {m.in_features} input "
                                 f"features, got {d}")
            steps.append(Step("linear", m, name, d, m.out_features))
            d = m.out_features
        elif isinstance(m, BinaryLinear):
            why = binary_weight_obstacle(m)
            if why:
                raise _unsupported(where, m, why)
            if m.in_features != d:
                raise ValueError(f"mismatched shapes: layer {where} (BinaryLinear) expects {m.in_features} "
                                 f"input features, got {d}")
            nodes.append(Node("weight", len(steps), m.latent_weight.numel(), get_noise(m.weight_noise),
                              float(m.weight_noise_scale), f"{name}.latent_weight" if name else "latent_weight"))
            steps.append(Step("binary_linear", m, name, d, m.out_features, node=len(nodes) - 1))
            d = m.out_features
        elif isinstance(m, StochasticSign):
            nodes.append(Node("act", len(steps), d, get_noise(m.noise), float(m.scale), name))
            steps.append(Step("act", m, name, d, d, node=len(nodes) - 1))
        elif isinstance(m, nn.Identity):
            steps.append(Step("identity", m, name, d, d))
        elif isinstance(m, nn.Flatten):
            raise _unsupported(where, m, "nn.Flatten is supported only before every other layer")
        else:
            raise _unsupported(where, m)
    return Network(steps, nodes, in_features, d, leading)


def prepare_inputs(net: Network, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Apply the leading Flatten layers, check shapes against ``y`` and cast ``x`` to ``dtype``."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be torch.Tensor")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (batch, features), got {tuple(x.shape)}")
    if y.dim() == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(f"mismatched shapes: x has {x.shape[0]} examples but y has shape {tuple(y.shape)}")
    for m in net.leading:
        x = m(x)
    if x.dim() != 2 or x.shape[1] != net.in_features:
        raise ValueError(f"mismatched shapes: the network expects inputs with {net.in_features} features, "
                         f"got x of shape {tuple(x.shape)}")
    return x.to(dtype)


def param_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's parameters (float32 if it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def check_per_example_loss(loss: torch.Tensor, n: int) -> torch.Tensor:
    """``loss_fn`` must return one loss per example: shape (n,)."""
    if not isinstance(loss, torch.Tensor) or loss.shape != (n,):
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn(output, target) must return per-example losses of shape ({n},), got {shape} "
                         f"(use reduction='none' for torch losses)")
    return loss


class PerExampleLoss:
    """``loss_fn`` as a function returning one loss per example, whichever reduction it has.

    A loss that returns one loss per example (torch's ``reduction="none"``) is used as it is. One that
    reduces the batch to a scalar (torch's default ``"mean"``, or ``"sum"``) is evaluated on each example
    alone, vectorised by :func:`torch.func.vmap`: on a single example both reductions give that example's
    loss, so the batch objective is their mean. (A reduction that weights the examples, e.g. class
    weights with ``"mean"``, is not the mean of single-example losses: pass ``reduction="none"`` then.)
    The first call decides which kind ``loss_fn`` is.

    >>> import torch.nn.functional as F
    >>> out, y = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 0, 1])
    >>> torch.allclose(PerExampleLoss(F.cross_entropy)(out, y), F.cross_entropy(out, y, reduction="none"))
    True
    """

    def __init__(self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.loss_fn = loss_fn
        self.reduces: bool | None = None

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.reduces is None:
            loss = self.loss_fn(out, target)
            self.reduces = isinstance(loss, torch.Tensor) and loss.dim() == 0
            if not self.reduces:
                return check_per_example_loss(loss, out.shape[0])
        if not self.reduces:
            return check_per_example_loss(self.loss_fn(out, target), out.shape[0])
        try:
            loss = torch.func.vmap(lambda o, t: self.loss_fn(o.unsqueeze(0), t.unsqueeze(0)))(out, target)
        except Exception as e:  # a loss that vmap cannot batch (data-dependent Python control flow, .item())
            raise ValueError(f"loss_fn(output, target) returns one number for the batch and cannot be evaluated "
                             f"per example with torch.func.vmap ({type(e).__name__}: {str(e).splitlines()[0]}); "
                             f"give a loss that returns per-example losses (reduction='none')") from None
        return check_per_example_loss(loss, out.shape[0])


@functools.lru_cache(maxsize=64)
def _state_table_cached(n: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    idx = torch.arange(2 ** n, device=device)
    bits = (idx[:, None] >> torch.arange(n - 1, -1, -1, device=device)[None, :]) & 1
    return bits.to(dtype) * 2 - 1


def state_table(n: int, dtype: torch.dtype, device: torch.device | str | None = None) -> torch.Tensor:
    r"""All :math:`2^n` joint states of ``n`` binary units as a (2^n, n) ±1 table (do not modify it).

    Row ``i`` has unit ``j`` at +1 iff bit ``n-1-j`` of ``i`` is set (unit 0 is the most
    significant bit), the order used by :func:`state_probs`.
    """
    return _state_table_cached(n, dtype, str(torch.device(device) if device is not None else "cpu"))


def state_probs(p: torch.Tensor) -> torch.Tensor:
    r"""Joint probabilities of all states of independent units: (..., n) -> (..., 2^n).

    ``p[..., j]`` is :math:`P(x_j=+1)`; the result at state index ``i`` (see
    :func:`state_table`) is :math:`\prod_j (p_j \text{ if } x_j=+1 \text{ else } 1-p_j)`.
    No logarithms are taken, so probabilities of exactly 0 or 1 (saturated uniform noise)
    are fine and differentiable.
    """
    plus = _plus_mask(p.shape[-1], str(p.device))                    # (S, n)
    p = p.unsqueeze(-2)                                               # (..., 1, n)
    return torch.where(plus, p, 1 - p).prod(-1)


@functools.lru_cache(maxsize=64)
def _plus_mask(n: int, device: str) -> torch.Tensor:
    return _state_table_cached(n, torch.float32, device) > 0


def surrogate_gradients(sample, nodes, params: dict[str, torch.Tensor], reference: str, disarm_terms,
                        unit_differences, weight_differences) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    r"""The parameter gradient of one reference sample and the node states it was computed on.

    The surrogate :math:`\frac1B\sum_b \ell_b + \sum_k\langle a_k, \hat g_{a_k}\rangle` (every binary
    state held fixed) is differentiated, where :math:`\hat g_{a_k}` is DisARM's term
    (``disarm_terms(sample, k)``) or, for local expectations, :math:`\frac1s F'(a_k/s)` times the
    two-state differences: ``unit_differences(k, diffs)`` per unit layer (the last first, so that its
    differences serve the earlier ones through ``diffs``) and ``weight_differences(k, diffs)`` per
    Bernoulli weight tensor. ``sample`` has ``L`` (per-example losses), ``B``, ``pre`` and ``state``
    per node; shared by the chain (:mod:`stbin.analysis.reference`) and the hooked-model
    (:mod:`stbin.analysis.graph`) interpreters.
    """
    terms = sample.L.mean()
    if reference == "disarm":
        for i in range(len(nodes)):
            terms = terms + (sample.pre[i] * disarm_terms(sample, i)).sum()
    else:
        diffs: dict[int, torch.Tensor] = {}
        for i in reversed(range(len(nodes))):
            if nodes[i].kind == "act":
                diffs[i] = unit_differences(i, diffs)
        for i, nd in enumerate(nodes):
            slope = nd.noise.pdf(sample.pre[i].detach() / nd.scale) / nd.scale
            if nd.kind == "act":
                g = slope * diffs[i].view_as(sample.pre[i]) / sample.B
            else:
                g = slope * weight_differences(i, diffs)
            terms = terms + (sample.pre[i] * g).sum()
    grads = torch.autograd.grad(terms, list(params.values()), allow_unused=True)
    states = [sample.state[i].detach() for i in range(len(nodes))]
    return {n: (torch.zeros_like(p) if g is None else g.detach()) for (n, p), g in zip(params.items(), grads)}, states

