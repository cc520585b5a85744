r"""Any ``nn.Module`` built from stbin modules, read through forward hooks (residual nets, ``binarize``-d models).

:class:`HookedModel` is the generic counterpart of :class:`stbin.analysis.chain.Chain` for models
whose ``forward`` is arbitrary code (skip connections, concatenations, functional calls). A
forward pass on the batch with hooks finds the stochastic modules in *execution* order:

* :class:`stbin.nn.StochasticSign` — an ``act`` node; the hook replaces the module's output by
  the node's value for its input (the pre-activation);
* :class:`stbin.nn.BinaryLinear` / :class:`stbin.nn.BinaryConv2d` with ``weights="bernoulli"`` —
  a ``weight`` node; the hook recomputes the layer's output with the node's weight value.

Each must run once per forward pass (a module applied twice would be two nodes sharing one
noise and is refused, as are deterministic binary layers, whose expected loss has no gradient).
Every other module runs as the user wrote it, in evaluation mode.

The reference gradients (:func:`graph_reference`) evaluate the two states of a unit by
rerunning the whole model on the batch repeated ``c`` times, each copy with one unit of the node
flipped and every other unit read off the main sample's noise thresholds (common random
numbers), with the next layers' flip noise removed by the same zero-mean control variate as on
chains (:mod:`stbin.analysis.reference`). A Bernoulli weight flip is the layer's output plus the
layer applied to the one-entry weight difference (``torch.func.vmap`` over the flipped entries).

>>> import torch
>>> from torch import nn
>>> from stbin.nn import StochasticSign
>>> class Res(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.a, self.s, self.b, self.out = nn.Linear(3, 3), StochasticSign(), nn.Linear(3, 3), nn.Linear(3, 2)
...     def forward(self, x):
...         return self.out(x + self.b(self.s(self.a(x))))
>>> hm = HookedModel(Res(), torch.randn(4, 3))
>>> [(n.kind, n.name) for n in hm.nodes]
[('act', 's')]
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn

from stbin.analysis._network import binary_weight_obstacle, check_per_example_loss, surrogate_gradients
from stbin.analysis.chain import (Chain, ChainNode, NotAChain, analysis_mode, binary_forward, disarm_term,
                                  flipped_weight_differences, parse_chain)
from stbin.estimators.noise import get_noise
from stbin.nn import BinaryConv2d, BinaryLinear, Heaviside, QuantReLU, Sign, StochasticSign

NodeValue = Callable[[int, torch.Tensor], torch.Tensor]
_BINARY = (BinaryLinear, BinaryConv2d)


class HookedModel:
    """A model with its stochastic nodes found by a traced forward pass (module docstring)."""

    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.modules: list[nn.Module] = []
        self.nodes: list[ChainNode] = []
        names = {m: n for n, m in model.named_modules()}
        for n, m in model.named_modules():
            if isinstance(m, (Sign, Heaviside, QuantReLU)):
                raise ValueError(f"gradient quality: layer {n!r} ({type(m).__name__}) is a deterministic binary layer "
                                 f"(its expected loss has no gradient); use StochasticSign units or Bernoulli weights")
            if isinstance(m, _BINARY) and (why := binary_weight_obstacle(m)):
                raise ValueError(f"gradient quality: layer {n!r} ({type(m).__name__}) is not supported: {why}")
        order: list[nn.Module] = []

        def record(m: nn.Module, inp, out) -> None:
            if m in order:
                raise ValueError(f"gradient quality: layer {names[m]!r} ({type(m).__name__}) runs more than once per "
                                 f"forward pass; each stochastic layer must be applied once")
            order.append(m)

        hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (StochasticSign, *_BINARY))]
        try:
            with analysis_mode(model), torch.no_grad():
                model(x)
        finally:
            for h in hooks:
                h.remove()
        for m in order:
            if isinstance(m, StochasticSign):
                self.nodes.append(ChainNode("act", -1, get_noise(m.noise), float(m.scale), names[m]))
            else:
                self.nodes.append(ChainNode("weight", -1, get_noise(m.weight_noise), float(m.weight_noise_scale),
                                            f"{names[m]}.latent_weight" if names[m] else "latent_weight"))
            self.modules.append(m)
        if not self.nodes:
            raise ValueError("gradient quality: the model has no stochastic binary units or Bernoulli weights")

    @contextlib.contextmanager
    def hooked(self, value: Callable[[int, nn.Module, torch.Tensor], torch.Tensor]) -> Iterator[None]:
        """Every node's module output replaced by ``value(i, module, input)`` for the duration."""
        def make(i: int):
            return lambda m, inp, out: value(i, m, inp[0])
        hooks = [m.register_forward_hook(make(i)) for i, m in enumerate(self.modules)]
        try:
            yield
        finally:
            for h in hooks:
                h.remove()

    def run(self, x: torch.Tensor, node_value: NodeValue) -> torch.Tensor:
        """The model's output with each node's value ``node_value(i, pre)`` (``pre``: the input of an act
        node, the latent weight of a weight node)."""
        def value(i: int, m: nn.Module, inp: torch.Tensor) -> torch.Tensor:
            if self.nodes[i].kind == "act":
                return node_value(i, inp)
            return binary_forward(m, inp, node_value(i, m.latent_weight))
        with self.hooked(value):
            return self.model(x)

    def params(self) -> dict[str, torch.Tensor]:
        """The parameters the analysis differentiates (``requires_grad``), by name."""
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def layer_weights(self, names: list[str]) -> list[str]:
        """Weight tensors of the linear / convolutional layers, in module order."""
        out = []
        for n, m in self.model.named_modules():
            for attr in ("latent_weight", "weight"):
                key = f"{n}.{attr}" if n else attr
                if isinstance(m, (nn.Linear, nn.Conv2d, *_BINARY)) and key in names and key not in out:
                    out.append(key)
                    break
        return out

    def describe(self) -> str:
        n_act = sum(1 for n in self.nodes if n.kind == "act")
        return f"{n_act} stochastic layers, {len(self.nodes) - n_act} Bernoulli weight tensors (hooked model)"


