r"""The registry of the lab's gradient estimators and the interface every entry implements.

A *gradient estimator* turns one joint sample of a stochastic binary network's binary
variables (units and Bernoulli weights) into an estimate :math:`\hat g` of the true gradient
:math:`g = \nabla_\theta \frac1B\sum_b \mathbb{E}[\ell_b]`. (Not to be confused with the
straight-through *functions* of :mod:`stbin.estimators`, which some of these entries use.)

An entry is an instance of a :class:`GradientEstimator` subclass registered in
:data:`GRADIENT_ESTIMATORS`. It carries its whole computation in two methods:

* :meth:`GradientEstimator.node_value` ``(ctx, i, pre)`` — the value (with its autograd
  backward) that stochastic node ``i`` outputs for pre-activation ``pre`` (the latent weight
  :math:`\theta` for a Bernoulli weight tensor);
* :meth:`GradientEstimator.surrogate` ``(ctx, L)`` — from the per-example losses ``L``
  (shape (K, B): K samples of a batch of B) the scalar whose gradient with respect to the
  K per-sample parameter copies is the K estimates; the default is the sum over samples of
  the batch-mean loss (a pathwise estimator: the gradient flows through ``node_value``).

An estimator whose surrogate is the default (``pathwise = True``) also runs on real
networks (:func:`stbin.analysis.gradient_quality`). Adding an estimator is one class plus
one ``GRADIENT_ESTIMATORS.register(...)`` call, in any module (see docs/extending.md).

>>> from stbin.analysis.gradient_estimators import GRADIENT_ESTIMATORS
>>> "st" in GRADIENT_ESTIMATORS and GRADIENT_ESTIMATORS.get("st").pathwise
True
"""

from __future__ import annotations

from typing import Any

import torch

from stbin._registry import Registry


class NodeContext:
    """What a node function may use: the network's nodes, the random generator, the
    temperature of ``name:T`` estimators and, when states are enumerated, the forced states.

    Attributes:
        nodes: the stochastic nodes (each with ``kind`` ``"act"``/``"weight"``, ``noise``
            (a :class:`stbin.estimators.noise.Noise`) and ``scale``).
        generator: ``torch.Generator`` for every random draw (or None).
        temperature: the ``T`` of ``name:T`` (None for estimators without one).
        forced: None, or one ±1 tensor per node: the states to use instead of samples.
    """

    def __init__(self, nodes: list[Any], generator: torch.Generator | None, temperature: float | None,
                 forced: list[torch.Tensor] | None = None) -> None:
        self.nodes = nodes
        self.generator = generator
        self.temperature = temperature
        self.forced = forced

    def uniform(self, like: torch.Tensor) -> torch.Tensor:
        """Uniform variates on [0, 1) with the shape, dtype and device of ``like``."""
        return torch.rand(like.shape, generator=self.generator, dtype=like.dtype, device=like.device)

    def sample(self, i: int, pre: torch.Tensor) -> torch.Tensor:
        """A ±1 sample of node ``i`` given ``pre`` (no gradient), or its forced state."""
        if self.forced is not None:
            return self.forced[i].expand_as(pre).to(pre.dtype)
        nd = self.nodes[i]
        p = nd.noise.prob_plus(pre.detach(), nd.scale)
        return (self.uniform(pre) < p).to(pre.dtype) * 2 - 1


class GradientEstimator:
    """Base class of the registered gradient estimators (see the module docstring).

    Class attributes: ``random`` (False: one deterministic estimate), ``temperature``
    (accepts ``name:T``), ``enumerable`` (a function of the discrete sample only, so
    :func:`stbin.analysis.expected_estimate` can average it exactly), ``unbiased``
    (its expectation is the true gradient), ``pathwise`` (the surrogate is the loss itself),
    ``mean_field_baseline`` (the context carries ``baseline``, the per-example loss of the
    mean-field forward pass).
    """

    name: str = ""
    description: str = ""
    random: bool = True
    temperature: bool = False
    enumerable: bool = False
    unbiased: bool = False
    pathwise: bool = True
    mean_field_baseline: bool = False

    def node_value(self, ctx: NodeContext, i: int, pre: torch.Tensor) -> torch.Tensor:
        """The output of stochastic node ``i`` for pre-activation ``pre``, with its backward."""
        raise NotImplementedError

    def surrogate(self, ctx: Any, L: torch.Tensor) -> torch.Tensor:
        """The scalar whose gradient is the estimates (default: ``ctx.batch_mean(L)``)."""
        return ctx.batch_mean(L)

    def __repr__(self) -> str:
        return f"<gradient estimator {self.name!r}>"


#: every gradient estimator of the lab, by name
GRADIENT_ESTIMATORS: Registry[GradientEstimator] = Registry("gradient estimator")


def register(est: GradientEstimator) -> GradientEstimator:
    """Register an estimator instance under its ``name`` (ValueError if taken or unnamed)."""
    if not isinstance(est, GradientEstimator):
        raise TypeError(f"expected a GradientEstimator instance, got {type(est).__name__}")
    if not est.name or not isinstance(est.name, str) or ":" in est.name:
        raise ValueError(f"a gradient estimator needs a name without ':', got {est.name!r}")
    GRADIENT_ESTIMATORS.register(est.name, est)
    return est


def parse_method(method: str) -> tuple[GradientEstimator, float | None]:
    """``"concrete:0.1"`` -> (the ``concrete`` entry, 0.1); the temperature defaults to 1.

    >>> est, t = parse_method("concrete:0.5")
    >>> est.name, t
    ('concrete', 0.5)
    """
    if not isinstance(method, str):
        raise ValueError(f"method must be a string such as 'st' or 'concrete:0.1', got {method!r}")
    name, _, arg = method.partition(":")
    info = GRADIENT_ESTIMATORS.get(name)
    if not info.temperature:
        if arg:
            raise ValueError(f"gradient estimator {name!r} takes no parameter, got {method!r}")
        return info, None
    try:
        t = float(arg) if arg else 1.0
    except ValueError:
        raise ValueError(f"bad temperature in {method!r}: expected e.g. '{name}:0.5'") from None
    if not t > 0 or t == float("inf"):
        raise ValueError(f"temperature must be positive and finite, got {method!r}")
    return info, t
