r"""Gradient quality at real scale: how close single-sample estimators come to the true gradient of
a network too large to enumerate, per parameter tensor, with confidence intervals.

The true gradient :math:`g` is replaced by an unbiased reference
(:mod:`stbin.analysis.reference`: local expectations or DisARM), by default with the ST
control variate of :mod:`stbin.analysis.control_variates`. Draw :math:`i = 1..N` yields a
reference sample :math:`r_i` and, per method, :math:`K` single-sample estimates
:math:`m_{i1..iK}` (one for a deterministic proxy), summarised as :math:`e_i` (their mean),
:math:`u_i` (the mean of :math:`m_{ik}/\|m_{ik}\|`) and :math:`b_i`, an unbiased estimate of
the method's bias :math:`\mathbb{E}m - g`: :math:`e_i - r_i`, or for ST with the control
variate the paired difference :math:`s_{i0} - r_i` on common random numbers (much lower
variance). Draws are independent; within a draw they may be dependent, so every inner
product of two expectations is a U-statistic over pairs of *different* draws,
:math:`U(x, y) = \frac{1}{N(N-1)}\sum_{i\ne j}\langle x_i, y_j\rangle` (unbiased). Per tensor:

==================  ===============================================================================
``cosine``          mean cosine of a single-sample estimate to :math:`g`:
                    :math:`U(u, r) / \sqrt{U(r, r)}`
``cosine_of_mean``  cosine of the estimator's expectation: :math:`U(e, r) / \sqrt{U(e, e)\,U(r, r)}`
                    (1 for an unbiased estimator)
``rel_bias``        :math:`\|\mathbb{E}m - g\| / \|g\| = \sqrt{U(b, b) / U(r, r)}`
``rel_rmse``        :math:`\sqrt{\mathbb{E}\|m - g\|^2} / \|g\|` of a single-sample estimate, from
                    :math:`\mathbb{E}\|m - g\|^2 = \mathbb{E}\|m\|^2 - \|\mathbb{E}m\|^2 + \|\mathbb{E}m - g\|^2`
==================  ===============================================================================

(ratios of unbiased estimates: consistent, with a bias of order :math:`1/N`). Confidence intervals
(95 %) come from a delete-a-group jackknife over ``groups`` groups of draws (Student t with
``groups - 1`` degrees of freedom); for the relative bias and RMSE the interval is computed on
the (unbiased, possibly slightly negative) squared value and the reported half-width is the
distance from the estimate to the square root of its upper end. Draws continue until every
tensor's ``cosine`` half-width — of every layer's weight tensor (linear and convolutional
layers) and of all parameters together — is below ``tolerance`` or the budget
(``max_samples``, ``max_seconds``) is spent, which the result states. Every tensor (biases,
batch norm) is reported with its interval.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from stbin.analysis._network import PerExampleLoss
from stbin.analysis._ustats import GroupSums, dots, full_and_jackknife
from stbin.analysis.chain import Chain
from stbin.analysis.graph import HookedModel, read_model
from stbin.analysis.control_variates import method_sample, paired_draw
from stbin.analysis.gradient_estimators import parse_method
from stbin.analysis.reference import REFERENCES, reference_sample

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
    control_variate: bool = True
    st_samples: int = 1
    layers: list[str] = field(default_factory=list)   # weight tensors of linear / conv layers, forward order

    def get(self, method: str, tensor: str, metric: str) -> float:
        for r in self.rows:
            if r["method"] == method and r["tensor"] == tensor:
                return float(r[metric])
        raise KeyError((method, tensor))


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
                     max_seconds: float | None = None, min_samples: int = 10, groups: int = 10,
                     control_variate: bool = True, st_samples: int = 16,
                     progress: Callable[[int, float], None] | None = None) -> QualityResult:
    r"""Cosine, relative bias and relative RMSE of single-sample gradient estimators against the true
    gradient of a real stochastic binary network, per parameter tensor, with 95 % intervals.

    Args:
        model: any ``nn.Module`` built from stbin modules: an ``nn.Sequential`` runs on the fast
            paths of :mod:`stbin.analysis.chain`, any other forward code (residual nets,
            ``binarize``-converted modules) through the hooks of :mod:`stbin.analysis.graph`;
            left unchanged.
        loss_fn: ``loss_fn(output, target)``: per-example losses (``reduction="none"``), or a
            loss that reduces the batch to one number (torch's default mean, or sum), which is
            then evaluated on each example alone (:class:`stbin.analysis._network.PerExampleLoss`).
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
        control_variate: use the ST control variate of :mod:`stbin.analysis.control_variates`
            (unbiased; lower variance, and ST's bias from paired differences).
        st_samples: :math:`K`, the single-sample estimates of every random method per reference
            sample (with ``control_variate``, ST's also estimate :math:`\mathbb{E}[s]`).
        progress: called as ``progress(n_samples, worst_half_width)`` after each check.

    Returns:
        a :class:`QualityResult` (``n_samples``: reference samples).
    """
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; valid: {', '.join(REFERENCES)}")
    if isinstance(tolerance, bool) or not (isinstance(tolerance, (int, float)) and 0 < tolerance < 2):
        raise ValueError(f"tolerance must be a number in (0, 2), got {tolerance!r}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 3:
        raise ValueError(f"groups must be an integer >= 3, got {groups!r}")
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < groups:
        raise ValueError(f"max_samples must be an integer >= groups ({groups}), got {max_samples!r}")
    if isinstance(st_samples, bool) or not isinstance(st_samples, int) or st_samples < 1:
        raise ValueError(f"st_samples must be an integer >= 1, got {st_samples!r}")
    resolved = _resolve(methods)
    loss_fn = PerExampleLoss(loss_fn)
    chain = read_model(model, x)
    params = chain.params()
    names = list(params)
    sizes = [params[n].numel() for n in names]
    dt = torch.float32 if next(iter(params.values())).dtype != torch.float64 else torch.float64
    G = groups
    pairs = [("r", "r")]
    for m, _, _ in resolved:
        pairs += [(f"{m}/e", f"{m}/e"), (f"{m}/e", "r"), (f"{m}/b", f"{m}/b"), (f"{m}/u", "r"), (f"{m}/ua", "r")]
    acc = GroupSums(G, sizes, dt, pairs)
    det_cache: dict[str, tuple[torch.Tensor, ...]] = {}
    t0 = time.perf_counter()
    res = QualityResult(reference=reference, tolerance=float(tolerance), layers=_layer_weights(chain, names),
                        control_variate=bool(control_variate), st_samples=st_samples)
    N = 0
    next_check = max(min_samples, G)
    while True:
        vecs, scalars = _draw(chain, loss_fn, x, y, reference, generator, params, resolved, sizes,
                              control_variate, st_samples, det_cache)
        acc.add(N % G, vecs, scalars)
        N += 1
        timed_out = max_seconds is not None and time.perf_counter() - t0 >= max_seconds and N >= G
        if N < next_check and not timed_out:
            continue
        rows, worst = _summarise(names, acc, [m for m, _, _ in resolved], set(res.layers) | {"all"})
        elapsed = time.perf_counter() - t0
        if progress is not None:
            progress(N, worst)
        done = worst < tolerance
        out_of_budget = N >= max_samples or timed_out or (max_seconds is not None and elapsed >= max_seconds)
        if done or out_of_budget:
            res.rows, res.n_samples, res.converged, res.seconds = rows, N, done, elapsed
            res.reference_rel_se = _ref_rel_se(names, acc)
            if done:
                res.message = (f"converged: every layer's cosine interval half-width < {tolerance:g} after {N} "
                               f"reference samples ({elapsed:.1f} s)")
            else:
                res.message = (f"budget reached ({N} reference samples, {elapsed:.1f} s) before every layer's "
                               f"cosine interval half-width fell below {tolerance:g} (largest {worst:.3g})")
            return res
        # grow geometrically, in whole rounds of the groups
        next_check = int(math.ceil(max(N * 1.25, N + G) / G) * G)
        next_check = min(next_check, max_samples)


def _summary(samples: Sequence[torch.Tensor], sizes: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """(mean, mean of per-tensor unit vectors, mean of unit vectors, mean per-tensor squared norms (T + 1,))
    of single-sample estimates, accumulated in place (zero parts stay zero)."""
    e, u, ua = (torch.zeros_like(samples[0]) for _ in range(3))
    q = torch.zeros(len(sizes) + 1, dtype=torch.float64)
    for v in samples:
        e.add_(v)
        sq = dots(v, v, sizes)
        q += sq
        for ut, vt, n2 in zip(torch.split(u, sizes), torch.split(v, sizes), sq[:-1].tolist()):
            if n2 > 0:
                ut.add_(vt, alpha=n2 ** -0.5)
        if sq[-1] > 0:
            ua.add_(v, alpha=float(sq[-1]) ** -0.5)
    K = len(samples)
    return e.div_(K), u.div_(K), ua.div_(K), q / K


def _draw(chain: Chain, loss_fn: LossFn, x, y, reference: str, generator, params, resolved, sizes,
          control_variate: bool, K: int, det_cache: dict[str, tuple[torch.Tensor, ...]]
          ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    r"""One draw: the reference ``r`` (control-variate or plain) and, per method ``m``, ``m/e`` (mean of
    its samples, unbiased for :math:`\mathbb{E}m`), ``m/b`` (unbiased for :math:`\mathbb{E}m - g`),
    ``m/u`` and ``m/ua`` (mean unit vectors per tensor / over all), and the scalar ``m/q`` (mean
    squared norm per tensor)."""
    if control_variate:
        r, s0, fresh = paired_draw(chain, loss_fn, x, y, reference, generator, params, K)
        st_summary = _summary([s0] + fresh, sizes)
        rp = r - s0
        for v in fresh:
            rp.add_(v, alpha=1.0 / len(fresh))
    else:
        ref = reference_sample(chain, loss_fn, x, y, reference, generator)
        rp = torch.cat([ref[k].reshape(-1) for k in params])
    vecs, scalars = {"r": rp}, {}
    for m, est, temp in resolved:
        paired_st = control_variate and est.name == "st"
        if not est.random:
            if m not in det_cache:
                det_cache[m] = _summary([method_sample(chain, loss_fn, x, y, est, temp, generator, params)], sizes)
            e, u, ua, q = det_cache[m]
        elif paired_st:
            e, u, ua, q = st_summary
        else:
            e, u, ua, q = _summary([method_sample(chain, loss_fn, x, y, est, temp, generator, params)
                                    for _ in range(K)], sizes)
        vecs[f"{m}/e"], vecs[f"{m}/u"], vecs[f"{m}/ua"], scalars[f"{m}/q"] = e, u, ua, q
        vecs[f"{m}/b"] = s0 - r if paired_st else e - rp
    return vecs, scalars

def _layer_weights(chain: Chain | HookedModel, names: Sequence[str]) -> list[str]:
    if isinstance(chain, HookedModel):
        return chain.layer_weights(list(names))
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


def _metrics(acc: GroupSums, masks: torch.Tensor, m: str) -> dict[str, torch.Tensor]:
    """Every metric of method ``m`` for every jackknife mask: tensors (J, T + 1)."""
    gg = acc.ustat(masks, "r", "r")
    mm = acc.ustat(masks, f"{m}/e", f"{m}/e")
    mr = acc.ustat(masks, f"{m}/e", "r")
    bb = acc.ustat(masks, f"{m}/b", f"{m}/b")
    ur = acc.ustat(masks, f"{m}/u", "r")
    ur[:, -1] = acc.ustat(masks, f"{m}/ua", "r")[:, -1]
    msq = acc.mean_scalar(masks, f"{m}/q")
    gn = gg.clamp_min(0).sqrt()
    bad = gg <= 0
    nan = torch.full_like(gg, math.nan)
    cos = torch.where(bad, nan, ur / gn)
    com = torch.where(bad | (mm <= 0), nan, mr / (mm.clamp_min(1e-300).sqrt() * gn))
    # squared relative bias / RMSE, unclamped (U-statistics can be slightly negative): intervals are
    # computed on these and carried through the square root (see _summarise);
    # E||m - g||^2 = tr Cov[m] + ||E m - g||^2 = (E||m||^2 - ||E m||^2) + ||E m - g||^2
    rb2 = torch.where(bad, nan, bb / gg)
    rr2 = torch.where(bad, nan, (msq - mm + bb) / gg)
    return {"cosine": cos, "cosine_of_mean": com, "rel_bias": rb2, "rel_rmse": rr2}


def _summarise(names: Sequence[str], acc: GroupSums, methods: Sequence[str], watched: set[str]
               ) -> tuple[list[dict[str, Any]], float]:
    """Rows of every method and tensor, and the largest cosine half-width among the ``watched`` tensors."""
    G = acc.G
    masks = full_and_jackknife(G)
    rows: list[dict[str, Any]] = []
    worst = 0.0
    labels = list(names) + ["all"]
    t = _t975(G - 1)
    for m in methods:
        met = _metrics(acc, masks, m)
        for ti, label in enumerate(labels):
            row: dict[str, Any] = {"method": m, "tensor": label, "n_samples": int(acc.n.sum())}
            for key, vals in met.items():
                jack = vals[1:, ti]
                # jackknife bias correction: the ratios of U-statistics are biased at order 1/N
                est = (G * vals[0, ti] - (G - 1) * jack.mean()).item()
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


def _ref_rel_se(names: Sequence[str], acc: GroupSums) -> dict[str, float]:
    """Relative standard error of the averaged reference per tensor: sqrt(tr Cov / N) / ||g||."""
    N = float(acc.n.sum())
    S = acc.S["r"].double().sum(0)
    q = acc.diag[("r", "r")].sum(0)
    out = {}
    for ti, (label, part) in enumerate(zip(list(names) + ["all"], list(torch.split(S, acc.sizes)) + [S])):
        s2 = float((part * part).sum())
        tr = (float(q[ti]) - s2 / N) / (N - 1)      # trace of the sample covariance
        gg = (s2 - float(q[ti])) / (N * (N - 1))
        out[label] = math.sqrt(max(tr, 0) / N) / math.sqrt(gg) if gg > 0 else math.nan
    return out