def read_model(model: nn.Module | Chain | HookedModel, x: torch.Tensor) -> Chain | HookedModel:
    """A :class:`Chain` when the model is an ``nn.Sequential`` of stbin layers (the fast paths), else a
    :class:`HookedModel` traced on the batch ``x``."""
    if isinstance(model, (Chain, HookedModel)):
        return model
    try:
        return parse_chain(model)
    except NotAChain:
        return HookedModel(model, x)


class _GraphSample:
    """The main joint sample of a hooked model: thresholds, states, pre-activations and each node's input."""

    def __init__(self, hm: HookedModel, x: torch.Tensor, y: torch.Tensor, loss_fn, generator) -> None:
        self.hm, self.x, self.y, self.loss_fn = hm, x, y, loss_fn
        self.B = x.shape[0]
        self.u: dict[int, torch.Tensor] = {}
        self.tau: dict[int, torch.Tensor] = {}
        self.state: dict[int, torch.Tensor] = {}
        self.pre: dict[int, torch.Tensor] = {}
        self.inputs: dict[int, torch.Tensor] = {}
        self.outputs: dict[int, torch.Tensor] = {}

        def value(i: int, m: nn.Module, inp: torch.Tensor) -> torch.Tensor:
            nd = hm.nodes[i]
            pre = inp if nd.kind == "act" else m.latent_weight
            u = torch.rand(pre.shape, generator=generator, dtype=pre.dtype, device=pre.device)
            tau = nd.scale * nd.noise.mean_inverse(2 * u - 1)
            s = (pre.detach() > tau).to(pre.dtype) * 2 - 1
            self.u[i], self.tau[i], self.state[i], self.pre[i], self.inputs[i] = u, tau, s, pre, inp
            out = s if nd.kind == "act" else binary_forward(m, inp, s)
            self.outputs[i] = out.detach()
            return out

        with hm.hooked(value):
            self.out = hm.model(x)
        self.L = check_per_example_loss(loss_fn(self.out, y), self.B)

    def rows_loss(self, c: int, special: Callable[[int, nn.Module, torch.Tensor], torch.Tensor | None],
                  later: dict[int, torch.Tensor] | None, rb: bool) -> torch.Tensor:
        """Per-row losses of the model on the batch repeated ``c`` times (example-major rows): node i's
        output is ``special(i, module, input)`` when that is not None, else the units are read off the
        main thresholds (weights: the main states), minus the control variate of the known ``later``."""
        hm, B = self.hm, self.B
        cv = torch.zeros(B, c, dtype=self.L.dtype, device=self.L.device)

        def value(i: int, m: nn.Module, inp: torch.Tensor) -> torch.Tensor:
            nonlocal cv
            out = special(i, m, inp)
            if out is not None:
                return out
            nd = hm.nodes[i]
            if nd.kind == "weight":
                return binary_forward(m, inp, self.state[i])
            pre = inp.reshape(B, c, -1)
            x = (pre > self.tau[i].reshape(B, 1, -1)).to(inp.dtype) * 2 - 1
            if rb and later is not None and i in later:
                base = nd.noise.prob_plus(self.pre[i].detach(), nd.scale) - self.state[i] / 2
                delta = nd.noise.prob_plus(pre, nd.scale) - x / 2
                cv = cv + ((base.reshape(B, 1, -1) - delta) * later[i].reshape(B, 1, -1)).sum(-1)
            return x.reshape(inp.shape)

        xr = self.x.repeat_interleave(c, dim=0)
        with torch.no_grad(), hm.hooked(value):
            out = hm.model(xr)
        loss = check_per_example_loss(self.loss_fn(out, self.y.repeat_interleave(c, dim=0)), B * c)
        return (loss.view(B, c) - cv).reshape(-1)


