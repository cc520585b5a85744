r"""Exact expected loss and exact gradients of small stochastic binary networks, by enumeration.

For a network of stochastic binary layers :math:`h_1, \dots, h_L` (Shekhovtsov & Yanush, GCPR 2021, Sec. 2)

.. math::
   a_k = A_k(h_{k-1}),\qquad P(h_{k,j}=+1 \mid h_{k-1}) = F_k(a_{k,j}/s_k),\qquad
   \text{output} = A_{L+1}(h_L),\qquad h_0 = x,

where :math:`A_k` is the (affine) segment of deterministic layers between two activation
layers, the expected loss of example :math:`b` is the finite sum

.. math::
   \mathcal{L}_b = \sum_{h_1,\dots,h_L} \prod_{k=1}^{L} p(h_k \mid h_{k-1})\;
   \ell(A_{L+1}(h_L), y_b).

The chain is Markov, so the sum is computed layer by layer rather than over all
:math:`2^{\sum_k n_k}` joint states: with the table
:math:`P_k[b, h] = p(h_k = h \mid x_b)` (batch :math:`\times\, 2^{n_k}`),

.. math::
   P_1[b, h] = p(h_1 = h \mid x_b), \qquad
   P_k = P_{k-1}\, T_k,\quad T_k[h', h] = p(h_k = h \mid h_{k-1} = h'),\qquad
   \mathcal{L}_b = \sum_h P_L[b, h]\, \ell(A_{L+1}(h), y_b).

Each transition matrix :math:`T_k` is :math:`2^{n_{k-1}} \times 2^{n_k}` and does not depend
on the example, so the 2-5-5-5 network costs two 32x32 matrices and two (batch x 32)
tables. Every entry is a product of :math:`F` values, so :math:`\mathcal{L}` is a
differentiable function of all parameters and autograd gives the **true gradient**
:math:`\nabla_\theta \frac1B\sum_b \mathcal{L}_b` (no estimator involved).

**Bernoulli weights** (:class:`stbin.nn.BinaryLinear`, :math:`w=\operatorname{sign}(\theta-s_wz)`)
of a segment are enumerated jointly: for the :math:`C = 2^{n_w}` configurations :math:`c`
with probabilities :math:`\pi_c = \prod_i P(w_i = c_i)`, the transition becomes
:math:`T_k = \sum_c \pi_c T_k^{(c)}` (and the last segment's loss
:math:`\sum_c \pi_c \ell(A^{(c)}(h), y)`). This is exact for the batch-averaged expected loss
because, for one example, the weights of segment :math:`k` enter only transition
:math:`k`, and they are independent of all other variables; the expectation of a sum over
examples is the sum of the per-example expectations whether or not a sample of the weights
is shared by the batch.

The number of binary variables (activation units plus Bernoulli weights) is limited by
``max_units`` (default 24): the enumeration cost grows as :math:`2^{n}` per layer.
Computation runs in ``dtype`` (default float64) whatever the model's dtype; the casts are
differentiable, so gradients arrive in each parameter's own dtype.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stbin.analysis._network import (DEFAULT_MAX_UNITS, Network, check_per_example_loss, parse_network,
                                     prepare_inputs, state_probs, state_table)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: largest table (elements) one enumeration step may build; about 0.5 GiB in float64
MAX_TABLE_ELEMENTS = 2 ** 26


def check_unit_limit(net: Network, max_units: int) -> None:
    """Refuse a network with more binary variables than ``max_units`` (ValueError with the count)."""
    if isinstance(max_units, bool) or not isinstance(max_units, int) or max_units < 0:
        raise ValueError(f"max_units must be a non-negative integer, got {max_units!r}")
    if net.n_units > max_units:
        raise ValueError(f"the network has {net.describe_units()}, more than max_units={max_units}: exact "
                         f"enumeration costs 2^units; use a smaller network or pass a larger max_units")


def _check_table(elements: int, what: str) -> None:
    if elements > MAX_TABLE_ELEMENTS:
        raise ValueError(f"exact enumeration would build a table of {elements:,} elements for {what} (limit "
                         f"{MAX_TABLE_ELEMENTS:,}); use fewer examples per call or narrower layers")


_NO_CONFIGS = torch.ones(1, 0)


def _weight_configs(net: Network, steps: range, dtype: torch.dtype, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor | None, dict[int, tuple[int, int]]]:
    """Joint ±1 configurations (C, n_w) of the Bernoulli weights of ``steps``, their probabilities (C,)
    (None when the segment has no Bernoulli weight: a single configuration) and each
    binary_linear step's column slice."""
    probs, slices, off = [], {}, 0
    for i in steps:
        st = net.steps[i]
        if st.kind == "binary_linear":
            node = net.nodes[st.node]  # type: ignore[index]
            theta = st.module.latent_weight.to(dtype)
            probs.append(node.noise.prob_plus(theta.reshape(-1), node.scale))
            slices[i] = (off, off + node.size)
            off += node.size
    if not probs:
        return _NO_CONFIGS, None, slices  # type: ignore[return-value]
    p = torch.cat(probs)
    return state_table(off, dtype, device), state_probs(p), slices


