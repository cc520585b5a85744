"""The text of the theory report: the findings (sentences computed from the results) and
the Markdown document with its tables."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from stbin.reporting import plural, table, write_text
from stbin.theory import two_layer as tl
from stbin.theory.lab import COLLAPSE, GLOBAL_TOL, GRAD_TOL, Teacher, TheoryConfig

def findings(mc: dict[str, Any], desc: dict[str, Any], census: dict[str, Any], one: dict[str, Any], corr: dict[str, Any],
             cfg: TheoryConfig) -> list[str]:
    out = []
    rows = mc["rows"]
    zs = [r["max_z"] for r in rows if math.isfinite(r["max_z"])]
    crelu = [r for r in rows if r["quantity"] == "E g_clipped_relu"]
    out.append(
        f"Closed forms vs Monte Carlo ({plural(cfg.samples, 'sample')} per point): over {len(rows)} compared quantities the "
        f"largest component-wise |error|/s.e. is {max(zs):.2f}; the clipped-ReLU coarse gradient "
        f"(closed form derived in docs/theory.md) has max |z| = {max(r['max_z'] for r in crelu):.2f} and relative error "
        f"<= {max((r['rel_err'] for r in crelu if math.isfinite(r['rel_err'])), default=math.nan):.2e} across the "
        "points where it is nonzero, i.e. it agrees within the Monte Carlo noise."
    )
    worst_pq = max(r["max_abs_diff"] for r in mc["pq"])
    out.append(f"The polar-integral definitions of p(theta), q(theta) (Gauss-Legendre) and the erf closed form agree to {worst_pq:.1e}.")
    sp = mc["spurious"]
    out.append(
        f"At the spurious minimiser (f = {sp['loss']:.4f}, v^T v* = {sp['vtv']:.3f} < 0): ||E g_id|| = {sp['norm_identity']:.6f} "
        f"vs 2(m-1)/(sqrt(2pi)(m+1)^2)(1^T v*)^2 = {sp['norm_identity_formula']:.6f}; ||E g_relu|| = {sp['norm_relu']:.1e}, "
        f"||E g_crelu|| = {sp['norm_clipped_relu']:.1e}, ||df/dv|| = {sp['grad_v']:.1e}."
    )
    for ste in tl.STES:
        rnd = [r for r in desc["runs"] if r["ste"] == ste and r["kind"] == "random"]
        near = [r for r in desc["runs"] if r["ste"] == ste and r["kind"] != "random"][0]
        it = [r["iters_global"] for r in rnd if r["iters_global"] is not None]
        ends = ", ".join(f"{sum(r['end'] == e for r in rnd)} {e}" for e in sorted({r["end"] for r in rnd}))
        mono = "monotone" if near["monotone"] else (
            f"not monotone ({near['increases']} increases, largest {near['max_increase']:.3f})"
        )
        reached = f"f <= {GLOBAL_TOL:g} after {min(it)}-{max(it)} iterations. " if it else "none reached the global minimum. "
        out.append(
            f"Descent, {ste}, lr = {cfg.lr}, {plural(cfg.steps, 'step')}, {plural(len(rnd), 'random start')}: "
            f"{sum(r['monotone'] for r in rnd)}/{len(rnd)} monotone "
            f"(largest one-step change of f {max(r['max_increase'] for r in rnd):.1e}); ends: {ends}; {reached}"
            f"Near the spurious minimiser: f {near['initial_loss']:.4f} -> {near['final_loss']:.4f} "
            f"(max {near['max_loss']:.4f}), {mono}, ||w|| 1 -> min {near['min_w_norm']:.1e}, "
            f"final theta {near['final_angle']:.4f}, ends: {near['end']}."
        )
    for r in census["rows"]:
        out.append(
            f"Monotonicity census ({plural(r['n'], 'more random start')}, lr = {cfg.lr}), {r['ste']}: {r['monotone']}/{r['n']} monotone; "
            f"{plural(r['collapsed'], 'run')} had ||w|| fall below {COLLAPSE}; non-monotone runs: {r['nonmono_collapsed']} with that "
            f"collapse, {r['nonmono_not_collapsed']} without; ends: {r['global_min']} global, {r['spurious']} spurious, "
            f"{r['other']} other."
        )
    if census["smaller"]:
        out.append(
            "The first non-monotone ReLU start, rerun over the same horizon: "
            + "; ".join(f"lr = {r['lr']:g}: largest increase of f {r['max_increase']:.3f}, min ||w|| {r['min_w_norm']:.1e}"
                        for r in census["smaller"])
            + ". A smaller step does not remove the increase: it happens when the iterate passes near w = 0, where "
            "theta (hence f) jumps; the monotone-descent statement holds only along runs that keep ||w|| away from 0."
        )
    out.append(
        f"Sampled descent ({plural(cfg.sampled_batch, 'sample')} per step, first random start): "
        + ", ".join(f"{r['ste']} final f {r['final_loss']:.2e} ({r['increases']} of {plural(cfg.steps, 'step')} increased f)"
                    for r in desc["sampled"])
        + "."
    )
    lrs = one["lrs"]
    i3, i2 = int(np.argmin(np.abs(lrs - 1e-3))), int(np.argmin(np.abs(lrs - 1e-2)))
    for ste in tl.STES:
        d = one["by_ste"][ste]
        parts = []
        for N, e in d["per_n"].items():
            sig = np.flatnonzero(e["w_mean"] + 2 * e["w_se"] < 0)
            first = f"{lrs[sig[0]]:.3g}" if sig.size else "none"
            parts.append(f"N={N}: P(no change) {e['p_zero'][i3]:.2f} at lr {lrs[i3]:.3g} and {e['p_zero'][i2]:.2f} at "
                         f"{lrs[i2]:.3g}, mean change significantly < 0 from lr {first}")
        out.append(f"One w-only coarse step on the empirical loss, {ste}: " + "; ".join(parts) + ".")
    out.append(
        "So the empirical loss, piecewise constant in w, does not move for small steps (more so for small N); it "
        "decreases only on a coarse scale, once the step flips enough signs of z.w, while the population loss "
        "decreases for every small step (black lines in the plot)."
    )
    mins = corr["random_min"]
    out.append(
        "Correlation <E g, df/dw> over " + f"{cfg.random_points} random points (normalised by (v^T v*)^2/||w||): min "
        + ", ".join(f"{s} {mins[s]:.2e}" for s in tl.STES)
        + f" (all >= 0); the closed form of the correlation and the dot product of the closed-form gradients differ by at most {corr['route_diff']:.1e}. "
        + "At v = v*, ||w|| = 1 the cosine between E g_w and df/dw peaks at "
        + ", ".join(f"{s} {np.nanmax(corr['cosines'][s]):.3f}" for s in tl.STES)
        + ", and Monte Carlo matches the curves (max |z| "
        + ", ".join(f"{s} {np.max(np.abs(corr['mc'][s]['value'] - corr['mc'][s]['closed']) / corr['mc'][s]['se']):.2f}" for s in tl.STES)
        + ")."
    )
    return out


def write_markdown(out: Path, cfg: TheoryConfig, teacher: Teacher, mc: dict[str, Any], desc: dict[str, Any],
                   census: dict[str, Any], one: dict[str, Any], corr: dict[str, Any], elapsed: float,
                   plots: bool = True) -> Path:
    """Write ``out/report.md`` (atomically) from the experiments' results; ``plots``: link the figures."""
    cp = teacher.crit
    L: list[str] = []

    def figure(link: str) -> None:
        if plots:
            L.append(link)

    L.append("# Coarse gradients of a two-linear-layer network with a binarized ReLU\n")
    L.append(f"Generated by `stbin theory{' --quick' if cfg.quick else ''}` in {elapsed:.1f} s. "
             "Model and notation: Yin et al., \"Understanding Straight-Through Estimator in Training Activation "
             "Quantized Neural Nets\" (ICLR 2019); math as implemented: `docs/theory.md`.\n")
    L.append("## Set-up\n")
    L.append(table(["parameter", "value"], [[k, str(v)] for k, v in asdict(cfg).items()]))
    L.append("")
    L.append(f"Teacher: v* = {np.array2string(teacher.v_star, precision=3)}, (1^T v*)^2 = {cp.lhs:.3f} "
             f"< (m+1)/2 ||v*||^2 = {cp.rhs:.3f}, so the spurious minimiser exists "
             f"(f = {cp.spurious_min.loss:.4f} at theta = pi); saddle points at theta = {cp.saddle.theta:.4f} "
             f"(f = {cp.saddle.loss:.4f}). w* is a random unit vector of R^{cfg.n}.\n")
    L.append("## Findings\n")
    for s in findings(mc, desc, census, one, corr, cfg):
        L.append(f"* {s}")
    L.append("")
    # (a)
    L.append("## (a) Closed forms against Monte Carlo\n")
    L.append(f"{plural(cfg.samples, 'sample')} per point and STE. `closed` is the closed-form value (norm for vectors); "
             "errors are component-wise maxima; z = |MC - closed| / s.e.\n")
    L.append(table(["point", "theta", "||w||"], [[str(i), p["theta"], p["w_norm"]] for i, p in enumerate(mc["points"])]))
    L.append("")
    L.append(table(["point", "quantity", "closed", "max abs err", "max s.e.", "max z", "rel. err"],
                    [[str(r["point"]), r["quantity"], r["closed"], r["max_abs_err"], r["max_se"], r["max_z"], r["rel_err"]]
                     for r in mc["rows"]]))
    L.append("")
    L.append("The polar integrals for p, q (composite Gauss–Legendre) against the erf closed form, 13 angles in [0, pi]:\n")
    L.append(table(["||w||", "max |closed - quadrature|", "p(0)", "|p(0) quad - (1-exp(-1/(2||w||^2)))/sqrt(2pi)|"],
                    [[r["w_norm"], r["max_abs_diff"], r["p0"], r["p0_quad_diff"]] for r in mc["pq"]]))
    L.append("")
    # (b)
    L.append("## (b) Coarse gradient descent\n")
    L.append(f"Full-batch (expected) coarse gradients, lr = {cfg.lr}, {plural(cfg.steps, 'step')}. Random starts: v0 ~ N(0, I_m), "
             "w0 ~ N(0, I_n). Near-spurious start: the spurious minimiser with v perturbed by 0.01 N(0, I) and w = -w* "
             f"rotated by 0.05 rad. `iters f<={GLOBAL_TOL:g}`: first iteration with f <= {GLOBAL_TOL:g}; "
             f"`iters crit`: first iteration with ||(G_v, G_w)|| <= {GRAD_TOL:g}.\n")
    figure("![descent from random starts](descent_random.png)\n")
    figure("![descent near the spurious minimiser](descent_spurious.png)\n")
    L.append(table(["STE", "start", "iters f<=1e-6", "iters crit", "final f", "final theta", "final ||w||", "min ||w||",
                     "max one-step increase", "monotone", "ends at"],
                    [[r["ste"], f"{r['kind']} {r['start']}" if r["kind"] == "random" else r["kind"], r["iters_global"],
                      r["iters_critical"], r["final_loss"], r["final_angle"], r["final_w_norm"], r["min_w_norm"],
                      r["max_increase"], r["monotone"], r["end"]] for r in desc["runs"]]))
    L.append("")
    L.append(f"Sampled coarse gradient descent ({cfg.sampled_batch} fresh samples per step, first random start, same lr):\n")
    figure("![sampled descent](descent_sampled.png)\n")
    L.append(table(["STE", "final f", "final theta", "steps where f increased", "ends at"],
                    [[r["ste"], r["final_loss"], r["final_angle"], r["increases"], r["end"]] for r in desc["sampled"]]))
    L.append("")
    L.append("Learning-rate sweep (same starts):\n")
    L.append(table(["lr", "STE", "monotone (random)", "global min", "spurious min", "median iters to f<=1e-6",
                     "worst increase", "near-spurious: monotone", "ends at", "final f", "max increase"],
                    [[r["lr"], r["ste"], f"{r['monotone']}/{r['n']}", f"{r['global_min']}/{r['n']}", f"{r['spurious']}/{r['n']}",
                      r["median_iters"], r["worst_increase"], r["near_monotone"], r["near_end"], r["near_final"],
                      r["near_max_increase"]] for r in desc["sweep"]]))
    L.append("")
    L.append(f"Monotonicity census: {plural(cfg.census_starts, 'further random start')} per STE, lr = {cfg.lr}, {plural(cfg.steps, 'step')}; "
             f"'collapsed' = min ||w|| < {COLLAPSE} along the run (w passed near the origin):\n")
    L.append(table(["STE", "monotone", "collapsed", "non-monotone & collapsed", "non-monotone, not collapsed",
                     "worst increase (not collapsed)", "global min", "spurious min", "other"],
                    [[r["ste"], f"{r['monotone']}/{r['n']}", f"{r['collapsed']}/{r['n']}", r["nonmono_collapsed"],
                      r["nonmono_not_collapsed"], r["worst_increase_not_collapsed"], r["global_min"], r["spurious"], r["other"]]
                     for r in census["rows"]]))
    L.append("")
    if census["smaller"]:
        L.append("The first non-monotone ReLU start rerun with smaller learning rates over the same horizon lr x steps:\n")
        figure("![relu collapse](descent_collapse.png)\n")
        L.append(table(["lr", "steps", "max one-step increase of f", "min ||w||"],
                        [[r["lr"], r["traj"].steps, r["max_increase"], r["min_w_norm"]] for r in census["smaller"]]))
        L.append("")
    # (c)
    L.append("## (c) One step on the empirical loss\n")
    L.append(f"At v = v*, ||w|| = 1, theta = {one['theta']:.3f} (f = {one['f0']:.4f}): draw N samples, "
             "compute the empirical coarse gradient, step with lr and evaluate the *same* empirical loss; "
             f"{cfg.onestep_reps} draws per N. Black: the population loss with the expected coarse gradient.\n")
    figure("![one-step change](one_step.png)\n")
    lrs = one["lrs"]
    pick = [int(np.argmin(np.abs(lrs - a))) for a in (1e-3, 1e-2, 1e-1, 1.0, 10.0)]
    rows = []
    for ste in tl.STES:
        d = one["by_ste"][ste]
        for N, e in d["per_n"].items():
            rows.append([ste, str(N)] + [f"{e['w_mean'][i]:.1e} / {e['p_dec'][i]:.2f} / {e['p_zero'][i]:.2f}" for i in pick])
        rows.append([ste, "population"] + [f"{d['pop_w'][i]:.1e}" for i in pick])
    L.append("w-only step: mean change / P(decrease) / P(no change):\n")
    L.append(table(["STE", "N"] + [f"lr={lrs[i]:.3g}" for i in pick], rows))
    L.append("")
    # (d)
    L.append("## (d) Correlation of expected coarse and true gradients\n")
    figure("![correlation vs angle](correlation.png)\n")
    rows = []
    for ste in tl.STES:
        e = corr["mc"][ste]
        z = np.abs(e["value"] - e["closed"]) / e["se"]
        rows.append([ste, float(np.max(z)), float(np.min(e["closed"])), corr["random_min"][ste],
                     float(np.nanmax(corr["cosines"][ste]))])
    L.append(f"Curves at v = v*. Monte Carlo at {plural(cfg.corr_points, 'angle')} ({plural(cfg.corr_samples, 'sample')} each, ||w|| = 1); "
             f"minimum of ||w|| <E g, df/dw> / (v^T v*)^2 over {cfg.random_points} random points (random teacher, v, w); "
             "largest cosine between E g_w and df/dw along the curve:\n")
    L.append(table(["STE", "max z (MC vs closed)", "min closed value on MC angles", "min over random points", "max cosine"], rows))
    L.append("")
    return write_text(out / "report.md", "\n".join(L))