def _unit_differences(s: _GraphSample, i: int, later: dict[int, torch.Tensor], rb: bool, budget: int
                      ) -> torch.Tensor:
    r""":math:`f_b(x_u{=}{+}1) - f_b(x_u{=}{-}1)` for every example b and unit u of act node i: (B, n)."""
    B = s.B
    state = s.state[i]
    flat = state.reshape(B, -1)
    n = flat.shape[1]
    width = max(max(t[0].numel() for t in s.outputs.values()), s.x[0].numel())
    c = max(1, min(n, budget // max(1, B * width)))
    out = torch.empty(B, n, dtype=flat.dtype, device=flat.device)
    L = s.L.detach()
    for j0 in range(0, n, c):
        j = torch.arange(j0, min(n, j0 + c), device=flat.device)
        cc = j.numel()

        def special(k: int, m: nn.Module, inp: torch.Tensor) -> torch.Tensor | None:
            if k != i:
                return None
            rows = flat[:, None, :].repeat(1, cc, 1)
            rows[:, torch.arange(cc), j] *= -1
            return rows.reshape(B * cc, *state.shape[1:])

        lf = s.rows_loss(cc, special, later, rb)
        out[:, j0:j0 + cc] = flat[:, j] * (L[:, None] - lf.view(B, cc))
    return out


def _weight_differences(s: _GraphSample, i: int, later: dict[int, torch.Tensor], rb: bool, budget: int
                        ) -> torch.Tensor:
    r""":math:`\frac1B\sum_b f_b(w_e{=}{+}1) - f_b(w_e{=}{-}1)` for every weight e of weight node i."""
    B, m, w = s.B, s.hm.modules[i], s.state[i]
    inp, base = s.inputs[i].detach(), s.outputs[i]
    width = max(max(t[0].numel() for t in s.outputs.values()), s.x[0].numel())
    ec = max(1, min(w.numel(), budget // max(1, B * width)))
    return flipped_weight_differences(m, inp, w, base, ec, s.L.detach().mean(),
                                      lambda rows, n: s.rows_loss(n, lambda k, mod, x_in: rows if k == i else None,
                                                                  later, rb))


def _disarm_terms(s: _GraphSample, i: int) -> torch.Tensor:
    """DisARM's estimate of the gradient with respect to node i's pre-activation (or latent weight)."""
    nd = s.hm.nodes[i]

    def special(xt: torch.Tensor) -> Callable:
        def replace(k: int, mod: nn.Module, inp: torch.Tensor) -> torch.Tensor | None:
            if k != i:
                return None
            return xt if nd.kind == "act" else binary_forward(mod, inp, xt)
        return replace

    return disarm_term(nd, s.pre[i].detach(), s.u[i], s.state[i], s.L.detach(), s.B,
                       lambda xt: s.rows_loss(1, special(xt), None, False))


def graph_reference(hm: HookedModel, loss_fn, x: torch.Tensor, y: torch.Tensor, reference: str,
                    generator: torch.Generator | None, rb: bool, budget: int
                    ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """One reference sample of a hooked model and the node states it was computed on (as
    :func:`stbin.analysis.reference.reference_with_states`)."""
    params = hm.params()
    with analysis_mode(hm.model):
        s = _GraphSample(hm, x, y, loss_fn, generator)
        return surrogate_gradients(s, hm.nodes, params, reference, _disarm_terms,
                                   lambda i, diffs: _unit_differences(s, i, diffs, rb, budget),
                                   lambda i, diffs: _weight_differences(s, i, diffs, rb, budget))
