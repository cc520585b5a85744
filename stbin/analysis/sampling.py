r"""Drawing gradient estimates on small networks: every single-sample estimate, their mean, or the
exact expectation of an estimator by enumeration.

One estimate uses one joint sample for the whole batch: each example has its own unit
states, the Bernoulli weights are one sample shared by the batch (as in training).
``n_samples`` estimates are computed in chunks by :mod:`stbin.analysis._interpreter`
(per-sample parameter copies, batched matrix products); seeded runs repeat exactly for a
given ``chunk_size``. The estimators are the entries of
:data:`stbin.analysis.gradient_estimators.GRADIENT_ESTIMATORS`.

>>> import torch
>>> from torch import nn
>>> from stbin.nn import StochasticSign
>>> net = nn.Sequential(nn.Linear(2, 3), StochasticSign(), nn.Linear(3, 1)).double()
>>> loss = lambda o, t: (o[:, 0] - t) ** 2
>>> x, y = torch.randn(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
>>> g = sample_gradients(net, loss, x, y, "st", 5, torch.Generator().manual_seed(0))
>>> tuple(g["0.weight"].shape)
(5, 3, 2)
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import nn

from stbin.analysis._interpreter import LabContext, Params, mean_field_losses, run_steps
from stbin.analysis._network import Network, param_dtype, parse_network, prepare_inputs, state_table
from stbin.analysis.exact import check_unit_limit
from stbin.analysis.gradient_estimators import GRADIENT_ESTIMATORS, GradientEstimator, parse_method

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _surrogate(net: Network, params: Params, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
               est: GradientEstimator, temperature: float | None, generator: torch.Generator | None,
               baseline: torch.Tensor | None, forced: list[torch.Tensor] | None = None) -> torch.Tensor:
    """The sum over the K samples of the estimator's surrogate; its gradient with respect to
    per-sample parameter copies is the K estimates. With ``forced`` (one ±1 tensor per node,
    broadcastable to the node's shape) the discrete samples are those states and each state's
    term is weighted by its probability (for :func:`expected_estimate`)."""
    ctx = LabContext(net, params, loss_fn, y, generator, temperature, baseline, forced)
    h0 = x.unsqueeze(0).expand(params.K, *x.shape)
    out = run_steps(net, params, h0, 0, lambda i, pre: est.node_value(ctx, i, pre), ctx.inputs)
    return est.surrogate(ctx, ctx.output_losses(out))


def _setup(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, method: str,
           dtype: torch.dtype | None) -> tuple[Network, GradientEstimator, float | None, torch.Tensor, torch.dtype]:
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(output, target) -> per-example losses")
    est, temp = parse_method(method)
    net = parse_network(model, tuple(x.shape))
    dt = dtype if dtype is not None else param_dtype(model)
    return net, est, temp, prepare_inputs(net, x, y, dt), dt


def _check_n(n_samples: int) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    return n_samples


def _chunks(n: int, batch: int, chunk_size: int | None) -> list[int]:
    if chunk_size is None:
        chunk_size = max(1, min(4096, (1 << 16) // max(batch, 1)))
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    out = [chunk_size] * (n // chunk_size)
    return out + [n % chunk_size] if n % chunk_size else out


def _baseline(est: GradientEstimator, net: Network, model: nn.Module, loss_fn: LossFn, x: torch.Tensor,
              y: torch.Tensor, dt: torch.dtype) -> torch.Tensor | None:
    return mean_field_losses(net, model, loss_fn, x, y, dt) if est.mean_field_baseline else None


def _iter_sample_chunks(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, method: str,
                        n_samples: int, generator: torch.Generator | None, chunk_size: int | None,
                        dtype: torch.dtype | None) -> Iterator[dict[str, torch.Tensor]]:
    net, est, temp, xx, dt = _setup(model, loss_fn, x, y, method, dtype)
    _check_n(n_samples)
    baseline = _baseline(est, net, model, loss_fn, xx, y, dt)
    if not est.random:  # deterministic: one estimate, repeated
        params = Params(model, 1, dt, per_sample=True)
        g = _grads(_surrogate(net, params, loss_fn, xx, y, est, temp, generator, baseline), params)
        for k in _chunks(n_samples, xx.shape[0], chunk_size):
            yield {n: v.expand(k, *v.shape[1:]) for n, v in g.items()}
        return
    for k in _chunks(n_samples, xx.shape[0], chunk_size):
        params = Params(model, k, dt, per_sample=True)
        yield _grads(_surrogate(net, params, loss_fn, xx, y, est, temp, generator, baseline), params)


def _grads(sur: torch.Tensor, params: Params) -> dict[str, torch.Tensor]:
    names = list(params.leaves)
    leaves = [params.leaves[n] for n in names]
    if not sur.requires_grad:
        return {n: torch.zeros_like(t) for n, t in zip(names, leaves)}
    gs = torch.autograd.grad(sur, leaves, allow_unused=True)
    return {n: (torch.zeros_like(t) if g is None else g.detach()) for n, t, g in zip(names, leaves, gs)}


def sample_gradients(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, method: str,
                     n_samples: int, generator: torch.Generator | None = None, *, chunk_size: int | None = None,
                     dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    r"""``n_samples`` independent single-sample gradient estimates, each of the batch-mean loss.

    Args:
        model: an ``nn.Sequential`` the exact oracle supports (see
            :func:`stbin.analysis.exact_expected_loss`); it is not modified and its ``.grad``
            is untouched.
        loss_fn: ``loss_fn(output, target)`` returning per-example losses.
        x, y: the batch.
        method: a registered gradient estimator (``st``, ``det_htanh``, ``det_tanh``,
            ``det_identity``, ``reinforce``, ``reinforce_baseline``, ``arm``, ``disarm``,
            ``concrete:T``, ``st_concrete:T`` or one you registered).
        n_samples: number of estimates.
        generator: ``torch.Generator`` for every random draw (seeded runs repeat exactly).
        chunk_size: estimates computed at once (default: about 2^16 / batch).
        dtype: computation dtype (default: the model's).

    Returns:
        a dict keyed like ``model.named_parameters()`` (parameters with ``requires_grad``);
        entry ``name`` has shape ``(n_samples, *param.shape)``.
    """
    out: dict[str, torch.Tensor] = {}
    k = 0
    for g in _iter_sample_chunks(model, loss_fn, x, y, method, n_samples, generator, chunk_size, dtype):
        for n, v in g.items():
            if n not in out:  # one buffer up front: keeping many small chunks alive fragments the heap
                out[n] = torch.empty((n_samples, *v.shape[1:]), dtype=v.dtype, device=v.device)
            out[n][k:k + v.shape[0]] = v
        k += next(iter(g.values())).shape[0] if g else 0
    return out


def estimate_gradients(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, method: str,
                       n_samples: int = 1, generator: torch.Generator | None = None, *,
                       chunk_size: int | None = None, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The mean of ``n_samples`` single-sample estimates (see :func:`sample_gradients`), keyed by parameter name."""
    total: dict[str, torch.Tensor] = {}
    for g in _iter_sample_chunks(model, loss_fn, x, y, method, n_samples, generator, chunk_size, dtype):
        for n, v in g.items():
            if n in total:
                total[n] += v.sum(0)
            else:
                total[n] = v.sum(0)
    return {n: v / n_samples for n, v in total.items()}


def expected_estimate(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, method: str, *,
                      max_units: int = 16, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    r"""The exact expectation :math:`\mathbb{E}[\hat g]` of an estimator, by enumerating all joint states.

    For estimators that are a function of the discrete sample (``enumerable``: ``st``,
    ``det_*``, ``reinforce``, ``reinforce_baseline``): :math:`\mathbb{E}[\hat g] = \sum_{h}
    \frac1B\sum_b p_b(h)\,\hat g_b(h)` over every joint state :math:`h` of all units and
    Bernoulli weights (:math:`2^{n}` states, ``max_units`` default 16). Compared with
    :func:`stbin.analysis.exact_gradients` it gives an estimator's bias with no sampling
    error. For ``st`` the forced states pass through the library's ST backward
    (:func:`stbin.estimators.stochastic_sign`).
    """
    net, est, temp, xx, dt = _setup(model, loss_fn, x, y, method, dtype)
    if not est.enumerable:
        names = ", ".join(n for n in GRADIENT_ESTIMATORS.names() if GRADIENT_ESTIMATORS.get(n).enumerable)
        raise ValueError(f"expected_estimate supports estimators that are functions of the discrete sample "
                         f"({names}); got {method!r}")
    check_unit_limit(net, max_units)
    table = state_table(net.n_units, dt, xx.device)              # (K, n)
    K = table.shape[0]
    forced, off = [], 0
    for nd in net.nodes:
        cols = table[:, off:off + nd.size]
        off += nd.size
        if nd.kind == "act":
            forced.append(cols.unsqueeze(1))                    # (K, 1, n) broadcast over the batch
        else:
            forced.append(cols.reshape(K, *net.steps[nd.step].module.latent_weight.shape))
    baseline = _baseline(est, net, model, loss_fn, xx, y, dt)
    params = Params(model, K, dt, per_sample=False)
    sur = _surrogate(net, params, loss_fn, xx, y, est, temp, None, baseline, forced=forced)
    names = list(params.leaves)
    gs = torch.autograd.grad(sur, [params.leaves[k] for k in names], allow_unused=True)
    return {k: (torch.zeros_like(params.leaves[k]) if g is None else g) for k, g in zip(names, gs)}
