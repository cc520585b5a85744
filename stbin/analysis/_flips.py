r"""Two-state evaluations of a whole unit layer by propagating sparse flips (the fast path of
local expectations, :mod:`stbin.analysis.reference`, on MLP-like chains).

From a stochastic layer on, the chain must be *segments*: a linear layer (``nn.Linear``, or a
:class:`~stbin.nn.BinaryLinear` with the joint sample's weights) and per-feature affine maps (batch
norm in evaluation, identity, dropout) leading to the next stochastic layer or to the output. A
change :math:`\Delta x` of a layer's states then moves the segment's target by :math:`\Delta x A`
(``A``: the weight, transposed, times the per-feature scale). Flipping unit :math:`j` of example
:math:`b` is the rank-one change :math:`-2 x_{bj} A_{j\cdot}`; a unit :math:`u` of the next layer
takes the state ``pre + delta > tau`` (its threshold :math:`\tau = s F^{-1}(u)` of the main sample).

**Binary weights** make the next step almost free. With :math:`|A_{ju}| = \kappa_u / 2` for every
:math:`j` (a ±1 weight times per-output scales) the flip moves unit :math:`u`'s pre-activation
by :math:`-\kappa_u z_{bju}`, :math:`z_{bju} = x_{bj}\operatorname{sign}A_{ju}`, so

* unit :math:`u` flips iff it is *fragile* (its threshold lies within :math:`\kappa_u` of its
  pre-activation, on the side :math:`x_{bu}` points to) and :math:`z_{bju} = x_{bu}`: a few units
  per example, gathered into a padded index (no dense pass over examples x flipped units x next
  units);
* the next layer's flip-noise term of :mod:`stbin.analysis.reference` (zero-mean, with the
  next layer's differences :math:`D_u`) has the closed form

  .. math::
     \sum_u \big(F(a_u/s) - F(a'_u/s)\big) D_u - \sum_{u\ \text{flipped}} x_u D_u, \qquad
     \sum_u F(a'_u/s) D_u = \tfrac12\sum_u (P^-_u + P^+_u) D_u + \tfrac12 x_{bj}\sum_u
     \operatorname{sign}A_{ju}\,(P^-_u - P^+_u) D_u,

  :math:`P^\mp_u = F((a_u \mp \kappa_u)/s)`: one matrix product for all flipped units;
* the flipped units move the following segment's target by a batched product over the few
  flipped units of each example.

Later stochastic layers (several flips at once) are evaluated densely on the rows; a last
segment with few outputs is one batched product. The numbers equal those of the row-by-row
evaluation up to rounding (the tests compare both).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: per-feature maps a segment may contain after its linear layer
PER_FEATURE = (nn.BatchNorm1d, nn.Identity, nn.Dropout)
#: a dense stage forms the next segment's change with one batched product up to this many outputs
#: (beyond: a sparse product over the changed units)
DENSE_OUTPUTS = 64
#: rows x features of one chunk of flipped rows (4 MB in float32: tensors this size are reused from the
#: allocator's heap and stay in cache, where large ones cost a page fault per 4 KB)
ROW_BUDGET = 1 << 20


@dataclass
class Segment:
    """``A`` (n, m): a change of the source layer's states moves the target by ``dx @ A``; ``node``: the
    target act node (None: the output); ``kappa`` (m,) and ``sign`` (n, m) when ``|A|`` is constant
    along the source (binary weights): ``A = sign * kappa / 2``."""

    A: torch.Tensor
    node: int | None
    kappa: torch.Tensor | None = None
    sign: torch.Tensor | None = None


def per_feature_affine(chain, k0: int, k1: int, m: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift) of steps k0..k1-1 if all are per-feature affine maps on m features, else None."""
    steps = chain.steps[k0:k1]
    if any(st.kind != "det" or not isinstance(st.module, PER_FEATURE) for st in steps):
        return None
    z, o = torch.zeros(1, m, dtype=like.dtype, device=like.device), torch.ones(1, m, dtype=like.dtype, device=like.device)
    with torch.no_grad():
        for st in steps:
            z, o = st.module(z), st.module(o)
    return (o - z)[0], z[0]


def segments(s, i: int) -> list[Segment] | None:
    """The segments from act node ``i`` of the sample ``s`` to the output, or None if the chain
    from there on is not made of segments (module docstring)."""
    chain = s.chain
    steps = chain.steps
    k = chain.nodes[i].step
    out: list[Segment] = []
    while True:
        node = steps[k].node
        if s.pre[node].dim() != 2 or k + 1 >= len(steps):
            return None
        weff = s._linear_weight(steps[k + 1], None)
        if weff is None or weff.dim() != 2:
            return None
        q = k + 2
        while q < len(steps) and steps[q].kind == "det" and isinstance(steps[q].module, PER_FEATURE):
            q += 1
        if q < len(steps) and steps[q].kind != "act":
            return None
        aff = per_feature_affine(chain, k + 2, q, weff.shape[0], weff)
        A = (aff[0][:, None] * weff.detach()).T  # type: ignore[index]
        absA = A.abs()
        target = steps[q].node if q < len(steps) else None
        if target is not None and bool((absA == absA[:1]).all()):
            seg = Segment(A, target, 2 * absA[0], torch.where(A >= 0, 1.0, -1.0).to(A.dtype))
        else:
            seg = Segment(A, target)
        out.append(seg)
        if target is None:
            return out
        k = q


