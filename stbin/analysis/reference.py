r"""Unbiased reference gradients for real stochastic binary networks: local expectations and DisARM.

The true gradient :math:`g = \nabla_\theta \frac1B\sum_b\mathbb{E}[\ell_b]` of a network too
large to enumerate (:mod:`stbin.analysis.exact`) is estimated without bias, one joint sample
at a time, on the chains of :mod:`stbin.analysis.chain`.

**Local expectations** (Titsias & Lázaro-Gredilla, NeurIPS 2015). Sample every binary
variable (uniforms :math:`u`, unit :math:`x_j = +1` iff :math:`u_j < F(a_j/s)`). For a
stochastic unit :math:`j` with pre-activation :math:`a_j`, with all other variables sampled,

.. math::
   \frac{\partial}{\partial a_j}\mathbb{E}[f] = \mathbb{E}\Big[\tfrac1s F'(a_j/s)\,
   \big(f(x_j{=}{+}1) - f(x_j{=}{-}1)\big)\Big],

where both values of :math:`f` run the downstream network with the *same* uniforms
(common random numbers): given the upstream states, each is an unbiased single-sample
value of the conditional expectation :math:`\mathbb{E}[f \mid x_j = \pm1, \dots]`. One of the
two is the main sample's loss, so each unit costs one extra downstream evaluation; they
are batched: all units of a layer (in chunks) become rows of one tensor, and when the next
layer is linear the flipped rows are formed as a rank-one update of its output. On chains of
linear layers, per-feature maps and stochastic layers (MLPs) the flips are propagated sparsely
instead (:mod:`stbin.analysis._flips`: through binary weights only the few units whose threshold
is within reach can flip, and the next layer's flip-noise term below is one matrix product). For a
**Bernoulli weight** :math:`w = \operatorname{sign}(\theta - s_w z)`,
:math:`\partial_\theta\mathbb{E}[f] = \mathbb{E}[\tfrac1{s_w}F_w'(\theta/s_w)(f(w{=}{+}1) - f(w{=}{-}1))]`.
When the weight's layer is linear and followed (through per-feature maps such as batch
norm) by a stochastic layer, a weight :math:`w_{ij}` reaches example :math:`b`'s loss only
through unit :math:`i`; integrating out that unit's noise,

.. math::
   f_b(w_{ij}{=}{+}1) - f_b(w_{ij}{=}{-}1) \;\to\; \big(F(a^{+}_{bi}/s) - F(a^{-}_{bi}/s)\big)\,
   \big(f_b(x_i{=}{+}1) - f_b(x_i{=}{-}1)\big),

with :math:`a^\pm_{bi}` the unit's pre-activation for either weight value — unbiased, lower variance
and free (the unit differences are already computed). Other weights (convolutions, a last binary
layer) flip each weight and rerun the downstream network, batched with ``torch.func.vmap``. The parameter gradient is that of the surrogate
:math:`\frac1B\sum_b \ell_b + \sum_k\langle a_k, \hat g_{a_k}\rangle + \sum_w\langle\theta, \hat g_\theta\rangle`
with every binary state held fixed.

**Removing the next layer's flip noise.** Under common random numbers, flipping unit :math:`j`
moves the next stochastic layer's pre-activations from :math:`a` to :math:`a'` and flips the
units :math:`u` whose threshold lies in between — a few Bernoulli events with small
probabilities and large effects, the main variance of :math:`f(x_j{=}{+}1) - f(x_j{=}{-}1)`.
With that layer's own differences :math:`D_u = f(x_u{=}{+}1) - f(x_u{=}{-}1)` (computed first:
layers are processed from the last to the first), the term

.. math::
   \sum_u \Big[ig(F(a_u/s) - F(a'_u/s)ig) - 	frac12ig(x_u - x'_uig)\Big] D_u

has mean zero — given everything but unit :math:`u`'s noise, :math:`\mathbb{E}[(x_u - x'_u)/2]
= F(a_u/s) - F(a'_u/s)`, and neither :math:`D_u` (both states of :math:`u` are evaluated) nor
:math:`a, a'` depend on that noise — so adding it keeps the estimate unbiased, while it cancels
the flip events to first order (what remains are interactions of several flips). It is added at
every later stochastic layer of a flipped row (``RAO_BLACKWELL``). On the sbn_mnist network it cuts
the relative standard error of the first two hidden layers' latent-weight gradients 8- and 12-fold
(docs/estimator-lab.md).

**DisARM** (Dong, Mnih & Tucker, NeurIPS 2020), layer by layer as in
:mod:`stbin.analysis.gradient_estimators.score`: one antithetic downstream run per node;
unbiased and independent of the local-expectation computation, a second reference.

>>> import torch
>>> from torch import nn
>>> from stbin.nn import StochasticSign
>>> net = nn.Sequential(nn.Linear(3, 4), StochasticSign(), nn.Linear(4, 2))
>>> loss = lambda o, t: nn.functional.cross_entropy(o, t, reduction="none")
>>> g = reference_sample(net, loss, torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1]),
...                      "local_expectation", torch.Generator().manual_seed(0))
>>> sorted(g)
['0.bias', '0.weight', '2.bias', '2.weight']
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from stbin.analysis import _flips
from stbin.analysis._flips import PER_FEATURE as _PER_FEATURE, per_feature_affine as _per_feature_affine
from stbin.analysis._network import check_per_example_loss, surrogate_gradients
from stbin.analysis.chain import Chain, analysis_mode, binary_forward, disarm_term, flipped_weight_differences
from stbin.analysis.graph import HookedModel, graph_reference, read_model
from stbin.nn import BinaryLinear

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
REFERENCES = ("local_expectation", "disarm")
#: rows x features of one batched downstream evaluation (memory bound, about 64 MB in float32)
ROW_BUDGET = 1 << 24
#: remove the next layer's flip noise from the unit differences (module docstring); False: plain common random numbers
RAO_BLACKWELL = True
#: chains of linear layers, per-feature maps and stochastic layers run on propagated sparse flips
#: (:mod:`stbin.analysis._flips`); False: the row-by-row evaluation below
SPARSE_FLIPS = True


class _Sample:
    """The main joint sample: uniforms, noise thresholds, states and pre-activations of every node.

    A unit is +1 iff its pre-activation exceeds its threshold :math:`\tau = s F^{-1}(u)`
    (equivalent to :math:`u < F(a/s)`), so reruns with common random numbers only compare.
    """

    def __init__(self, chain: Chain, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
                 generator: torch.Generator | None) -> None:
        self.chain, self.y, self.loss_fn = chain, y, loss_fn
        self.u: dict[int, torch.Tensor] = {}
        self.tau: dict[int, torch.Tensor] = {}
        self.state: dict[int, torch.Tensor] = {}
        self.pre: dict[int, torch.Tensor] = {}
        self.inputs: dict[int, torch.Tensor] = {}

        def nv(i: int, pre: torch.Tensor) -> torch.Tensor:
            nd = chain.nodes[i]
            u = torch.rand(pre.shape, generator=generator, dtype=pre.dtype, device=pre.device)
            tau = nd.scale * nd.noise.mean_inverse(2 * u - 1)
            s = (pre.detach() > tau).to(pre.dtype) * 2 - 1
            self.u[i], self.tau[i], self.state[i], self.pre[i] = u, tau, s, pre
            return s

        self.out = chain.run(x, nv, record=self.inputs)
        self.L = self.losses(self.out, torch.arange(x.shape[0], device=x.device))
        self.B = x.shape[0]
        self._rb: dict[int, torch.Tensor] = {}

    def losses(self, out: torch.Tensor, ex: torch.Tensor) -> torch.Tensor:
        return check_per_example_loss(self.loss_fn(out, self.y[ex]), out.shape[0])

    def downstream(self, h: torch.Tensor, start: int, c: int, override: dict[int, torch.Tensor] | None = None,
                   later: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Per-row losses of the network run from step ``start`` on rows ``h``: ``c`` rows per example,
        example-major (row ``b * c + t`` belongs to example ``b``), every later node with the main
        sample's uniforms (weights: its states).

        Per-example tensors broadcast over the ``c`` rows (no gathers). A linear layer whose input
        differs from the main sample's in few entries (flipping one unit changes few units downstream
        under common random numbers) is applied as the main sample's output plus a sparse product
        with the difference. At every unit layer whose differences ``later[j]`` are known, the
        zero-mean control variate of the module docstring is subtracted (``RAO_BLACKWELL``)."""
        chain, B = self.chain, self.B
        R = h.shape[0]

        def blocks(t: torch.Tensor) -> torch.Tensor:  # rows (B * c, ...) -> (B, c, features)
            return t.reshape(B, c, -1)

        def per_ex(t: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (B, 1, features)
            return t.detach().reshape(B, 1, -1)

        cv = torch.zeros(B, c, dtype=h.dtype, device=h.device)
        with torch.no_grad():
            for k in range(start, len(chain.steps)):
                st = chain.steps[k]
                if st.kind == "act":
                    j = st.node
                    if override is not None and j in override:
                        h = override[j]
                        continue
                    shape = h.shape
                    pre = blocks(h)
                    x = torch.where(pre > per_ex(self.tau[j]), 1.0, -1.0).to(h.dtype)
                    if RAO_BLACKWELL and later is not None and j in later:
                        nd = chain.nodes[j]
                        # sum_u [(P_u - x_u / 2) at the sample - (P'_u - x'_u / 2) in the row] D_u
                        delta = nd.noise.prob_plus(pre, nd.scale).sub_(x, alpha=0.5)          # (B, c, n)
                        D = later[j].detach().reshape(B, -1, 1)                               # (B, n, 1)
                        cv += (self._rb_base(j)[:, None, :] @ D)[:, :, 0] - (delta @ D)[:, :, 0]
                    h = x.reshape(shape)
                    continue
                weff = self._linear_weight(st, override)
                if weff is not None and h.dim() == 2:
                    diff = (blocks(h) - per_ex(self.inputs[k])).reshape(R, -1)
                    nz = diff.nonzero(as_tuple=True)
                    if nz[0].numel() < 0.05 * diff.numel():
                        base = self.inputs[k + 1] if k + 1 < len(chain.steps) else self.out
                        sp = torch.sparse_coo_tensor(torch.stack(nz), diff[nz], diff.shape, check_invariants=False,
                                                     is_coalesced=True)  # nonzero() indices are sorted
                        h = (blocks(torch.sparse.mm(sp, weff.T)) + per_ex(base)).reshape(R, -1)
                        continue
                if st.kind == "binary":
                    w = override[st.node] if override is not None and st.node in override else self.state[st.node]
                    h = binary_forward(st.module, h, w)
                else:
                    h = st.module(h)
            ex = torch.arange(B, device=h.device).repeat_interleave(c)
            return self.losses(h, ex) - cv.reshape(-1)

    def _rb_base(self, j: int) -> torch.Tensor:
        """:math:`P(x_u{=}{+}1) - x_u/2` at the main sample for every unit u of act node j: (B, n), cached."""
        if j not in self._rb:
            nd = self.chain.nodes[j]
            p = nd.noise.prob_plus(self.pre[j].detach(), nd.scale) - self.state[j] / 2
            self._rb[j] = p.reshape(self.B, -1)
        return self._rb[j]

    def _linear_weight(self, st, override: dict[int, torch.Tensor] | None) -> torch.Tensor | None:
        """The effective weight matrix of a linear step with the main sample's weights, else None."""
        m = st.module
        if st.kind == "det" and isinstance(m, nn.Linear):
            return m.weight.detach()
        if st.kind == "binary" and isinstance(m, BinaryLinear) and not (override is not None and st.node in override):
            w = self.state[st.node]
            return w if m.learned_channel_scale is None else w * m.learned_channel_scale.detach()[:, None]
        return None


def _width(chain: Chain, s: _Sample, start: int) -> int:
    """Largest per-example feature count from step ``start`` on (sizes the chunks)."""
    w = 1
    for k in range(start, len(chain.steps)):
        w = max(w, s.inputs[k][0].numel())
    return max(w, s.out[0].numel())


def _linear_then_act(chain: Chain, k: int) -> tuple[int, int] | None:
    """(step of the linear layer, act node) when step k+1 is linear and per-feature maps lead to an act node."""
    if k + 1 >= len(chain.steps):
        return None
    nxt = chain.steps[k + 1]
    if not (isinstance(nxt.module, nn.Linear) or (nxt.kind == "binary" and isinstance(nxt.module, BinaryLinear))):
        return None
    for q in range(k + 2, len(chain.steps)):
        st = chain.steps[q]
        if st.kind == "act":
            return k + 1, st.node  # type: ignore[return-value]
        if st.kind != "det" or not isinstance(st.module, _PER_FEATURE):
            return None
    return None


def _unit_differences(s: _Sample, i: int, later: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    r""":math:`f_b(x_j{=}{+}1) - f_b(x_j{=}{-}1)` for every example b and unit j of act node i: (B, n).

    When a linear layer and per-feature maps lead to the next stochastic layer, flipping unit j
    moves that layer's pre-activations by a rank-one update; its new states are read off the
    thresholds and the rest of the network runs on the few changed units (sparse products), and when
    the next layer's differences ``later[i2]`` are known (``RAO_BLACKWELL``) the flip noise of the next
    layer is removed by the zero-mean control variate of the module docstring."""
    chain, nd = s.chain, s.chain.nodes[i]
    k = nd.step
    st = s.state[i]
    segs = _flips.segments(s, i) if SPARSE_FLIPS else None
    if segs is not None:
        return _flips.unit_differences(s, i, segs, later, RAO_BLACKWELL)
    B = st.shape[0]
    flat = st.reshape(B, -1)
    n = flat.shape[1]
    fast = _linear_then_act(chain, k) if st.dim() == 2 else None
    per_row = max(_width(chain, s, k + 1), n)
    nc = max(1, min(n, ROW_BUDGET // max(1, B * per_row)))
    out = torch.empty(B, n, dtype=flat.dtype, device=flat.device)
    L = s.L.detach()
    with torch.no_grad():
        if fast is not None:
            kl, i2 = fast
            weff = s._linear_weight(chain.steps[kl], None)
            nd2 = chain.nodes[i2]
            aff = _per_feature_affine(chain, kl + 1, nd2.step, weff.shape[0], flat)  # type: ignore[union-attr]
            A = (aff[0][:, None] * weff).T                                  # type: ignore[index]  (n, m)
            pre2 = s.pre[i2].detach()
        for j0 in range(0, n, nc):
            j = torch.arange(j0, min(n, j0 + nc), device=flat.device)
            c = j.numel()
            if fast is not None:
                rows = torch.addcmul(pre2[:, None, :], (-2 * flat[:, j])[:, :, None], A[j][None])
                lf = s.downstream(rows.reshape(B * c, -1), nd2.step, c, later=later)
            else:
                rows = flat[:, None, :].repeat(1, c, 1)
                rows[:, torch.arange(c), j] *= -1
                lf = s.downstream(rows.reshape(B * c, *st.shape[1:]), k + 1, c, later=later)
            out[:, j0:j0 + c] = flat[:, j] * (L[:, None] - lf.view(B, c))
    return out


def _weight_differences(s: _Sample, i: int, unit_diff: dict[int, torch.Tensor]) -> torch.Tensor:
    r""":math:`\frac1B\sum_b f_b(w_e{=}{+}1) - f_b(w_e{=}{-}1)` for every weight e of weight node i."""
    chain = s.chain
    nd = chain.nodes[i]
    k = nd.step
    m = chain.steps[k].module
    w = s.state[i]
    h = s.inputs[k].detach()
    B = s.B
    fast = _linear_then_act(chain, k - 1) if isinstance(m, BinaryLinear) else None
    with torch.no_grad():
        if fast is not None:  # the unit's noise integrated out (module docstring)
            i2 = fast[1]
            tn = chain.nodes[i2]
            c = torch.ones(w.shape[0], dtype=w.dtype, device=w.device) if m.learned_channel_scale is None else m.learned_channel_scale
            scale, _ = _per_feature_affine(chain, k + 1, tn.step, w.shape[0], w)  # type: ignore[misc]
            kappa = 2 * scale * c                                            # (out,)
            pre2 = s.pre[i2].detach()                                        # (B, out)
            D = unit_diff[i2]                                                # (B, out)
            P0 = tn.noise.prob_plus(pre2, tn.scale)
            if bool((h.abs() == 1).all()):  # binary inputs: two shifted values per unit, one matmul
                Pp = tn.noise.prob_plus(pre2 - kappa, tn.scale)               # w_ij h_bj = +1
                Pm = tn.noise.prob_plus(pre2 + kappa, tn.scale)               # w_ij h_bj = -1
                sumP = 0.5 * ((Pp + Pm) * D).sum(0)[:, None] + 0.5 * w * (((Pp - Pm) * D).T @ h)
            else:
                sumP = _flips.shifted_prob_sums(tn, pre2, kappa, w, h, D, ROW_BUDGET)
            return w * ((P0 * D).sum(0)[:, None] - sumP) / B
        ec = max(1, min(w.numel(), ROW_BUDGET // max(1, B * _width(chain, s, k + 1))))
        return flipped_weight_differences(m, h, w, binary_forward(m, h, w), ec, s.L.detach().mean(),
                                          lambda rows, n: s.downstream(rows, k + 1, n, later=unit_diff))


def _disarm_terms(s: _Sample, i: int) -> torch.Tensor:
    """DisARM's estimate of the gradient with respect to node i's pre-activation (or latent weight)."""
    chain = s.chain
    nd = chain.nodes[i]
    with torch.no_grad():
        return disarm_term(nd, s.pre[i].detach(), s.u[i], s.state[i], s.L.detach(), s.B,
                           lambda xt: s.downstream(s.inputs[nd.step].detach(), nd.step, 1, override={i: xt}))


def reference_sample(model: nn.Module | Chain | HookedModel, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                     reference: str = "local_expectation", generator: torch.Generator | None = None
                     ) -> dict[str, torch.Tensor]:
    """One unbiased estimate of the true gradient of the batch-mean expected loss.

    Args:
        model: any ``nn.Module`` of stbin modules (an ``nn.Sequential`` runs on the fast paths of
            :mod:`stbin.analysis.chain`, other forward code through :mod:`stbin.analysis.graph`),
            or a parsed :class:`~stbin.analysis.chain.Chain` / :class:`~stbin.analysis.graph.HookedModel`;
            batch norm runs on its running statistics; the model and its ``.grad`` are left as they were.
        loss_fn: ``loss_fn(output, target)`` returning per-example losses (shape (B,)).
        x, y: the batch.
        reference: ``"local_expectation"`` or ``"disarm"`` (module docstring).
        generator: ``torch.Generator`` for the joint sample.

    Returns:
        the estimate, keyed like ``model.named_parameters()`` (parameters with ``requires_grad``).
    """
    return reference_with_states(model, loss_fn, x, y, reference, generator)[0]


def reference_with_states(model: nn.Module | Chain | HookedModel, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                          reference: str = "local_expectation", generator: torch.Generator | None = None
                          ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """:func:`reference_sample` and the joint sample it was computed on: one ±1 tensor per
    stochastic node (the pre-activation's shape for units, the latent weight's for weights), for
    estimators evaluated on the same sample (:mod:`stbin.analysis.control_variates`)."""
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; valid: {', '.join(REFERENCES)}")
    chain = read_model(model, x)
    if isinstance(chain, HookedModel):
        return graph_reference(chain, loss_fn, x, y, reference, generator, RAO_BLACKWELL, ROW_BUDGET)
    params = chain.params()
    with analysis_mode(chain.model):
        s = _Sample(chain, x, y, loss_fn, generator)
        return surrogate_gradients(s, chain.nodes, params, reference, _disarm_terms,
                                   lambda i, diffs: _unit_differences(s, i, diffs),
                                   lambda i, diffs: _weight_differences(s, i, diffs))
