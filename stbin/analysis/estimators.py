r"""Single-sample gradient estimators of stochastic binary networks, vectorised over samples.

Every estimator here gives, from one joint sample of the network's binary variables (units
and Bernoulli weights), an estimate :math:`\hat g` of the true gradient
:math:`g = \nabla_\theta \frac1B\sum_b \mathbb{E}[\ell_b]` computed exactly by
:mod:`stbin.analysis.exact`. Notation: a stochastic node has pre-activation :math:`a`
(the latent weight :math:`\theta` for a Bernoulli weight), noise CDF :math:`F`, scale
:math:`s`, :math:`p = F(a/s) = P(x=+1)`, :math:`p' = F'(a/s)/s`, and a uniform variate
:math:`u`, :math:`x = +1` iff :math:`u < p` (the convention of
:func:`stbin.estimators.stochastic_sign`). One estimate uses one joint sample for the
whole batch: each example has its own unit states, the Bernoulli weights are one sample
shared by the batch (as in training).

=====================  =================================================================================
method                 single-sample estimate
=====================  =================================================================================
``st``                 the library's principled ST (:func:`stbin.estimators.stochastic_sign`, ``sample``
                       mode, the model's own noise and scale): forward the sample, backward
                       :math:`\frac2sF'(a/s)`; Bernoulli weights use the same function on :math:`\theta`
                       (:math:`w=\operatorname{sign}(\theta-s_wz)` *is* a stochastic sign of :math:`\theta`)
``det_htanh``          deterministic ST at the mode: forward :math:`\operatorname{sign}(a)`, backward
``det_tanh``           the proxy of :func:`stbin.estimators.sign` (``htanh``: :math:`1[|a|\le1]`,
``det_identity``       ``tanh``: :math:`1-\tanh^2 a`, ``identity``: 1); zero variance, biased
``reinforce``          score function: :math:`\hat g = \ell\,\nabla\log p(\text{sample}) + \nabla_{\text{direct}}\ell`
``reinforce_baseline`` the same with :math:`\ell_b - c_b`, :math:`c_b` = the loss of the *mean-field*
                       forward pass (every unit outputs :math:`2F(a/s)-1` of its mean input; weights
                       their mean). :math:`c_b` does not depend on the sample, so the estimate stays
                       unbiased; it costs one deterministic pass per call.
``arm``                ARM (Yin & Zhou 2019) applied layer by layer (see below)
``disarm``             DisARM (Dong, Mnih & Tucker 2020), same layer-wise scheme
``concrete:T``         binary Concrete relaxation at temperature T (default 1): every binary variable
                       becomes :math:`\tanh((a/s - z)/(2T))` with the node's own noise :math:`z`
                       (for logistic noise this is exactly the binary Concrete / Gumbel-softmax);
                       the gradient is the pathwise derivative of the relaxed network's loss
``st_concrete:T``      straight-through Concrete: forward the hard sample
                       :math:`\operatorname{sign}(a/s-z)`, backward the relaxed one's derivative
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
plus one downstream pass per stochastic node. (This is the multi-layer ARM of Yin & Zhou,
Sec. 2.3, with a single downstream sample per branch.)

**Vectorisation.** ``n_samples`` estimates are computed in chunks: every sample gets its own
copy of the parameters (a (K, ...) leaf tensor), the network runs once on (K, batch, ...)
activations with batched matrix products, and the gradient of the sum of the K
surrogate losses with respect to the copies is the K per-sample estimates. Seeded runs
repeat exactly for a given ``chunk_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stbin._registry import Registry
from stbin.analysis._network import (Network, Node, check_per_example_loss, param_dtype, parse_network,
                                     prepare_inputs, state_table)
from stbin.analysis.exact import check_unit_limit
from stbin.estimators import sign, stochastic_sign

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MethodInfo:
    """A registered estimator: ``random`` (False: one deterministic estimate), ``temperature``
    (accepts ``name:T``), ``enumerable`` (a function of the discrete sample only, so
    :func:`expected_estimate` can average it exactly)."""

    name: str
    description: str
    random: bool = True
    temperature: bool = False
    enumerable: bool = False


METHODS: Registry[MethodInfo] = Registry("gradient estimator")
for _m in (
    MethodInfo("st", "principled straight-through with the model's noise (stbin.estimators.stochastic_sign)",
               enumerable=True),
    MethodInfo("det_htanh", "deterministic ST at the mode, htanh backward 1[|a|<=1]", random=False,
               enumerable=True),
    MethodInfo("det_tanh", "deterministic ST at the mode, tanh backward 1-tanh^2(a)", random=False,
               enumerable=True),
    MethodInfo("det_identity", "deterministic ST at the mode, identity backward", random=False, enumerable=True),
    MethodInfo("reinforce", "score function (REINFORCE), no baseline", enumerable=True),
    MethodInfo("reinforce_baseline", "score function with the mean-field forward pass's loss as per-example "
               "baseline (independent of the sample: unbiased)",
               enumerable=True),
    MethodInfo("arm", "augment-REINFORCE-merge, layer by layer, one downstream sample per branch with common "
               "random numbers"),
    MethodInfo("disarm", "DisARM, layer by layer, as ARM"),
    MethodInfo("concrete", "binary Concrete relaxation at temperature T: pathwise gradient of "
               "the relaxed network", temperature=True),
    MethodInfo("st_concrete", "straight-through Concrete at temperature T: hard forward, "
               "relaxed backward", temperature=True),
):
    METHODS.register(_m.name, _m)


def parse_method(method: str) -> tuple[MethodInfo, float | None]:
    """``"concrete:0.1"`` -> (info of ``concrete``, 0.1); temperature defaults to 1."""
    if not isinstance(method, str):
        raise ValueError(f"method must be a string such as 'st' or 'concrete:0.1', got {method!r}")
    name, _, arg = method.partition(":")
    info = METHODS.get(name)
    if not info.temperature:
        if arg:
            raise ValueError(f"estimator {name!r} takes no parameter, got {method!r}")
        return info, None
    try:
        t = float(arg) if arg else 1.0
    except ValueError:
        raise ValueError(f"bad temperature in {method!r}: expected e.g. '{name}:0.5'") from None
    if not t > 0 or t == float("inf"):
        raise ValueError(f"temperature must be positive and finite, got {method!r}")
    return info, t


# ------------------------------------------------------------------------------------------
# The interpreter: runs the parsed network on (K, B, ...) with per-sample parameter copies.
# ------------------------------------------------------------------------------------------

NodeFn = Callable[[int, torch.Tensor], torch.Tensor]


class _Params:
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


def _run(net: Network, params: _Params, h: torch.Tensor, start: int, node_fn: NodeFn,
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


def _losses(loss_fn: LossFn, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example losses (K, B) of outputs (K, B, o)."""
    K, B = out.shape[:2]
    yk = y.repeat(K, *([1] * (y.dim() - 1)))
    return check_per_example_loss(loss_fn(out.reshape(K * B, *out.shape[2:]), yk), K * B).view(K, B)


