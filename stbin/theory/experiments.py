"""The four experiments of the theory lab on the two-linear-layer model (see
:mod:`stbin.theory.two_layer`), each returning plain data for the plots and the report:

(a) :func:`experiment_mc`: closed forms against Monte Carlo;
(b) :func:`experiment_descent` and :func:`experiment_census`: coarse gradient descent with
    each STE (random starts, near the spurious minimiser, a learning-rate sweep, sampled
    runs, and a monotonicity census);
(c) :func:`experiment_one_step`: the one-step change of the empirical loss;
(d) :func:`experiment_correlation`: ``<E g_mu, df/dw>`` against the angle.

``tick`` is called once per unit of work (the progress bar).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from stbin.theory import two_layer as tl
from stbin.theory.lab import (
    COLLAPSE,
    GLOBAL_TOL,
    GRAD_TOL,
    MONOTONE_ATOL,
    Teacher,
    ZERO_TOL,
    TheoryConfig,
    near_spurious_start,
    w_at_angle,
)


def _vec_err(mc: np.ndarray, se: np.ndarray, cf: np.ndarray) -> dict[str, float]:
    """Errors of a Monte Carlo estimate ``mc`` (standard errors ``se``) against the closed form ``cf``.

    The relative error is ``nan`` where the closed form is zero up to rounding (norm <=
    :data:`~stbin.theory.lab.ZERO_TOL`, e.g. the ReLU coarse gradients at the spurious
    minimiser): a ratio to rounding noise means nothing.
    """
    diff = np.abs(np.asarray(mc) - np.asarray(cf))
    se = np.asarray(se)
    z = np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(diff > 0, np.inf, 0.0))
    cf_norm = float(np.linalg.norm(cf))
    return dict(
        closed=cf_norm if np.ndim(cf) else float(cf),
        max_abs_err=float(diff.max()),
        max_se=float(se.max()),
        max_z=float(z.max()),
        rel_err=float(np.linalg.norm(diff) / cf_norm) if cf_norm > ZERO_TOL else float("nan"),
    )


# --------------------------------------------------------------------------- (a)
def experiment_mc(cfg: TheoryConfig, teacher: Teacher, rng: np.random.Generator, tick: Callable[[], None]) -> dict[str, Any]:
    """Closed forms against Monte Carlo at a few points (and at the spurious minimiser)."""
    vs, ws = teacher.v_star, teacher.w_star
    specs = [(math.pi / 4, 0.5), (math.pi / 2, 1.0), (3 * math.pi / 4, 2.0), (math.pi - 0.1, 1.0)]
    points = []
    for theta, norm in specs:
        points.append(dict(label=f"theta={theta:.3f}, ||w||={norm:g}", theta=theta, w_norm=norm,
                           v=rng.standard_normal(cfg.m), w=w_at_angle(ws, theta, norm, rng)))
    sp = teacher.crit.spurious_min
    points.append(dict(label="spurious minimiser", theta=math.pi, w_norm=1.0, v=sp.v.copy(), w=-ws.copy()))
    rows: list[dict[str, Any]] = []
    for i, pt in enumerate(points):
        v, w = pt["v"], pt["w"]
        f = tl.population_loss(v, w, vs, ws)
        gv, gw = tl.population_gradient(v, w, vs, ws)
        for ste in tl.STES:
            t0 = time.perf_counter()
            est = tl.sample_coarse_gradient_stats(v, w, vs, ws, ste, cfg.samples, rng, direction=gw)
            secs = time.perf_counter() - t0
            _, eg = tl.expected_coarse_gradient(v, w, vs, ws, ste)
            if ste == "identity":  # f and df/dv do not depend on the STE: report them once
                rows.append(dict(point=i, quantity="f", **_vec_err(est.loss, est.loss_se, f)))
                rows.append(dict(point=i, quantity="df/dv = E[dl/dv]", **_vec_err(est.dv, est.dv_se, gv)))
            rows.append(dict(point=i, quantity=f"E g_{ste}", seconds=secs, **_vec_err(est.dw, est.dw_se, eg)))
            corr = tl.coarse_correlation(v, w, vs, ws, ste)
            assert est.projection is not None and est.projection_se is not None
            if np.any(gw):  # (df/dw = 0 at theta = pi: nothing to compare)
                rows.append(dict(point=i, quantity=f"<E g_{ste}, df/dw>",
                                 **_vec_err(est.projection, est.projection_se, corr)))
            tick()
    # The polar integrals for p, q (Gauss-Legendre) against the closed form.
    pq_rows = []
    for norm in (0.1, 0.5, 1.0, 2.0, 10.0):
        worst = 0.0
        for theta in np.linspace(0.0, math.pi, 13):
            a, b = tl.pq(float(theta), norm), tl.pq_quadrature(float(theta), norm)
            worst = max(worst, abs(a[0] - b[0]), abs(a[1] - b[1]))
        p0_formula = -math.expm1(-0.5 / norm**2) / math.sqrt(2 * math.pi)
        pq_rows.append(dict(w_norm=norm, max_abs_diff=worst, p0=tl.pq(0.0, norm)[0],
                            p0_quad_diff=abs(tl.pq_quadrature(0.0, norm)[0] - p0_formula)))
    m = cfg.m
    s = float(vs.sum())
    _, g_id = tl.expected_coarse_gradient(sp.v, -ws, vs, ws, "identity")
    spur = dict(
        norm_identity=float(np.linalg.norm(g_id)),
        norm_identity_formula=2 * (m - 1) / (math.sqrt(2 * math.pi) * (m + 1) ** 2) * s * s,
        norm_relu=float(np.linalg.norm(tl.expected_coarse_gradient(sp.v, -ws, vs, ws, "relu")[1])),
        norm_clipped_relu=float(np.linalg.norm(tl.expected_coarse_gradient(sp.v, -ws, vs, ws, "clipped_relu")[1])),
        grad_v=float(np.linalg.norm(tl.population_gradient(sp.v, -ws, vs, ws)[0])),
        loss=float(sp.loss or 0.0),
        vtv=float(sp.v @ vs),
    )
    return dict(points=points, rows=rows, pq=pq_rows, spurious=spur)


# --------------------------------------------------------------------------- (b)
def _summarise(traj: tl.Trajectory, teacher: Teacher) -> dict[str, Any]:
    grad = np.hypot(traj.grad_v_norm, traj.grad_w_norm)
    crit = np.flatnonzero(grad <= GRAD_TOL)
    f_sp = teacher.crit.spurious_min.loss or 0.0
    final_f, final_theta = float(traj.loss[-1]), float(traj.angle[-1])
    if final_f <= GLOBAL_TOL:
        end = "global min"
    elif abs(final_theta - math.pi) < 1e-3 and abs(final_f - f_sp) < 1e-4:
        end = "spurious min"
    elif crit.size and grad[-1] <= GRAD_TOL:
        end = "critical point"
    else:
        end = "not converged"
    incr = np.diff(traj.loss)
    return dict(
        iters_global=traj.iterations_to(GLOBAL_TOL),
        iters_critical=int(crit[0]) if crit.size else None,
        final_loss=final_f,
        initial_loss=float(traj.loss[0]),
        max_loss=float(traj.loss.max()),
        final_angle=final_theta,
        final_w_norm=float(traj.w_norm[-1]),
        min_w_norm=float(traj.w_norm.min()),
        max_increase=traj.max_increase(),
        increases=int(np.sum(incr > MONOTONE_ATOL)),
        monotone=traj.is_monotone(MONOTONE_ATOL),
        end=end,
    )


def experiment_descent(cfg: TheoryConfig, teacher: Teacher, rng: np.random.Generator, tick: Callable[[], None]) -> dict[str, Any]:
    vs, ws = teacher.v_star, teacher.w_star
    starts = [("random", rng.standard_normal(cfg.m), rng.standard_normal(cfg.n)) for _ in range(cfg.starts)]
    v_near, w_near = near_spurious_start(teacher, rng)
    starts.append(("near spurious", v_near, w_near))
    runs: list[dict[str, Any]] = []
    for ste in tl.STES:
        for k, (kind, v0, w0) in enumerate(starts):
            traj = tl.coarse_gradient_descent(v0, w0, vs, ws, ste, cfg.lr, cfg.steps)
            runs.append(dict(ste=ste, start=k, kind=kind, traj=traj, **_summarise(traj, teacher)))
            tick()
    sampled = []
    for ste in tl.STES:
        kind, v0, w0 = starts[0]
        traj = tl.coarse_gradient_descent(v0, w0, vs, ws, ste, cfg.lr, cfg.steps, n_samples=cfg.sampled_batch, generator=rng)
        sampled.append(dict(ste=ste, traj=traj, **_summarise(traj, teacher)))
        tick()
    sweep = []
    for lr in cfg.lr_sweep:
        for ste in tl.STES:
            res = [_summarise(tl.coarse_gradient_descent(v0, w0, vs, ws, ste, lr, cfg.steps), teacher) for _, v0, w0 in starts]
            rnd, near = res[:-1], res[-1]
            it = [r["iters_global"] for r in rnd if r["iters_global"] is not None]
            sweep.append(dict(
                lr=lr, ste=ste,
                monotone=sum(r["monotone"] for r in rnd), n=len(rnd),
                global_min=sum(r["end"] == "global min" for r in rnd),
                spurious=sum(r["end"] == "spurious min" for r in rnd),
                median_iters=float(np.median(it)) if it else None,
                worst_increase=max(r["max_increase"] for r in rnd),
                near_monotone=near["monotone"], near_end=near["end"], near_final=near["final_loss"],
                near_max_increase=near["max_increase"],
            ))
            tick()
    return dict(starts=starts, runs=runs, sampled=sampled, sweep=sweep)


def experiment_census(cfg: TheoryConfig, teacher: Teacher, rng: np.random.Generator, tick: Callable[[], None]) -> dict[str, Any]:
    """Monotonicity over many random starts, and whether failures coincide with ||w|| -> 0.

    For the first non-monotone ReLU run (if any) the same start is rerun with lr/4 and
    lr/16 over the same time horizon (lr * steps), to see whether a smaller step helps.
    """
    vs, ws = teacher.v_star, teacher.w_star
    starts = [(rng.standard_normal(cfg.m), rng.standard_normal(cfg.n)) for _ in range(cfg.census_starts)]
    rows = []
    first_bad: tuple[int, int] | None = None
    for ste in tl.STES:
        res = []
        for i, (v0, w0) in enumerate(starts):
            t = tl.coarse_gradient_descent(v0, w0, vs, ws, ste, cfg.lr, cfg.steps)
            r = _summarise(t, teacher)
            res.append(r)
            if ste == "relu" and not r["monotone"] and first_bad is None:
                first_bad = (i, int(np.argmax(np.diff(t.loss))))
        nonmono = [r for r in res if not r["monotone"]]
        collapsed = [r for r in res if r["min_w_norm"] < COLLAPSE]
        rows.append(dict(
            ste=ste, n=len(res), monotone=len(res) - len(nonmono), collapsed=len(collapsed),
            nonmono_collapsed=sum(r["min_w_norm"] < COLLAPSE for r in nonmono),
            nonmono_not_collapsed=sum(r["min_w_norm"] >= COLLAPSE for r in nonmono),
            worst_increase_not_collapsed=max([r["max_increase"] for r in res if r["min_w_norm"] >= COLLAPSE], default=None),
            global_min=sum(r["end"] == "global min" for r in res),
            spurious=sum(r["end"] == "spurious min" for r in res),
            other=sum(r["end"] not in ("global min", "spurious min") for r in res),
        ))
        tick()
    smaller = []
    if first_bad is not None:
        i, k = first_bad
        v0, w0 = starts[i]
        horizon = 2.0 * cfg.lr * (k + 1)
        for div in (1, 4, 16):
            lr = cfg.lr / div
            t = tl.coarse_gradient_descent(v0, w0, vs, ws, "relu", lr, int(math.ceil(horizon / lr)))
            smaller.append(dict(lr=lr, traj=t, max_increase=t.max_increase(), min_w_norm=float(t.w_norm.min())))
    tick()
    return dict(rows=rows, first_bad=first_bad, smaller=smaller)


# --------------------------------------------------------------------------- (c)
def batched_empirical_loss(Z: np.ndarray, V: np.ndarray, W: np.ndarray, v_star: np.ndarray, w_star: np.ndarray) -> np.ndarray:
    """Empirical loss on samples ``Z`` (N, m, n) at ``L`` parameter pairs ``V`` (L, m),
    ``W`` (L, n) at once; returns (L,). Equals :func:`two_layer.empirical_loss` row by row."""
    # einsum loops rather than BLAS (threaded OpenBLAS is slow for these shapes on busy cores)
    act = np.einsum("kmn,ln->kml", Z, W) > 0.0  # (N, m, L)
    y = np.einsum("kml,lm->kl", act, V)
    y_star = np.einsum("km,m->k", np.einsum("kmn,n->km", Z, w_star) > 0.0, v_star)
    r = y - y_star[:, None]
    return 0.5 * np.mean(r * r, axis=0)


def experiment_one_step(cfg: TheoryConfig, teacher: Teacher, v: np.ndarray, w: np.ndarray, rng: np.random.Generator,
                        tick: Callable[[], None]) -> dict[str, Any]:
    """One coarse step on the empirical loss of N fresh samples: change of that loss."""
    vs, ws = teacher.v_star, teacher.w_star
    lrs = np.logspace(-3, 1, cfg.onestep_lrs)
    f0 = tl.population_loss(v, w, vs, ws)
    out: dict[str, Any] = dict(lrs=lrs, v=v, w=w, f0=f0, theta=tl.angle(w, ws), by_ste={})
    for ste in tl.STES:
        gv, gw = tl.expected_coarse_gradient(v, w, vs, ws, ste)
        pop_joint = np.array([tl.population_loss(v - a * gv, w - a * gw, vs, ws) - f0 for a in lrs])
        pop_w = np.array([tl.population_loss(v, w - a * gw, vs, ws) - f0 for a in lrs])
        per_n = {}
        for N in cfg.onestep_sizes:
            dj = np.empty((cfg.onestep_reps, lrs.size))
            dw = np.empty_like(dj)
            for r in range(cfg.onestep_reps):
                Z = rng.standard_normal((N, cfg.m, cfg.n))
                ev, ew = tl.empirical_coarse_gradient(v, w, vs, ws, ste, Z)
                V = np.concatenate([v - lrs[:, None] * ev, np.broadcast_to(v, (lrs.size, cfg.m)), v[None]])
                W = np.concatenate([w - lrs[:, None] * ew, w - lrs[:, None] * ew, w[None]])
                L = batched_empirical_loss(Z, V, W, vs, ws)
                dj[r] = L[: lrs.size] - L[-1]
                dw[r] = L[lrs.size: 2 * lrs.size] - L[-1]
            R = cfg.onestep_reps
            per_n[N] = dict(
                joint_mean=dj.mean(0), joint_se=dj.std(0, ddof=1) / math.sqrt(R),
                w_mean=dw.mean(0), w_se=dw.std(0, ddof=1) / math.sqrt(R),
                p_dec=(dw < 0).mean(0), p_zero=(dw == 0).mean(0), p_inc=(dw > 0).mean(0),
                joint_p_dec=(dj < 0).mean(0),
            )
            tick()
        out["by_ste"][ste] = dict(pop_joint=pop_joint, pop_w=pop_w, per_n=per_n)
    return out


# --------------------------------------------------------------------------- (d)
def experiment_correlation(cfg: TheoryConfig, teacher: Teacher, v: np.ndarray, rng: np.random.Generator,
                           tick: Callable[[], None]) -> dict[str, Any]:
    vs, ws = teacher.v_star, teacher.w_star
    thetas = np.linspace(0.0, math.pi, 181)
    u = w_at_angle(ws, math.pi / 2, 1.0, rng)  # a fixed direction orthogonal to w*
    k = float(v @ vs) ** 2
    curves: dict[str, dict[float, np.ndarray]] = {ste: {} for ste in tl.STES}
    cosines: dict[str, np.ndarray] = {}
    route_diff = 0.0
    for ste in tl.STES:
        for norm in ((0.5, 1.0, 2.0) if ste == "clipped_relu" else (1.0,)):
            vals, coss = [], []
            for th in thetas:
                w = norm * (math.cos(th) * ws + math.sin(th) * u)
                c = tl.coarse_correlation(v, w, vs, ws, ste)
                _, gw = tl.population_gradient(v, w, vs, ws)
                _, eg = tl.expected_coarse_gradient(v, w, vs, ws, ste)
                route_diff = max(route_diff, abs(c - float(eg @ gw)) / max(k / norm, 1e-300))
                vals.append(c * norm / k)
                den = np.linalg.norm(eg) * np.linalg.norm(gw)
                coss.append(float(eg @ gw) / den if den > 0 else np.nan)
            curves[ste][norm] = np.array(vals)
            if norm == 1.0:
                cosines[ste] = np.array(coss)
    mc_thetas = np.linspace(0.0, math.pi, cfg.corr_points + 2)[1:-1]
    mc: dict[str, dict[str, np.ndarray]] = {}
    for ste in tl.STES:
        vals, ses = [], []
        for th in mc_thetas:
            w = math.cos(th) * ws + math.sin(th) * u
            _, gw = tl.population_gradient(v, w, vs, ws)
            est = tl.sample_coarse_gradient_stats(v, w, vs, ws, ste, cfg.corr_samples, rng, direction=gw)
            assert est.projection is not None and est.projection_se is not None
            vals.append(est.projection / k)
            ses.append(est.projection_se / k)
        mc[ste] = dict(value=np.array(vals), se=np.array(ses),
                       closed=np.array([tl.coarse_correlation(v, math.cos(t) * ws + math.sin(t) * u, vs, ws, ste) / k for t in mc_thetas]))
        tick()
    # Inequalities on random points (random teacher, v, w; ||w|| log-uniform in [0.1, 10]).
    mins = {ste: math.inf for ste in tl.STES}
    worst_route = 0.0
    for _ in range(cfg.random_points):
        m_vs = rng.standard_normal(cfg.m)
        m_ws = rng.standard_normal(cfg.n)
        v_r = rng.standard_normal(cfg.m)
        w_r = rng.standard_normal(cfg.n)
        w_r *= 10 ** rng.uniform(-1, 1) / np.linalg.norm(w_r)
        _, gw = tl.population_gradient(v_r, w_r, m_vs, m_ws)
        scale = float(v_r @ m_vs) ** 2 / np.linalg.norm(w_r) + 1e-300
        for ste in tl.STES:
            _, eg = tl.expected_coarse_gradient(v_r, w_r, m_vs, m_ws, ste)
            d = float(eg @ gw)
            mins[ste] = min(mins[ste], d / scale)
            worst_route = max(worst_route, abs(d - tl.coarse_correlation(v_r, w_r, m_vs, m_ws, ste)) / scale)
    tick()
    return dict(thetas=thetas, curves=curves, cosines=cosines, mc_thetas=mc_thetas, mc=mc,
                route_diff=max(route_diff, worst_route), random_min=mins, v=v)