def _apply_segment(net: Network, steps: range, h: torch.Tensor, configs: torch.Tensor,
                   slices: dict[int, tuple[int, int]], dtype: torch.dtype) -> torch.Tensor:
    """Deterministic layers of a segment on inputs ``h`` (R, d) for every weight configuration: (C', R, d')."""
    h = h.unsqueeze(0)
    for i in steps:
        st = net.steps[i]
        m = st.module
        if st.kind == "linear":
            h = F.linear(h, m.weight.to(dtype), None if m.bias is None else m.bias.to(dtype))
        elif st.kind == "binary_linear":
            lo, hi = slices[i]
            w = configs[:, lo:hi].reshape(-1, st.out_features, st.in_features)
            if m.learned_channel_scale is not None:
                w = w * m.learned_channel_scale.to(dtype)[None, :, None]
            h = torch.matmul(h, w.transpose(-1, -2))
            if m.bias is not None:
                h = h + m.bias.to(dtype)
        # identity: nothing
    return h


def exact_per_example_loss(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                           max_units: int = DEFAULT_MAX_UNITS, dtype: torch.dtype = torch.float64
                           ) -> torch.Tensor:
    r"""The exact expected loss :math:`\mathcal{L}_b` of every example, shape (batch,), differentiable.

    See :func:`exact_expected_loss` for the arguments.
    """
    net = parse_network(model, tuple(x.shape))
    check_unit_limit(net, max_units)
    x = prepare_inputs(net, x, y, dtype)
    B = x.shape[0]
    device = x.device
    # segments: ranges of steps between activation steps
    bounds = [-1] + [st_i for st_i, st in enumerate(net.steps) if st.kind == "act"] + [len(net.steps)]
    h_in = x          # (R, d): the examples first, then the table of previous states
    P: torch.Tensor | None = None  # (B, S): distribution of the current layer's state per example
    for k in range(len(bounds) - 1):
        seg = range(bounds[k] + 1, bounds[k + 1])
        configs, pc, slices = _weight_configs(net, seg, dtype, device)
        last = bounds[k + 1] == len(net.steps)
        if last:
            out = _apply_segment(net, seg, h_in, configs, slices, dtype)      # (C', R, o)
            out = out.expand(configs.shape[0], *out.shape[1:])
            C, R, o = out.shape
            if P is None:  # no activation layer: R == B
                _check_table(C * B * o, "the output")
                loss = check_per_example_loss(loss_fn(out.reshape(C * B, o), y.repeat(C, *([1] * (y.dim() - 1)))),
                                              C * B).view(C, B)
                return loss[0] if pc is None else (pc[:, None] * loss).sum(0)
            _check_table(C * B * R * o, "the output")
            out_all = out[:, None, :, :].expand(C, B, R, o).reshape(C * B * R, o)
            b_idx = torch.arange(B, device=y.device).repeat_interleave(R).repeat(C)
            loss = check_per_example_loss(loss_fn(out_all, y[b_idx]), C * B * R).view(C, B, R)
            lbar = loss[0] if pc is None else (pc[:, None, None] * loss).sum(0)  # (B, S)
            return (P * lbar).sum(1)
        act = net.nodes[net.steps[bounds[k + 1]].node]  # type: ignore[index]
        R = h_in.shape[0]
        _check_table(configs.shape[0] * R * 2 ** act.size * act.size, f"activation layer {act.name!r}")
        a = _apply_segment(net, seg, h_in, configs, slices, dtype)            # (C', R, n)
        T = state_probs(act.noise.prob_plus(a, act.scale))                     # (C', R, 2^n)
        T = T[0] if pc is None else (pc[:, None, None] * T).sum(0)            # (R, 2^n)
        P = T if P is None else P @ T
        h_in = state_table(act.size, dtype, device)
    raise AssertionError("unreachable")  # pragma: no cover


def exact_expected_loss(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                        max_units: int = DEFAULT_MAX_UNITS, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The exact expected loss :math:`\frac1B\sum_b \mathbb{E}[\ell(f(x_b), y_b)]` of a stochastic binary network.

    Args:
        model: an ``nn.Sequential`` of ``nn.Linear``, :class:`stbin.nn.StochasticSign`
            (any noise and scale) and, for tiny nets, :class:`stbin.nn.BinaryLinear` with
            Bernoulli weights (see :mod:`stbin.analysis._network`). Every stochastic unit and
            weight is treated as random, whatever ``model.training`` says.
        loss_fn: ``loss_fn(output, target)`` returning per-example losses of shape (N,).
        x: inputs (batch, features); y: targets with ``batch`` rows.
        max_units: refuse networks with more binary variables (units + Bernoulli weights).
        dtype: computation dtype (default float64).

    Returns:
        a scalar tensor, differentiable with respect to the model's parameters.

    Raises:
        ValueError: unsupported layer, mismatched shapes, too many binary units, or a
        ``loss_fn`` that does not return per-example losses.
    """
    return exact_per_example_loss(model, loss_fn, x, y, max_units=max_units, dtype=dtype).mean()


def exact_gradients(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                    max_units: int = DEFAULT_MAX_UNITS, dtype: torch.dtype = torch.float64
                    ) -> dict[str, torch.Tensor]:
    r"""The true gradient :math:`\nabla_\theta \frac1B\sum_b\mathbb{E}[\ell_b]` by autograd of :func:`exact_expected_loss`.

    Returns a dict keyed like ``model.named_parameters()`` (parameters with
    ``requires_grad``), each gradient with its parameter's shape and dtype. The model's
    ``.grad`` fields are not touched.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    loss = exact_expected_loss(model, loss_fn, x, y, max_units=max_units, dtype=dtype)
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {n: (torch.zeros_like(p) if g is None else g) for (n, p), g in zip(named, grads)}
