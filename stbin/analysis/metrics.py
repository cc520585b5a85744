r"""Accuracy of a gradient estimator against the exact gradient, as a function of the number M of averaged samples.

Given K single-sample estimates :math:`\hat g^{(1)}, \dots, \hat g^{(K)}` of a parameter
tensor (or of a group of tensors, concatenated) and the exact gradient :math:`g`, the
first :math:`n M` estimates (:math:`n = \lfloor K/M \rfloor`) are averaged in :math:`n`
consecutive groups of :math:`M`, giving :math:`\hat g_M^{(1)}, \dots, \hat g_M^{(n)}`, and

==============  ==================================================================================
``bias``        :math:`\|\bar g - g\|` with :math:`\bar g` the mean of all K estimates (the bias of
                the averaged estimator does not depend on M; this is its best estimate, which
                still contains a sampling error of order :math:`\sqrt{\mathrm{tr}\,\Sigma / K}`)
``rel_bias``    ``bias`` / :math:`\|g\|`
``variance``    :math:`\frac{1}{n-1}\sum_i \|\hat g_M^{(i)} - \bar g_M\|^2` (total variance, the
                trace of the covariance; NaN when :math:`n < 2`)
``rel_rmse``    :math:`\sqrt{\frac1n\sum_i \|\hat g_M^{(i)} - g\|^2} / \|g\|`
``cos_mean``    mean over the groups of :math:`\cos(\hat g_M^{(i)}, g)`
``cos_p15``     15th percentile of the cosines (linear interpolation)
``cos_p85``     85th percentile
==============  ==================================================================================

A zero estimate has cosine 0; when :math:`g = 0` the relative quantities and the cosines
are NaN. For i.i.d. estimates :math:`\mathbb{E}\|\hat g_M - g\|^2 = \|b\|^2 + \mathrm{tr}\,\Sigma/M`,
so the RMSE of an unbiased estimator falls as :math:`M^{-1/2}` while a biased one levels off
at its relative bias, and its cosine stays below 1.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

#: the M values of the reference protocol (M = 1 .. 9000, as in the estimator study of
#: Shekhovtsov, Yanush & Flach, NeurIPS 2020)
DEFAULT_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 9000)

METRIC_FIELDS = ("tensor", "M", "n_groups", "grad_norm", "bias", "rel_bias", "variance", "rel_rmse",
                 "cos_mean", "cos_p15", "cos_p85")


def _flat(d: Mapping[str, torch.Tensor], names: Sequence[str], lead: int) -> torch.Tensor:
    return torch.cat([d[n].reshape(*d[n].shape[:lead], -1) for n in names], dim=-1)


def group_metrics(samples: torch.Tensor, exact: torch.Tensor, ms: Sequence[int]) -> list[dict[str, float]]:
    """Metrics of K flat estimates ``samples`` (K, D) against ``exact`` (D,), one row per M (M > K skipped)."""
    if samples.dim() != 2 or exact.dim() != 1 or samples.shape[1] != exact.shape[0]:
        raise ValueError(f"mismatched shapes: samples {tuple(samples.shape)} and exact {tuple(exact.shape)} "
                         f"(expected (K, D) and (D,))")
    s = samples.to(torch.float64)
    g = exact.to(torch.float64)
    K = s.shape[0]
    gn = g.norm().item()
    bias = (s.mean(0) - g).norm().item()
    rows = []
    for M in ms:
        if isinstance(M, bool) or not isinstance(M, int) or M < 1:
            raise ValueError(f"every M must be a positive integer, got {M!r}")
        n = K // M
        if n < 1:
            continue
        gm = s[: n * M].reshape(n, M, -1).mean(1)                       # (n, D)
        var = ((gm - gm.mean(0)) ** 2).sum(1).sum().item() / (n - 1) if n >= 2 else math.nan
        mse = ((gm - g) ** 2).sum(1).mean().item()
        if gn > 0:
            norms = gm.norm(dim=1)
            cos = torch.where(norms > 0, (gm @ g) / (norms.clamp_min(1e-300) * gn), torch.zeros_like(norms))
            q = torch.quantile(cos, torch.tensor([0.15, 0.85], dtype=cos.dtype))
            c_mean, c15, c85 = cos.mean().item(), q[0].item(), q[1].item()
            rel_bias, rel_rmse = bias / gn, math.sqrt(mse) / gn
        else:
            c_mean = c15 = c85 = rel_bias = rel_rmse = math.nan
        rows.append({"M": M, "n_groups": n, "grad_norm": gn, "bias": bias, "rel_bias": rel_bias, "variance": var,
                     "rel_rmse": rel_rmse, "cos_mean": c_mean, "cos_p15": c15, "cos_p85": c85})
    return rows


def estimator_metrics(samples: Mapping[str, torch.Tensor], exact: Mapping[str, torch.Tensor],
                      ms: Sequence[int] = DEFAULT_MS,
                      groups: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, float | int | str]]:
    """Metrics per parameter tensor (and per group of tensors) for every M.

    Args:
        samples: name -> (K, *shape) single-sample estimates (from
            :func:`stbin.analysis.sample_gradients`).
        exact: name -> exact gradient (from :func:`stbin.analysis.exact_gradients`).
        ms: numbers of averaged samples; values larger than K are skipped.
        groups: extra rows for groups of tensors, label -> names (e.g. a layer's weight and
            bias); by default every tensor alone plus ``"all"`` (every tensor together).

    Returns:
        rows (dicts with the keys of :data:`METRIC_FIELDS`), ``tensor`` naming the tensor or group.
    """
    names = list(exact)
    missing = [n for n in names if n not in samples]
    if missing:
        raise ValueError(f"samples lack tensors {missing}")
    Ks = {samples[n].shape[0] for n in names}
    if len(Ks) != 1:
        raise ValueError(f"all sample tensors must have the same number of estimates, got {sorted(Ks)}")
    for n in names:
        if tuple(samples[n].shape[1:]) != tuple(exact[n].shape):
            raise ValueError(f"mismatched shapes for {n!r}: samples {tuple(samples[n].shape)}, "
                             f"exact {tuple(exact[n].shape)}")
    sets: dict[str, Sequence[str]] = {n: [n] for n in names}
    if groups is None:
        sets["all"] = names
    else:
        for label, members in groups.items():
            bad = [m for m in members if m not in exact]
            if bad:
                raise ValueError(f"group {label!r} names unknown tensors {bad}")
            sets[label] = list(members)
    rows: list[dict[str, float | int | str]] = []
    for label, members in sets.items():
        for r in group_metrics(_flat(samples, members, 1), _flat(exact, members, 0), ms):
            rows.append({"tensor": label, **r})
    return rows
