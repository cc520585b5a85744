r"""Gradient quality at real scale: how close single-sample estimators come to the true gradient of
a network too large to enumerate, per parameter tensor, with confidence intervals.

The true gradient :math:`g` is replaced by an unbiased reference
(:mod:`stbin.analysis.reference`: local expectations or DisARM) averaged over :math:`N`
samples :math:`r_1..r_N`; each method draws :math:`N` single-sample estimates
:math:`m_1..m_N` independently. Per tensor, with U-statistics that remove the reference's
own noise from squared norms,

==================  ===============================================================================
``cosine``          mean cosine of a single-sample estimate to :math:`g`:
                    :math:`\frac1N\sum_i \langle m_i/\|m_i\|, \bar r\rangle / \|g\|_U`
``cosine_of_mean``  cosine of the estimator's expectation: :math:`\langle\bar m,\bar r\rangle /
                    (\|\mathbb{E}m\|_U\|g\|_U)` (1 for an unbiased estimator)
``rel_bias``        :math:`\|\mathbb{E}m - g\| / \|g\|`
``rel_rmse``        :math:`\sqrt{\mathbb{E}\|m - g\|^2} / \|g\|` of a single-sample estimate
==================  ===============================================================================

where :math:`\|g\|^2_U = \frac{1}{N(N-1)}\sum_{i\ne j}\langle r_i, r_j\rangle` (unbiased) and
likewise for :math:`\|\mathbb{E}m\|^2`; :math:`\langle\bar m,\bar r\rangle` is unbiased for
:math:`\langle\mathbb{E}m, g\rangle` since the two are independent. Confidence intervals
(95 %) come from a delete-a-group jackknife over ``groups`` groups of samples (Student t with
``groups - 1`` degrees of freedom); for the relative bias and RMSE the interval is computed on
the (unbiased, possibly slightly negative) squared value and the reported half-width is the
distance from the estimate to the square root of its upper end. Samples are drawn until every tensor's ``cosine``
half-width — of every layer's weight tensor (linear and convolutional layers) and of all
parameters together — is below ``tolerance`` or the budget (``max_samples``,
``max_seconds``) is spent, which the result states. Every tensor (biases, batch norm) is
reported with its interval.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from stbin.analysis.chain import Chain, analysis_mode, parse_chain
from stbin.analysis.gradient_estimators import NodeContext, parse_method
from stbin.analysis.reference import REFERENCES, reference_sample
from stbin.analysis._network import check_per_example_loss

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: short names accepted for the deterministic proxies
ALIASES = {"htanh": "det_htanh", "tanh": "det_tanh", "identity": "det_identity"}
METRICS = ("cosine", "cosine_of_mean", "rel_bias", "rel_rmse")
# two-sided 97.5 % Student t quantiles by degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 19: 2.093, 24: 2.064, 29: 2.045}


def _t975(df: int) -> float:
    if df in _T975:
        return _T975[df]
    return _T975[max(k for k in _T975 if k <= df)] if df < 30 else 1.96 + 2.4 / df


@dataclass
class QualityResult:
    """Rows (one per method and tensor; ``tensor`` ``"all"`` = every parameter together) with each
    metric and its 95 % interval half-width (``<metric>_hw``), plus how the reference went."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    n_samples: int = 0
    converged: bool = False
    message: str = ""
    reference: str = "local_expectation"
    tolerance: float = 0.02
    seconds: float = 0.0
    reference_rel_se: dict[str, float] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)   # weight tensors of linear / conv layers, forward order

    def get(self, method: str, tensor: str, metric: str) -> float:
        for r in self.rows:
            if r["method"] == method and r["tensor"] == tensor:
                return float(r[metric])
        raise KeyError((method, tensor))