def _plus_minus(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return mask.to(dtype) * 2 - 1


def _log_prob(node: Node, pre: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log P(x | pre) elementwise, differentiable in ``pre`` (symmetric noise: P(x) = F(x pre / s)).

    Clamped at the smallest normal number, so that an impossible state (saturated uniform
    noise, only ever *forced* by :func:`expected_estimate`) gives a finite value and no gradient.
    """
    t = x * pre / node.scale
    if node.noise.name == "logistic":
        return F.logsigmoid(t)
    return torch.log(node.noise.cdf(t).clamp_min(torch.finfo(t.dtype).tiny))


def _logit_slope(node: Node, t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    r""":math:`d\,\mathrm{logit}(p)/da = p'/(p(1-p))`, 0 where p is 0 or 1."""
    if node.noise.name == "logistic":
        return torch.full_like(p, 1.0 / node.scale)
    v = p * (1 - p)
    dens = node.noise.pdf(t) / node.scale
    return torch.where(v > 0, dens / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))


def _mean_field_losses(net: Network, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                       dtype: torch.dtype) -> torch.Tensor:
    """Per-example losses (B,) of the mean-field pass (each node outputs 2F(pre/s)-1); no gradient."""
    with torch.no_grad():
        params = _Params(model, 1, dtype, per_sample=False)

        def node_fn(i: int, pre: torch.Tensor) -> torch.Tensor:
            nd = net.nodes[i]
            return nd.noise.mean(pre / nd.scale)

        out = _run(net, params, x.unsqueeze(0), 0, node_fn)
        return _losses(loss_fn, out, y)[0]


def _rand(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)


_Cache = dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


def _antithetic_terms(net: Network, params: _Params, loss_fn: LossFn, y: torch.Tensor, disarm: bool,
                      cache: _Cache, inputs: dict[int, torch.Tensor], L: torch.Tensor) -> torch.Tensor:
    r"""ARM / DisARM surrogate :math:`\sum_k \langle a_k, \hat g_{a_k}\rangle` (see the module docstring).

    ``cache[k] = (pre, u, p, x)`` of node k from the main pass, ``inputs[step]`` the input
    of each node's step, ``L`` (K, B) the main losses. For every node the downstream network
    is re-run from the antithetic state with the main pass's uniforms (common random numbers).
    """
    B = L.shape[1]
    total = torch.zeros((), dtype=L.dtype, device=L.device)
    for i, (pre, u, p, x_) in cache.items():
        nd = net.nodes[i]
        with torch.no_grad():
            xt = _plus_minus(u > 1 - p, pre.dtype)

            def rerun(j: int, pre_j: torch.Tensor, i: int = i, xt: torch.Tensor = xt) -> torch.Tensor:
                if j == i:
                    return xt
                nj = net.nodes[j]
                return _plus_minus(cache[j][1] < nj.noise.prob_plus(pre_j, nj.scale), pre_j.dtype)

            Lt = _losses(loss_fn, _run(net, params, inputs[nd.step].detach(), nd.step, rerun), y)
            if nd.kind == "act":          # per example, for the batch mean
                d = ((Lt - L) / B).unsqueeze(-1)
            else:                         # weights are shared: the batch-mean loss
                d = (Lt - L).mean(1).view(-1, *([1] * (pre.dim() - 1)))
            t = pre.detach() / nd.scale
            if not disarm:
                g = d * (u - 0.5) * _logit_slope(nd, t, p)
            else:
                mn = torch.minimum(p, 1 - p)
                ok = (x_ != xt) & (mn > 0)
                slope = torch.where(ok, (nd.noise.pdf(t) / nd.scale) / torch.where(ok, mn, torch.ones_like(mn)),
                                    torch.zeros_like(mn))
                g = -0.5 * d * x_ * slope
        total = total + (pre * g).sum()
    return total


def _surrogate(net: Network, params: _Params, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
               info: MethodInfo, temperature: float | None, generator: torch.Generator | None,
               baseline: torch.Tensor | None, forced: list[torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Build the sum over the K samples of the method's surrogate loss.

    Its gradient with respect to per-sample parameter copies is the K estimates. With
    ``forced`` (one ±1 tensor per node, broadcastable to the node's shape), the discrete
    samples are those states instead of random ones, and the second return value is the
    (K, B) joint probability of the forced states (for :func:`expected_estimate`).
    """
    K = params.K
    h0 = x.unsqueeze(0).expand(K, *x.shape)
    name = info.name
    logq: list[torch.Tensor] = []  # (K, B) per act node, (K, 1) per weight node
    probs: list[torch.Tensor] = []  # forced states only: their probabilities, same shapes
    cache: _Cache = {}

    def draw(i: int, pre: torch.Tensor) -> torch.Tensor:
        nd = net.nodes[i]
        if forced is not None:
            x_ = forced[i].expand_as(pre).to(pre.dtype)
        else:
            p = nd.noise.prob_plus(pre.detach(), nd.scale)
            x_ = _plus_minus(_rand(pre.shape, pre, generator) < p, pre.dtype)
        lq = _log_prob(nd, pre, x_)
        logq.append(lq.flatten(2).sum(2) if nd.kind == "act" else lq.flatten(1).sum(1, keepdim=True))
        if forced is not None:
            q = nd.noise.cdf(x_ * pre.detach() / nd.scale)
            probs.append(q.flatten(2).prod(2) if nd.kind == "act" else q.flatten(1).prod(1, keepdim=True))
        return x_

    if name == "st":
        def node_fn(i: int, pre: torch.Tensor) -> torch.Tensor:
            nd = net.nodes[i]
            if forced is None:
                return stochastic_sign(pre, nd.noise, nd.scale, "sample", generator)
            m = stochastic_sign(pre, nd.noise, nd.scale, "mean")  # forward E[x], backward the ST factor
            return draw(i, pre) + (m - m.detach())
    elif name.startswith("det_"):
        proxy = name[4:]

        def node_fn(i: int, pre: torch.Tensor) -> torch.Tensor:
            if forced is not None:
                draw(i, pre)  # only for the probability weights
            return sign(pre, proxy)
    elif name in ("reinforce", "reinforce_baseline"):
        def node_fn(i: int, pre: torch.Tensor) -> torch.Tensor:
            return draw(i, pre)
    elif name in ("concrete", "st_concrete"):
        assert temperature is not None

        def node_fn(i: int, pre: torch.Tensor) -> torch.Tensor:
            nd = net.nodes[i]
            z = nd.noise.sample_z(pre.shape, generator=generator, dtype=pre.dtype, device=pre.device)
            d = pre / nd.scale - z
            soft = torch.tanh(d / (2 * temperature))
            if name == "concrete":
                return soft
            return _plus_minus(d.detach() >= 0, pre.dtype) + (soft - soft.detach())
    elif name in ("arm", "disarm"):
        def node_fn(i: int, pre: torch.Tensor) -> torch.Tensor:
            nd = net.nodes[i]
            p = nd.noise.prob_plus(pre.detach(), nd.scale)
            u = _rand(pre.shape, pre, generator)
            x_ = _plus_minus(u < p, pre.dtype)
            cache[i] = (pre, u, p, x_)
            return x_
    else:  # pragma: no cover - registry and branches are kept in sync
        raise AssertionError(name)

    inputs: dict[int, torch.Tensor] = {}
    out = _run(net, params, h0, 0, node_fn, inputs)
    L = _losses(loss_fn, out, y)                                     # (K, B)
    weights = None
    if forced is not None:
        weights = torch.ones_like(L)
        for q in probs:
            weights = weights * q
    if name in ("reinforce", "reinforce_baseline"):
        coef = L.detach() if baseline is None else L.detach() - baseline
        score = sum(logq) if logq else torch.zeros_like(L)
        sur = coef * score + L
    elif name in ("arm", "disarm"):
        return L.mean(1).sum() + _antithetic_terms(net, params, loss_fn, y, name == "disarm", cache, inputs,
                                                   L.detach()), weights
    else:
        sur = L
    if weights is not None:
        return (weights * sur).mean(1).sum(), weights
    return sur.mean(1).sum(), weights


def _setup(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, method: str,
           dtype: torch.dtype | None) -> tuple[Network, MethodInfo, float | None, torch.Tensor, torch.dtype]:
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(output, target) -> per-example losses")
    info, temp = parse_method(method)
    net = parse_network(model, tuple(x.shape))
    dt = dtype if dtype is not None else param_dtype(model)
    return net, info, temp, prepare_inputs(net, x, y, dt), dt


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


def _iter_sample_chunks(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, method: str,
                        n_samples: int, generator: torch.Generator | None, chunk_size: int | None,
                        dtype: torch.dtype | None):
    net, info, temp, xx, dt = _setup(model, loss_fn, x, y, method, dtype)
    _check_n(n_samples)
    baseline = _mean_field_losses(net, model, loss_fn, xx, y, dt) if info.name == "reinforce_baseline" else None
    if not info.random:  # deterministic: one estimate, repeated
        params = _Params(model, 1, dt, per_sample=True)
        sur, _ = _surrogate(net, params, loss_fn, xx, y, info, temp, generator, baseline)
        g = _grads(sur, params)
        for k in _chunks(n_samples, xx.shape[0], chunk_size):
            yield {n: v.expand(k, *v.shape[1:]) for n, v in g.items()}
        return
    for k in _chunks(n_samples, xx.shape[0], chunk_size):
        params = _Params(model, k, dt, per_sample=True)
        sur, _ = _surrogate(net, params, loss_fn, xx, y, info, temp, generator, baseline)
        yield _grads(sur, params)


def _grads(sur: torch.Tensor, params: _Params) -> dict[str, torch.Tensor]:
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
        model, loss_fn, x, y: as in :func:`stbin.analysis.exact_expected_loss` (same
            supported layers; the model itself is not modified and its ``.grad`` is untouched).
        method: one of :data:`METHODS` (``st``, ``det_htanh``, ``det_tanh``, ``det_identity``,
            ``reinforce``, ``reinforce_baseline``, ``arm``, ``disarm``, ``concrete:T``,
            ``st_concrete:T``); see the module docstring.
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

    For estimators that are a function of the discrete sample (``st``, ``det_*``,
    ``reinforce``, ``reinforce_baseline``): :math:`\mathbb{E}[\hat g] = \sum_{h}
    \frac1B\sum_b p_b(h)\,\hat g_b(h)` over every joint state :math:`h` of all units and
    Bernoulli weights (:math:`2^{n}` states, ``max_units`` default 16). Compared with
    :func:`stbin.analysis.exact_gradients` it gives an estimator's bias with no sampling
    error. For ``st`` the forced states pass through the library's ST backward
    (:func:`stbin.estimators.stochastic_sign`).
    """
    net, info, temp, xx, dt = _setup(model, loss_fn, x, y, method, dtype)
    if not info.enumerable:
        raise ValueError(f"expected_estimate supports estimators that are functions of the discrete sample "
                         f"({', '.join(n for n in METHODS.names() if METHODS.get(n).enumerable)}); got {method!r}")
    check_unit_limit(net, max_units)
    n = net.n_units
    table = state_table(n, dt, xx.device)                       # (K, n)
    K = table.shape[0]
    forced, off = [], 0
    for nd in net.nodes:
        cols = table[:, off:off + nd.size]
        off += nd.size
        if nd.kind == "act":
            forced.append(cols.unsqueeze(1))                    # (K, 1, n) broadcast over the batch
        else:
            st = net.steps[nd.step].module
            forced.append(cols.reshape(K, *st.latent_weight.shape))
    baseline = _mean_field_losses(net, model, loss_fn, xx, y, dt) if info.name == "reinforce_baseline" else None
    params = _Params(model, K, dt, per_sample=False)
    sur, _ = _surrogate(net, params, loss_fn, xx, y, info, temp, None, baseline, forced=forced)
    names = list(params.leaves)
    gs = torch.autograd.grad(sur, [params.leaves[k] for k in names], allow_unused=True)
    return {k: (torch.zeros_like(params.leaves[k]) if g is None else g) for k, g in zip(names, gs)}