def _prob(nd, a: torch.Tensor) -> torch.Tensor:
    """P(x = +1 | a) (no division for unit scale)."""
    return nd.noise.cdf(a) if nd.scale == 1.0 else nd.noise.prob_plus(a, nd.scale)


def unit_differences(s, i: int, segs: list[Segment], later: dict[int, torch.Tensor] | None, rb: bool
                     ) -> torch.Tensor:
    r""":math:`f_b(x_j{=}{+}1) - f_b(x_j{=}{-}1)` for every example b and unit j of act node i: (B, n); ``later``:
    the differences of the later act nodes, for their flip-noise terms (``rb``)."""
    B = s.B
    flat = s.state[i].reshape(B, -1)
    n = flat.shape[1]
    out = torch.empty(B, n, dtype=flat.dtype, device=flat.device)
    L = s.L.detach()
    later = later if rb and later is not None else {}
    with torch.no_grad():
        first = _BinaryStage(s, segs[0], segs[1], later) if segs[0].kappa is not None else None
        dense = [_DenseStage(s, segs[t], segs[t + 1], later) for t in range(first is not None, len(segs) - 1)]
        # the widest rows materialised (a binary-weight first stage gathers only its fragile units)
        width = max([seg.A.shape[1] for seg in segs[first is not None:]] + [first.F if first is not None else 0])
        nc = max(1, min(n, ROW_BUDGET // max(1, B * width)))
        ex = torch.arange(B, device=flat.device).repeat_interleave(nc)
        for j0 in range(0, n, nc):
            j = slice(j0, min(n, j0 + nc))
            xj = flat[:, j]
            c = xj.shape[1]
            cv = torch.zeros(B, c, dtype=xj.dtype, device=xj.device)
            if first is not None:
                val = first(xj, j, cv)
            else:
                val = torch.addcmul(_target(s, segs[0])[:, None, :], (-2 * xj)[:, :, None], segs[0].A[j][None])
            for st in dense:
                val = st(val, cv)
            lf = s.losses(val.reshape(B * c, -1), ex if c == nc else ex.view(B, nc)[:, :c].reshape(-1)).view(B, c)
            out[:, j] = xj * (L[:, None] - lf + cv)
    return out


def _target(s, seg: Segment) -> torch.Tensor:
    """The main sample's values at the segment's target: the act node's pre-activations or the output (B, m)."""
    return (s.out if seg.node is None else s.pre[seg.node]).detach()


class _BinaryStage:
    """Rank-one flips of one layer's units into act node ``seg.node`` through binary weights (module
    docstring); what does not depend on the flipped unit is computed once."""

    def __init__(self, s, seg: Segment, nxt: Segment, later: dict[int, torch.Tensor]) -> None:
        i2 = seg.node
        nd = s.chain.nodes[i2]
        a, tau, x2 = s.pre[i2].detach(), s.tau[i2], s.state[i2]
        am, ap = a - seg.kappa, a + seg.kappa
        fragile = torch.where(x2 > 0, ~(am > tau), ap > tau)                   # flips when pushed along x2
        self.sign, self.F = seg.sign, int(fragile.sum(1).max())
        self.base = _target(s, nxt)[:, None, :]
        self.rb = i2 in later
        if self.rb:
            D = later[i2].detach()
            Pm, Pp = _prob(nd, am), _prob(nd, ap)
            self.const = ((_prob(nd, a) - 0.5 * (Pm + Pp)) * D).sum(1, keepdim=True)   # (B, 1)
            self.E = (Pm - Pp) * D                                             # (B, m)
        if self.F:
            self.idx = torch.topk(fragile.to(torch.int8), self.F, dim=1, sorted=False).indices  # (B, F)
            self.valid = fragile.gather(1, self.idx)
            self.xf = x2.gather(1, self.idx)
            self.C = (-2 * self.xf)[:, :, None] * nxt.A[self.idx]               # (B, F, m')
            if self.rb:
                self.xfD = (self.xf * D.gather(1, self.idx))[:, :, None]        # (B, F, 1)

    def __call__(self, xj: torch.Tensor, j: slice, cv: torch.Tensor) -> torch.Tensor:
        """Adds the flip-noise term to ``cv`` (B, c); returns the rows' values at the next target (B, c, m')."""
        sig = self.sign[j]                                                     # (c, m)
        if self.rb:
            cv += self.const
            cv -= 0.5 * xj * (self.E @ sig.T)
        if not self.F:
            return self.base.expand(-1, xj.shape[1], -1).clone()
        z = xj[:, :, None] * sig[:, self.idx].permute(1, 0, 2)                 # (B, c, F)
        flip = (self.valid[:, None, :] & (z == self.xf[:, None, :])).to(xj.dtype)
        if self.rb:
            cv -= torch.bmm(flip, self.xfD)[:, :, 0]
        return torch.baddbmm(self.base, flip, self.C)


class _DenseStage:
    """Rows whose pre-activations at act node ``seg.node`` moved (several flips upstream): new states
    from the thresholds, the flip-noise term, and the rows' values at the next target."""

    def __init__(self, s, seg: Segment, nxt: Segment, later: dict[int, torch.Tensor]) -> None:
        i3 = seg.node
        self.nd = s.chain.nodes[i3]
        a, x3 = s.pre[i3].detach(), s.state[i3]
        self.tau = s.tau[i3][:, None, :]
        self.one_plus_x = (1 + x3)[:, None, :]
        self.rb = i3 in later
        if self.rb:
            D = later[i3].detach()
            # sum_u [(P_u - x_u/2) - (P'_u - x'_u/2)] D_u, with x'/2 = xnew - 1/2
            self.const = ((_prob(self.nd, a) - 0.5 * x3 - 0.5) * D).sum(1, keepdim=True)   # (B, 1)
            self.D = D[:, :, None]
        self.base = _target(s, nxt)[:, None, :]
        self.A = nxt.A
        self.Ab = nxt.A.expand(a.shape[0], -1, -1) if nxt.A.shape[1] <= DENSE_OUTPUTS else None

    def __call__(self, pre: torch.Tensor, cv: torch.Tensor) -> torch.Tensor:
        B, c, m = pre.shape
        xnew = torch.gt(pre, self.tau, out=torch.empty_like(pre))              # 1.0 / 0.0
        if self.rb:
            cv += self.const
            cv -= torch.bmm(_prob(self.nd, pre).sub_(xnew), self.D)[:, :, 0]
        dx = xnew.mul_(2).sub_(self.one_plus_x)                                # x' - x: 0 or -2 x
        if self.Ab is not None:
            return torch.baddbmm(self.base, dx, self.Ab)
        flat = dx.reshape(B * c, m)
        nz = flat.nonzero(as_tuple=True)
        sp = torch.sparse_coo_tensor(torch.stack(nz), flat[nz], flat.shape, check_invariants=False,
                                     is_coalesced=True)
        return torch.sparse.mm(sp, self.A).view(B, c, -1).add_(self.base)


def shifted_prob_sums(nd, pre: torch.Tensor, kappa: torch.Tensor, w: torch.Tensor, h: torch.Tensor, D: torch.Tensor,
                      budget: int) -> torch.Tensor:
    r""":math:`S_{ij} = \sum_b F\big((a_{bi} - \kappa_i w_{ij} h_{bj})/s\big) D_{bi}` for ±1 weights ``w`` (out, in),
    real inputs ``h`` (B, in), pre-activations ``a`` and weights ``D`` (B, out): the unit's probability
    when the weight is flipped, summed over the batch (the weight term of local expectations).

    Inputs equal to their most frequent value (an image's background, the zeros of a ReLU) take one
    of two values per (b, i), by the sign of the weight: two matrix products; the others are
    evaluated one by one. Without a value that fills a quarter of the inputs, densely."""
    vals, counts = h.unique(return_counts=True)
    S = torch.zeros_like(w)
    if 4 * int(counts.max()) < h.numel():
        bc = max(1, budget // max(1, w.numel()))
        for b0 in range(0, h.shape[0], bc):
            t = pre[b0:b0 + bc, :, None] - kappa[None, :, None] * w[None] * h[b0:b0 + bc, None, :]
            S += (_prob(nd, t) * D[b0:b0 + bc, :, None]).sum(0)
        return S
    v0 = vals[counts.argmax()]
    common = h == v0
    kv = kappa * v0
    cm = common.to(w.dtype)
    S = torch.where(w > 0, (_prob(nd, pre - kv) * D).T @ cm, (_prob(nd, pre + kv) * D).T @ cm)
    kwT = (kappa[:, None] * w).T.contiguous()                                  # (in, out)
    St = torch.zeros_like(kwT)
    for b in range(h.shape[0]):  # the other inputs, one example at a time
        jb = (~common[b]).nonzero()[:, 0]
        if jb.numel():
            t = torch.addcmul(pre[b][None], kwT[jb], h[b, jb][:, None], value=-1)  # (E, out)
            St.index_add_(0, jb, _prob(nd, t).mul_(D[b][None]))
    return S.add_(St.T)