class _Groups:
    """Per-group sums of flat sample vectors (G, D) and of their squared norms per tensor."""

    def __init__(self, G: int, sizes: Sequence[int], dtype: torch.dtype) -> None:
        self.sizes = list(sizes)
        D = sum(sizes)
        self.S = torch.zeros(G, D, dtype=dtype)
        self.Q = torch.zeros(G, len(sizes) + 1, dtype=torch.float64)

    def add(self, g: int, v: torch.Tensor) -> None:
        self.S[g] += v.to(self.S.dtype)
        parts = torch.split(v.to(torch.float64), self.sizes)
        q = torch.stack([(p * p).sum() for p in parts])
        self.Q[g, :-1] += q
        self.Q[g, -1] += q.sum()


def _gram(a: torch.Tensor, b: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Per-tensor Gram matrices (T + 1, G, G) of group sums (the last: all tensors)."""
    out = [pa.double() @ pb.double().T for pa, pb in zip(torch.split(a, sizes, 1), torch.split(b, sizes, 1))]
    return torch.stack(out + [sum(out)])  # type: ignore[arg-type]


def _metrics(masks: torch.Tensor, n: torch.Tensor, Grr, Gmm, Gmr, Gur, Qr, Qm) -> dict[str, torch.Tensor]:
    """Every metric for every retained-group mask (J, G): tensors (J, T + 1)."""
    def quad(G_):  # (T+1, G, G) -> (J, T+1)
        return torch.einsum("jg,tgh,jh->jt", masks, G_, masks)
    N = (masks @ n)[:, None]                                      # (J, 1)
    gg = (quad(Grr) - masks @ Qr) / (N * (N - 1))
    mm = (quad(Gmm) - masks @ Qm) / (N * (N - 1))
    mr = quad(Gmr) / (N * N)
    ur = quad(Gur) / (N * N)
    msq = (masks @ Qm) / N
    gn = gg.clamp_min(0).sqrt()
    bad = gg <= 0
    nan = torch.full_like(gg, math.nan)
    cos = torch.where(bad, nan, ur / gn)
    com = torch.where(bad | (mm <= 0), nan, mr / (mm.clamp_min(1e-300).sqrt() * gn))
    # squared relative bias / RMSE, unclamped (U-statistics can be slightly negative): intervals are
    # computed on these and carried through the square root (see _summarise)
    rb2 = torch.where(bad, nan, (mm - 2 * mr + gg) / gg)
    rr2 = torch.where(bad, nan, (msq - 2 * mr + gg) / gg)
    return {"cosine": cos, "cosine_of_mean": com, "rel_bias": rb2, "rel_rmse": rr2}


def _method_sample(chain: Chain, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, est, temp,
                   generator: torch.Generator | None, params: dict[str, torch.Tensor]) -> torch.Tensor:
    ctx = NodeContext(chain.nodes, generator, temp)  # type: ignore[arg-type]
    with analysis_mode(chain.model):
        out = chain.run(x, lambda i, pre: est.node_value(ctx, i, pre))
        L = check_per_example_loss(loss_fn(out, y), x.shape[0]).mean()
        gs = torch.autograd.grad(L, list(params.values()), allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params.values(), gs)])


def _resolve(methods: Sequence[str]) -> list[tuple[str, Any, float | None]]:
    if isinstance(methods, str) or not methods:
        raise ValueError(f"methods must be a non-empty sequence of gradient estimator names, got {methods!r}")
    out = []
    for m in methods:
        est, temp = parse_method(ALIASES.get(m, m) if isinstance(m, str) else m)
        if not est.pathwise:
            raise ValueError(f"gradient quality compares pathwise estimators (the gradient flows through each "
                             f"node's value); {m!r} is not one — it is usable as a reference instead")
        out.append((m, est, temp))
    return out


def gradient_quality(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                     methods: Sequence[str] = ("st", "htanh", "tanh", "identity"),
                     reference: str = "local_expectation", tolerance: float = 0.02,
                     generator: torch.Generator | None = None, *, max_samples: int = 2000,
                     max_seconds: float | None = None, min_samples: int = 20, groups: int = 10,
                     progress: Callable[[int, float], None] | None = None) -> QualityResult:
    r"""Cosine, relative bias and relative RMSE of single-sample gradient estimators against the true
    gradient of a real stochastic binary network, per parameter tensor, with 95 % intervals.

    Args:
        model: an ``nn.Sequential`` of stbin modules (:mod:`stbin.analysis.chain`; MLPs and
            conv nets such as ``lenet5``); left unchanged.
        loss_fn: ``loss_fn(output, target)`` returning per-example losses.
        x, y: the batch (the expected loss is the batch mean).
        methods: registered pathwise gradient estimators (``st``, ``htanh``/``det_htanh``,
            ``tanh``, ``identity``, ``concrete:T``, ``st_concrete:T`` or your own).
        reference: ``"local_expectation"`` (default) or ``"disarm"``.
        tolerance: stop once the ``cosine`` interval half-width of every layer's weight tensor
            and of all parameters together is below it.
        generator: ``torch.Generator`` for every draw.
        max_samples, max_seconds: the budget (the time is checked after every sample, once
            ``groups`` samples exist); when spent first, ``converged`` is False and ``message``
            says so.
        min_samples: samples drawn before the first check (at least ``groups``).
        groups: jackknife groups.
        progress: called as ``progress(n_samples, worst_half_width)`` after each check.

    Returns:
        a :class:`QualityResult`.
    """
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; valid: {', '.join(REFERENCES)}")
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 2):
        raise ValueError(f"tolerance must be a number in (0, 2), got {tolerance!r}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 3:
        raise ValueError(f"groups must be an integer >= 3, got {groups!r}")
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < groups:
        raise ValueError(f"max_samples must be an integer >= groups ({groups}), got {max_samples!r}")
    resolved = _resolve(methods)
    chain = parse_chain(model)
    params = chain.params()
    names = list(params)
    sizes = [params[n].numel() for n in names]
    dt = torch.float32 if next(iter(params.values())).dtype != torch.float64 else torch.float64
    G = groups
    ref = _Groups(G, sizes, dt)
    acc = {m: (_Groups(G, sizes, dt), _Groups(G, sizes, dt), _Groups(G, sizes, dt)) for m, _, _ in resolved}
    det_cache: dict[str, torch.Tensor] = {}
    n = torch.zeros(G, dtype=torch.float64)
    t0 = time.perf_counter()
    res = QualityResult(reference=reference, tolerance=float(tolerance), layers=_layer_weights(chain, names))
    N = 0
    next_check = max(min_samples, G)
    while True:
        g = N % G
        r = reference_sample(chain, loss_fn, x, y, reference, generator)
        ref.add(g, torch.cat([r[k].reshape(-1) for k in names]))
        for m, est, temp in resolved:
            if est.random or m not in det_cache:
                v = _method_sample(chain, loss_fn, x, y, est, temp, generator, params)
                if not est.random:
                    det_cache[m] = v
            v = det_cache.get(m, v) if not est.random else v
            S, U, UA = acc[m]
            S.add(g, v)
            parts = torch.split(v, sizes)
            U.add(g, torch.cat([p / p.norm() if p.norm() > 0 else p for p in parts]))
            UA.add(g, v / v.norm() if v.norm() > 0 else v)
        n[g] += 1
        N += 1
        timed_out = max_seconds is not None and time.perf_counter() - t0 >= max_seconds and N >= G
        if N < next_check and not timed_out:
            continue
        rows, worst = _summarise(names, sizes, ref, acc, n, G, set(res.layers) | {"all"})
        elapsed = time.perf_counter() - t0
        if progress is not None:
            progress(N, worst)
        done = worst < tolerance
        out_of_budget = N >= max_samples or timed_out or (max_seconds is not None and elapsed >= max_seconds)
        if done or out_of_budget:
            res.rows, res.n_samples, res.converged, res.seconds = rows, N, done, elapsed
            res.reference_rel_se = _ref_rel_se(names, sizes, ref, n)
            if done:
                res.message = (f"converged: every layer's cosine interval half-width < {tolerance:g} after {N} "
                               f"reference samples ({elapsed:.1f} s)")
            else:
                res.message = (f"budget reached ({N} reference samples, {elapsed:.1f} s) before every layer's "
                               f"cosine interval half-width fell below {tolerance:g} (largest {worst:.3g})")
            return res
        # grow geometrically, in whole rounds of the groups
        next_check = int(math.ceil(max(N * 1.25, N + G) / G) * G)
        if max_samples is not None:
            next_check = min(next_check, max_samples)


def _layer_weights(chain: Chain, names: Sequence[str]) -> list[str]:
    out = []
    for st in chain.steps:
        m = st.module
        for attr in ("latent_weight", "weight"):
            key = f"{st.name}.{attr}" if st.name else attr
            if isinstance(m, (nn.Linear, nn.Conv2d)) or st.kind == "binary":
                if key in names and key not in out:
                    out.append(key)
                    break
    return out


def _summarise(names, sizes, ref: _Groups, acc, n: torch.Tensor, G: int, watched: set[str]
               ) -> tuple[list[dict[str, Any]], float]:
    """Rows of every method and tensor, and the largest cosine half-width among the ``watched`` tensors."""
    full = torch.ones(1, G, dtype=torch.float64)
    masks = torch.cat([full, 1 - torch.eye(G, dtype=torch.float64)])          # full set, then delete-one-group
    Grr = _gram(ref.S, ref.S, sizes)
    rows: list[dict[str, Any]] = []
    worst = 0.0
    labels = names + ["all"]
    t = _t975(G - 1)
    for m, (S, U, UA) in acc.items():
        Gur = _gram(U.S, ref.S, sizes)
        Gur[-1] = UA.S.double() @ ref.S.double().T
        met = _metrics(masks, n, Grr, _gram(S.S, S.S, sizes), _gram(S.S, ref.S, sizes), Gur, ref.Q, S.Q)
        for ti, label in enumerate(labels):
            row: dict[str, Any] = {"method": m, "tensor": label, "n_samples": int(n.sum())}
            for key, vals in met.items():
                est = vals[0, ti].item()
                jack = vals[1:, ti]
                hw = t * math.sqrt((G - 1) / G * float(((jack - jack.mean()) ** 2).sum())) if \
                    torch.isfinite(jack).all() else math.nan
                if key in ("rel_bias", "rel_rmse"):  # from the squared value: sqrt of its interval's end
                    v = math.sqrt(max(est, 0.0)) if math.isfinite(est) else math.nan
                    hw = math.sqrt(max(est + hw, 0.0)) - v if math.isfinite(hw) else math.nan
                    est = v
                row[key], row[key + "_hw"] = est, hw
            if label in watched:
                worst = max(worst, row["cosine_hw"] if math.isfinite(row["cosine_hw"]) else math.inf)
            rows.append(row)
    return rows, worst


def _ref_rel_se(names, sizes, ref: _Groups, n: torch.Tensor) -> dict[str, float]:
    """Relative standard error of the averaged reference per tensor: sqrt(tr Cov / N) / ||g||."""
    N = float(n.sum())
    out = {}
    S = ref.S.double().sum(0)
    for ti, (label, part) in enumerate(zip(names + ["all"], list(torch.split(S, sizes)) + [S])):
        q = float(ref.Q[:, ti].sum())
        s2 = float((part * part).sum())
        tr = (q - s2 / N) / (N - 1)                 # trace of the sample covariance
        gg = (s2 - q) / (N * (N - 1))
        out[label] = math.sqrt(max(tr, 0) / N) / math.sqrt(gg) if gg > 0 else math.nan
    return out
