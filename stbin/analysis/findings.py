"""The estimator lab's findings: statements computed from the measured rows.

Comparisons, rankings and the number of samples an unbiased estimator needs to match ST;
every number in them is measured, nothing is fixed text about which estimator wins.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from stbin.analysis.lab_rows import (SWEEPS, Rows, fmt, fmt_key, headline_epoch, is_deterministic, is_unbiased,
                                     lab_layers, sweep_values)
from stbin.analysis.protocol import LabResult


def _samples_to_match(ix: Rows, ep: int, base: dict, method: str, tensor: str, target: float,
                      ms: Sequence[int]) -> int | None:
    for M in ms:
        v = ix.get("protocol", ep, base, method, tensor, M, "cos_mean")
        if not math.isnan(v) and v >= target:
            return M
    return None


def findings(result: LabResult) -> list[str]:
    """Statements computed from the measured numbers (every number in them is measured)."""
    ix = Rows(result.rows)
    cfg = result.config
    base = dict(depth=cfg.depth, width=cfg.width, noise=cfg.noise, scale=cfg.scale)
    ep = headline_epoch(result)
    ms = sorted(M for M in cfg.ms if M <= cfg.n_estimates)
    m_max = ms[-1]
    layers = [t for t in lab_layers(ix) if t != "all"]
    hidden = [t for t in layers if t.startswith("layer")]
    methods = list(cfg.methods)
    unb = [m for m in methods if is_unbiased(m)]
    out: list[str] = []

    def cos(m: str, t: str, M: int, e: int = ep) -> float:
        return ix.get("protocol", e, base, m, t, M, "cos_mean")

    # 1. best estimator per layer at M = 1
    parts = []
    for t in layers:
        vals = {m: cos(m, t, 1) for m in methods}
        best = max(vals, key=lambda m: -math.inf if math.isnan(vals[m]) else vals[m])
        parts.append(f"{t}: **{best}** ({fmt(vals[best])})")
    out.append(f"Highest mean cosine at M = 1 (snapshot after {ep} epochs): " + "; ".join(parts) + ".")

    # 2. ST vs the unbiased estimators at M = 1, per hidden layer
    if "st" in methods and unb:
        for t in hidden:
            st1 = cos("st", t, 1)
            others = {m: cos(m, t, 1) for m in unb}
            best = max(others, key=lambda m: -math.inf if math.isnan(others[m]) else others[m])
            if st1 > others[best]:
                txt = (f"On {t} at M = 1, ST has mean cosine {fmt(st1)}, higher than every unbiased estimator "
                       f"(best: {best} {fmt(others[best])}")
                if "reinforce" in others and best != "reinforce":
                    txt += f"; REINFORCE without baseline {fmt(others['reinforce'])}"
                out.append(txt + ").")
            else:
                out.append(f"On {t} at M = 1, ST has mean cosine {fmt(st1)}, below {best} ({fmt(others[best])}).")
        # 3. samples the unbiased estimators need to match single-sample ST
        for t in (hidden[0] if hidden else None, "all"):
            if t is None:
                continue
            target = cos("st", t, 1)
            parts = []
            for m in unb:
                need = _samples_to_match(ix, ep, base, m, t, target, ms)
                parts.append(f"{m}: M = {need}" if need is not None else f"{m}: not reached for M <= {m_max}")
            out.append(f"Samples an unbiased estimator must average to reach ST's single-sample mean cosine "
                       f"({fmt(target)}) on {t}: " + "; ".join(parts) + ".")
        # 4. ST's bias: cosine at the largest M vs unbiased
        for t in ("all",) + tuple(hidden[:1]):
            st_hi = cos("st", t, m_max)
            rb = ix.get("protocol", ep, base, "st", t, 1, "rel_bias")
            ub = {m: cos(m, t, m_max) for m in unb}
            ub_txt = ", ".join(f"{m} {fmt(v)}" for m, v in ub.items())
            verdict = ("so ST's bias, not its variance, limits it at large M"
                       if all(not math.isnan(v) and v > st_hi for v in ub.values()) else
                       "so at this M the unbiased estimators have not yet overtaken it everywhere")
            out.append(f"At M = {m_max} on {t}, ST's cosine is {fmt(st_hi)} (relative bias {fmt(rb)}) while the "
                       f"unbiased estimators reach {ub_txt}; {verdict}.")
        # 5. bias of ST across training
        eps = sorted(s["epoch"] for s in result.snapshots)
        if len(eps) > 1:
            rbs = [ix.get("protocol", e, base, "st", "all", 1, "rel_bias") for e in eps]
            steps = [b - a for a, b in zip(rbs, rbs[1:])]
            if all(d > 0 for d in steps):
                trend = "it grows as training proceeds"
            elif all(d < 0 for d in steps):
                trend = "it shrinks as training proceeds"
            else:
                trend = (f"not monotone; {'larger' if rbs[-1] > rbs[0] else 'smaller'} at the last snapshot than "
                         f"at the first")
            out.append("ST's relative bias (all parameters) after " + ", ".join(f"{e} epochs: {fmt(v)}"
                       for e, v in zip(eps, rbs)) + f" — {trend}.")
        # 5b. ST vs the best unbiased estimator at M = 1 across training
        if len(eps) > 1 and hidden:
            t = hidden[0]
            parts = []
            for e in eps:
                vals = {m: cos(m, t, 1, e) for m in unb}
                bu = max(vals, key=lambda m: -math.inf if math.isnan(vals[m]) else vals[m])
                parts.append(f"after {e} epochs ST {fmt(cos('st', t, 1, e))} vs {bu} {fmt(vals[bu])}")
            out.append(f"Single-sample mean cosine on {t} across training (ST vs the best unbiased estimator): "
                       + "; ".join(parts) + ".")
        # 6. ST across layers
        if len(hidden) > 1:
            vals = [(t, cos("st", t, 1)) for t in hidden]
            worst = min(vals, key=lambda tv: tv[1])
            out.append("ST's mean cosine at M = 1 by hidden layer: " + ", ".join(f"{t} {fmt(v)}" for t, v in vals)
                       + f"; lowest on {worst[0]}.")
    # 7. deterministic proxies
    dets = [m for m in methods if is_deterministic(m)]
    if dets:
        t = hidden[0] if hidden else "all"
        parts = [f"{m} {fmt(cos(m, t, 1))} / {fmt(cos(m, 'all', 1))}" for m in dets]
        txt = ("Deterministic ST at the mode (zero variance, so the same at every M), cosine on "
               f"{t} / all parameters: " + "; ".join(parts))
        if "st" in methods:
            txt += (f"; the stochastic ST reaches {fmt(cos('st', t, 1))} / {fmt(cos('st', 'all', 1))} at M = 1 "
                    f"and {fmt(cos('st', t, m_max))} / {fmt(cos('st', 'all', m_max))} at M = {m_max}")
        out.append(txt + ".")
    # 8. Concrete temperatures
    conc = [m for m in methods if m.startswith("concrete") or m.startswith("st_concrete")]
    if conc:
        parts = [f"{m} {fmt(cos(m, 'all', 1))} -> {fmt(cos(m, 'all', m_max))}" for m in conc]
        best_hi = max(conc, key=lambda m: -math.inf if math.isnan(cos(m, "all", m_max)) else cos(m, "all", m_max))
        out.append(f"Concrete relaxations, cosine on all parameters at M = 1 -> M = {m_max}: " + "; ".join(parts)
                   + f"; best at large M: {best_hi}.")
    # 9. RMSE ranking at M = 1
    rm = {m: ix.get("protocol", ep, base, m, "all", 1, "rel_rmse") for m in methods}
    order = sorted((m for m in rm if not math.isnan(rm[m])), key=lambda m: rm[m])
    if order:
        out.append("Relative RMSE on all parameters at M = 1, lowest first: "
                   + ", ".join(f"{m} {fmt(rm[m])}" for m in order) + ".")
    # 10. sweeps
    for exp, key, label in SWEEPS:
        rows = [r for r in result.rows if r["experiment"] == exp and r["tensor"] == "all" and r["M"] == 1]
        if not rows:
            continue
        xs = sweep_values(rows, key)

        def val(m: str, v: Any) -> float:
            r = next((r for r in rows if r["estimator"] == m and r[key] == v), None)
            return math.nan if r is None else r["cos_mean"]

        parts = []
        for m in [m for m in ("st", "arm", "reinforce") if m in methods]:
            seq = [val(m, v) for v in xs]
            parts.append(f"{m} " + ", ".join(f"{fmt_key(v)}: {fmt(c)}" for v, c in zip(xs, seq)))
        if "st" in methods:
            wins = sum(1 for v in xs if all(val("st", v) > val(m, v) for m in unb))
            parts_txt = "; ".join(parts)
            out.append(f"Sweep over {label}, mean cosine on all parameters at M = 1 — {parts_txt}. ST beats every "
                       f"unbiased estimator at M = 1 in {wins} of {len(xs)} settings.")
    return out

