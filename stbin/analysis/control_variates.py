r"""Control variates for the reference gradient: the cheap ST estimator on the same joint sample.

A reference sample :math:`r` (:mod:`stbin.analysis.reference`) is unbiased for the true
gradient :math:`g` but costs many downstream evaluations; an ST sample :math:`s` (principled
straight-through, Shekhovtsov & Yanush, GCPR 2021) costs one backward pass but is biased.
Computed on the **same** joint sample of the binary variables, the two are strongly
correlated wherever ST is nearly exact (the last binary layers, the real-valued output layer,
where :math:`r - s` is exactly 0). Writing

.. math::
   g = \mathbb{E}[s] + \mathbb{E}[r - s],

the first term is estimated from :math:`K` cheap ST samples :math:`s_1..s_K` on fresh joint
samples and the second from the paired difference :math:`\delta = r - s_0` (:math:`s_0`: ST on
:math:`r`'s own sample). The control-variate reference

.. math::
   r' = r - s_0 + \frac1K\sum_{k=1}^K s_k, \qquad \mathbb{E}[r'] = g,\quad
   \operatorname{Cov}[r'] = \operatorname{Cov}[r - s_0] + \tfrac1K\operatorname{Cov}[s]

is unbiased whatever the correlation (a control variate with coefficient 1; Owen, *Monte Carlo
theory, methods and examples*, 2013, ch. 8) and i.i.d. across draws, so the
U-statistics and jackknife intervals of :func:`stbin.analysis.gradient_quality` apply to it
unchanged. The same pairing gives ST's bias with low variance: :math:`\mathbb{E}[s] - g =
-\mathbb{E}[\delta]`.

>>> import torch
>>> from torch import nn
>>> from stbin.nn import StochasticSign
>>> net = nn.Sequential(nn.Linear(3, 4), StochasticSign(), nn.Linear(4, 2))
>>> loss = lambda o, t: nn.functional.cross_entropy(o, t, reduction="none")
>>> x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
>>> g = control_variate_sample(net, loss, x, y, generator=torch.Generator().manual_seed(0), st_samples=4)
>>> sorted(g)
['0.bias', '0.weight', '2.bias', '2.weight']
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from stbin.analysis._network import check_per_example_loss
from stbin.analysis.chain import Chain, analysis_mode
from stbin.analysis.graph import HookedModel, read_model
from stbin.analysis.gradient_estimators import NodeContext, parse_method
from stbin.analysis.reference import reference_with_states

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def method_sample(chain: Chain | HookedModel, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, est: Any,
                  temperature: float | None, generator: torch.Generator | None, params: dict[str, torch.Tensor],
                  forced: list[torch.Tensor] | None = None) -> torch.Tensor:
    """One single-sample estimate of the pathwise estimator ``est`` as a flat vector (parameters in
    the order of ``params``); ``forced``: evaluate it on these node states instead of a fresh sample
    (estimators that are functions of the discrete sample, such as ``st``)."""
    ctx = NodeContext(chain.nodes, generator, temperature, forced)
    with analysis_mode(chain.model):
        out = chain.run(x, lambda i, pre: est.node_value(ctx, i, pre))
        L = check_per_example_loss(loss_fn(out, y), x.shape[0]).mean()
        gs = torch.autograd.grad(L, list(params.values()), allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params.values(), gs)])


def paired_draw(chain: Chain | HookedModel, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, reference: str,
                generator: torch.Generator | None, params: dict[str, torch.Tensor], st_samples: int
                ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """(r, s_0, [s_1..s_K]) as flat vectors: a reference sample, ST on the same joint sample and
    ``st_samples`` ST samples on fresh joint samples (module docstring)."""
    st, _ = parse_method("st")
    r, states = reference_with_states(chain, loss_fn, x, y, reference, generator)
    r_flat = torch.cat([r[k].reshape(-1) for k in params])
    s0 = method_sample(chain, loss_fn, x, y, st, None, generator, params, forced=states)
    fresh = [method_sample(chain, loss_fn, x, y, st, None, generator, params) for _ in range(st_samples)]
    return r_flat, s0, fresh


def control_variate_sample(model: nn.Module | Chain | HookedModel, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                           reference: str = "local_expectation", generator: torch.Generator | None = None,
                           st_samples: int = 8) -> dict[str, torch.Tensor]:
    r"""One control-variate reference sample :math:`r' = r - s_0 + \frac1K\sum_k s_k` (unbiased for the
    true gradient of the batch-mean expected loss; module docstring).

    Args:
        model: as for :func:`stbin.analysis.reference_sample`.
        loss_fn: ``loss_fn(output, target)`` returning per-example losses.
        x, y: the batch.
        reference: ``"local_expectation"`` or ``"disarm"``.
        generator: ``torch.Generator`` for every draw.
        st_samples: :math:`K \ge 1`, the fresh ST samples that estimate :math:`\mathbb{E}[s]`.

    Returns:
        the estimate, keyed like ``model.named_parameters()`` (parameters with ``requires_grad``).
    """
    if isinstance(st_samples, bool) or not isinstance(st_samples, int) or st_samples < 1:
        raise ValueError(f"st_samples must be an integer >= 1, got {st_samples!r}")
    chain = read_model(model, x)
    params = chain.params()
    r, s0, fresh = paired_draw(chain, loss_fn, x, y, reference, generator, params, st_samples)
    v = r - s0 + torch.stack(fresh).mean(0)
    return {k: p.view_as(params[k]) for k, p in zip(params, torch.split(v, [p.numel() for p in params.values()]))}
