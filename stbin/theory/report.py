"""The experiments behind ``stbin theory`` and the Markdown report they produce.

Four experiments on the two-linear-layer model of SPEC B1 (see :mod:`stbin.theory.two_layer`):

(a) closed forms against Monte Carlo (values, gradients, coarse gradients, correlations,
    the SPEC integrals for ``p, q`` against their closed form);
(b) coarse gradient descent with each STE from random starts and from near the spurious
    minimiser (plus a learning-rate sweep and sampled runs);
(c) the one-step change of the empirical loss against the learning rate for several
    sample sizes;
(d) ``<E g_mu, df/dw>`` against the angle for each STE.

Everything is seeded by ``TheoryConfig.seed``. Plotting needs matplotlib (imported lazily).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from stbin.theory import two_layer as tl

#: Loss below which a run counts as having reached the global minimum.
GLOBAL_TOL = 1e-6
#: Combined gradient norm below which a run counts as converged to a critical point.
GRAD_TOL = 1e-6
#: A one-step loss increase larger than this is not rounding (losses here are O(1)).
MONOTONE_ATOL = 1e-12

_QUICK: dict[str, Any] = dict(
    samples=20_000,
    steps=400,
    starts=2,
    lr_sweep=(0.2, 1.0),
    sampled_batch=200,
    onestep_sizes=(10, 100, 1000),
    onestep_reps=30,
    onestep_lrs=9,
    corr_samples=20_000,
    corr_points=5,
    random_points=200,
    census_starts=8,
)


@dataclass
class TheoryConfig:
    """Sizes of the experiments (defaults: the full run; :meth:`preset` for ``--quick``)."""

    m: int = 5
    n: int = 8
    samples: int = 1_000_000  #: Monte Carlo samples per check in (a)
    steps: int = 3000  #: iterations of coarse gradient descent in (b)
    lr: float = 0.1  #: learning rate of the main descent experiment
    starts: int = 5  #: random starting points in (b)
    seed: int = 0
    lr_sweep: tuple[float, ...] = (0.05, 0.2, 1.0)
    sampled_batch: int = 1000  #: samples per step of the sampled descent runs
    onestep_sizes: tuple[int, ...] = (10, 100, 1000, 10_000)
    onestep_reps: int = 200
    onestep_lrs: int = 17  #: learning rates, log-spaced in [1e-3, 10]
    corr_samples: int = 100_000  #: Monte Carlo samples per angle in (d)
    corr_points: int = 7
    random_points: int = 2000  #: random points for the correlation inequalities
    census_starts: int = 40  #: random starts of the monotonicity census in (b)
    quick: bool = False

    @classmethod
    def preset(cls, quick: bool = False, **overrides: Any) -> "TheoryConfig":
        """The full or quick configuration, with ``overrides`` (None values ignored)."""
        base = cls(quick=quick, **(_QUICK if quick else {}))
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self) -> None:
        for name in ("m", "n"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 2:
                raise ValueError(f"{name} must be an integer >= 2 (the spurious minimiser and saddles need it), got {val!r}")
        for name in ("samples", "steps", "starts", "sampled_batch", "onestep_reps", "corr_samples", "random_points",
                     "census_starts"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive integer, got {val!r}")
        if self.corr_points < 2 or self.onestep_lrs < 2:
            raise ValueError("corr_points and onestep_lrs must be >= 2")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")


# --------------------------------------------------------------------------- set-up
@dataclass
class Teacher:
    v_star: np.ndarray
    w_star: np.ndarray
    crit: tl.CriticalPoints


def make_teacher(m: int, n: int, rng: np.random.Generator, ratio: float = 0.5) -> Teacher:
    """``v* = u + c 1`` with ``u`` a Gaussian vector orthogonal to ``1`` and ``c`` chosen so
    that ``(1^T v*)^2 = ratio * (m+1)/2 ||v*||^2`` (the spurious minimiser then exists);
    ``w*`` a uniformly random unit vector."""
    u = rng.standard_normal(m)
    u -= u.mean()
    if not np.any(u):  # pragma: no cover - probability zero
        u[0], u[-1] = 1.0, -1.0
    uu = float(u @ u)
    c = math.sqrt(ratio * (m + 1) * uu / (2.0 * m * m - ratio * (m + 1) * m))
    v_star = u + (c if rng.random() < 0.5 else -c) * np.ones(m)
    w_star = rng.standard_normal(n)
    w_star /= np.linalg.norm(w_star)
    return Teacher(v_star, w_star, tl.critical_points(v_star, w_star))


def w_at_angle(w_star: np.ndarray, theta: float, norm: float, rng: np.random.Generator) -> np.ndarray:
    """A vector of norm ``norm`` at angle ``theta`` from the unit vector ``w_star``."""
    u = rng.standard_normal(w_star.shape[0])
    u -= (u @ w_star) * w_star
    u /= np.linalg.norm(u)
    return norm * (math.cos(theta) * w_star + math.sin(theta) * u)


def near_spurious_start(teacher: Teacher, rng: np.random.Generator, angle: float = 0.05, dv: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """The spurious minimiser perturbed: ``v`` by ``dv`` Gaussian noise, ``w = -w*`` rotated
    by ``angle`` radians (``||w|| = 1``)."""
    v0 = teacher.crit.spurious_min.v + dv * rng.standard_normal(teacher.v_star.shape[0])
    w0 = w_at_angle(teacher.w_star, math.pi - angle, 1.0, rng)
    return v0, w0


def _vec_err(mc: np.ndarray, se: np.ndarray, cf: np.ndarray) -> dict[str, float]:
    diff = np.abs(np.asarray(mc) - np.asarray(cf))
    se = np.asarray(se)
    z = np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(diff > 0, np.inf, 0.0))
    cf_norm = float(np.linalg.norm(cf))
    return dict(
        closed=cf_norm if np.ndim(cf) else float(cf),
        max_abs_err=float(diff.max()),
        max_se=float(se.max()),
        max_z=float(z.max()),
        rel_err=float(np.linalg.norm(diff) / cf_norm) if cf_norm > 0 else float("nan"),
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
    # SPEC's p, q integrals (Gauss-Legendre) against the closed form.
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


COLLAPSE = 0.05  #: min ||w|| below which a run counts as having passed (near) the origin


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


# --------------------------------------------------------------------------- plots
_COLORS = {"identity": "tab:red", "relu": "tab:blue", "clipped_relu": "tab:green"}
_STYLES = {"identity": "-", "relu": "--", "clipped_relu": "-"}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("the theory report needs matplotlib for its plots: pip install 'stbin[reports]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_descent(plt: Any, runs: list[dict[str, Any]], kind: str, title: str, path: Path, log_loss: bool = True) -> None:
    """Loss, angle and ||w|| against iteration + 1 (log axis: early and late phases both show)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for r in runs:
        if r["kind"] != kind:
            continue
        t = r["traj"]
        c = _COLORS[r["ste"]]
        it = np.arange(1, t.loss.size + 1)
        loss = np.maximum(t.loss, 1e-17) if log_loss else t.loss
        ls = _STYLES[r["ste"]]
        axes[0].plot(it, loss, color=c, ls=ls, lw=1.2, alpha=0.8, label=r["ste"])
        axes[1].plot(it, t.angle, color=c, ls=ls, lw=1.2, alpha=0.8)
        axes[2].plot(it, t.w_norm, color=c, ls=ls, lw=1.2, alpha=0.8)
    for ax in axes:
        ax.set_xscale("log")
    if log_loss:
        axes[0].set_yscale("log")
    axes[2].set_yscale("log")
    axes[0].set(xlabel="iteration + 1", ylabel="population loss f" + (" (log)" if log_loss else ""), title="loss")
    axes[1].set(xlabel="iteration + 1", ylabel="angle theta(w, w*) [rad]", title="angle")
    axes[1].axhline(math.pi, color="gray", ls=":", lw=0.8)
    axes[2].set(xlabel="iteration + 1", ylabel="||w|| (log)", title="filter norm")
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    axes[0].legend(uniq.values(), uniq.keys())
    fig.suptitle(title)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.13, top=0.86, wspace=0.25)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sampled(plt: Any, sampled: list[dict[str, Any]], batch: int, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in sampled:
        ax.semilogy(np.maximum(r["traj"].loss, 1e-17), color=_COLORS[r["ste"]], lw=1, label=r["ste"])
    ax.set(xlabel="iteration", ylabel="population loss f (log)",
           title=f"sampled coarse gradient descent, {batch} samples per step")
    ax.legend()
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_collapse(plt: Any, smaller: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for r in smaller:
        t = r["traj"]
        time_axis = r["lr"] * np.arange(t.loss.size)
        lab = f"lr={r['lr']:g}"
        axes[0].plot(time_axis, t.loss, label=lab)
        axes[1].plot(time_axis, t.angle, label=lab)
        axes[2].semilogy(time_axis, t.w_norm, label=lab)
    axes[0].set(xlabel="lr x iteration", ylabel="population loss f", title="loss")
    axes[1].set(xlabel="lr x iteration", ylabel="angle theta [rad]", title="angle")
    axes[2].set(xlabel="lr x iteration", ylabel="||w|| (log)", title="filter norm")
    axes[0].legend()
    fig.suptitle("ReLU STE: a random start whose iterates pass near w = 0, at three learning rates")
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.13, top=0.86, wspace=0.25)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_one_step(plt: Any, res: dict[str, Any], path: Path) -> None:
    lrs = res["lrs"]
    fig, axes = plt.subplots(3, 3, figsize=(15, 11), sharex=True)
    cmap = plt.get_cmap("viridis")
    for j, ste in enumerate(tl.STES):
        d = res["by_ste"][ste]
        sizes = sorted(d["per_n"])
        for i, N in enumerate(sizes):
            col = cmap(i / max(len(sizes) - 1, 1))
            e = d["per_n"][N]
            for row, key in ((0, "joint"), (1, "w")):
                mean, se = e[f"{key}_mean"], e[f"{key}_se"]
                axes[row, j].plot(lrs, mean, color=col, marker=".", label=f"N={N}")
                axes[row, j].fill_between(lrs, mean - 2 * se, mean + 2 * se, color=col, alpha=0.15)
            axes[2, j].plot(lrs, e["p_dec"], color=col, marker=".", label=f"P(decrease), N={N}")
            axes[2, j].plot(lrs, e["p_zero"], color=col, ls="--", label=f"P(no change), N={N}")
        axes[0, j].plot(lrs, d["pop_joint"], color="black", lw=2, label="population f, E-gradient")
        axes[1, j].plot(lrs, d["pop_w"], color="black", lw=2, label="population f, E-gradient")
        for row in (0, 1):
            axes[row, j].set_xscale("log")
            axes[row, j].set_yscale("symlog", linthresh=1e-5)
            axes[row, j].axhline(0, color="gray", lw=0.8)
        axes[0, j].set_title(f"{ste}: step in (v, w)")
        axes[1, j].set_title(f"{ste}: step in w only")
        axes[2, j].set_title(f"{ste}: w-only step, sign of the change")
        axes[2, j].set_xscale("log")
        axes[2, j].set_xlabel("learning rate")
        axes[2, j].set_ylim(-0.02, 1.02)
    axes[0, 0].set_ylabel("mean change of empirical loss (symlog)")
    axes[1, 0].set_ylabel("mean change of empirical loss (symlog)")
    axes[2, 0].set_ylabel("fraction of draws")
    axes[0, 0].legend(fontsize=8)
    axes[2, 0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"one coarse-gradient step on the empirical loss of N samples "
                 f"(theta = {res['theta']:.2f}, f = {res['f0']:.3f}); band: mean +- 2 s.e.")
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.06, top=0.93, wspace=0.22, hspace=0.25)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_correlation(plt: Any, res: dict[str, Any], path: Path) -> None:
    th = res["thetas"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ste in tl.STES:
        for norm, vals in res["curves"][ste].items():
            ls = {0.5: ":", 1.0: "-", 2.0: "--"}[norm]
            axes[0].plot(th, vals, color=_COLORS[ste], ls=ls, label=f"{ste}, ||w||={norm:g} (closed form)")
        mc = res["mc"][ste]
        axes[0].errorbar(res["mc_thetas"], mc["value"], yerr=2 * mc["se"], fmt="o", ms=4, capsize=3,
                         color=_COLORS[ste], label=f"{ste} Monte Carlo (+-2 s.e.)")
        axes[1].plot(th, res["cosines"][ste], color=_COLORS[ste], ls=_STYLES[ste], label=ste)
    axes[0].set(xlabel="theta(w, w*) [rad]", ylabel="||w|| <E g, df/dw> / (v^T v*)^2",
                title="correlation of expected coarse and true gradient (||w||=1 unless noted)")
    axes[0].axhline(0, color="gray", lw=0.8)
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="theta(w, w*) [rad]", ylabel="cos angle(E g_w, df/dw)",
                title="cosine between expected coarse and true w-gradient (||w||=1)")
    axes[1].axhline(0, color="gray", lw=0.8)
    axes[1].legend()
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.12, top=0.92, wspace=0.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- markdown
def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return str(x)
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{digits + 1}g}"
    return f"{x:.{digits - 1}e}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return "\n".join(lines)


def findings(mc: dict[str, Any], desc: dict[str, Any], census: dict[str, Any], one: dict[str, Any], corr: dict[str, Any],
             cfg: TheoryConfig) -> list[str]:
    out = []
    rows = mc["rows"]
    zs = [r["max_z"] for r in rows if math.isfinite(r["max_z"])]
    crelu = [r for r in rows if r["quantity"] == "E g_clipped_relu"]
    out.append(
        f"Closed forms vs Monte Carlo ({cfg.samples} samples per point): over {len(rows)} compared quantities the "
        f"largest component-wise |error|/s.e. is {max(zs):.2f}; the clipped-ReLU coarse gradient "
        f"(SPEC formula) has max |z| = {max(r['max_z'] for r in crelu):.2f} and relative error "
        f"<= {max(r['rel_err'] for r in crelu if math.isfinite(r['rel_err'])):.2e} across the points, i.e. it agrees within the Monte Carlo noise."
    )
    worst_pq = max(r["max_abs_diff"] for r in mc["pq"])
    out.append(f"SPEC's integral definitions of p(theta), q(theta) (Gauss-Legendre) and the erf closed form agree to {worst_pq:.1e}.")
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
            f"Descent, {ste}, lr = {cfg.lr}, {cfg.steps} steps, {len(rnd)} random starts: "
            f"{sum(r['monotone'] for r in rnd)}/{len(rnd)} monotone "
            f"(largest one-step change of f {max(r['max_increase'] for r in rnd):.1e}); ends: {ends}; {reached}"
            f"Near the spurious minimiser: f {near['initial_loss']:.4f} -> {near['final_loss']:.4f} "
            f"(max {near['max_loss']:.4f}), {mono}, ||w|| 1 -> min {near['min_w_norm']:.1e}, "
            f"final theta {near['final_angle']:.4f}, ends: {near['end']}."
        )
    for r in census["rows"]:
        out.append(
            f"Monotonicity census ({r['n']} more random starts, lr = {cfg.lr}), {r['ste']}: {r['monotone']}/{r['n']} monotone; "
            f"{r['collapsed']} runs had ||w|| fall below {COLLAPSE}; non-monotone runs: {r['nonmono_collapsed']} with that "
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
        f"Sampled descent ({cfg.sampled_batch} samples per step, first random start): "
        + ", ".join(f"{r['ste']} final f {r['final_loss']:.2e} ({r['increases']} of {cfg.steps} steps increased f)"
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
                   census: dict[str, Any], one: dict[str, Any], corr: dict[str, Any], elapsed: float) -> Path:
    cp = teacher.crit
    L: list[str] = []
    L.append("# Coarse gradients of a two-linear-layer network with a binarized ReLU\n")
    L.append(f"Generated by `stbin theory{' --quick' if cfg.quick else ''}` in {elapsed:.1f} s. "
             "Model and notation: SPEC B1; math as implemented: `docs/theory.md`.\n")
    L.append("## Set-up\n")
    L.append(_table(["parameter", "value"], [[k, str(v)] for k, v in asdict(cfg).items()]))
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
    L.append(f"{cfg.samples} samples per point and STE. `closed` is the closed-form value (norm for vectors); "
             "errors are component-wise maxima; z = |MC - closed| / s.e.\n")
    L.append(_table(["point", "theta", "||w||"], [[str(i), p["theta"], p["w_norm"]] for i, p in enumerate(mc["points"])]))
    L.append("")
    L.append(_table(["point", "quantity", "closed", "max abs err", "max s.e.", "max z", "rel. err"],
                    [[str(r["point"]), r["quantity"], r["closed"], r["max_abs_err"], r["max_se"], r["max_z"], r["rel_err"]]
                     for r in mc["rows"]]))
    L.append("")
    L.append("SPEC's integrals for p, q (composite Gauss–Legendre) against the erf closed form, 13 angles in [0, pi]:\n")
    L.append(_table(["||w||", "max |closed - quadrature|", "p(0)", "|p(0) quad - (1-exp(-1/(2||w||^2)))/sqrt(2pi)|"],
                    [[r["w_norm"], r["max_abs_diff"], r["p0"], r["p0_quad_diff"]] for r in mc["pq"]]))
    L.append("")
    # (b)
    L.append("## (b) Coarse gradient descent\n")
    L.append(f"Full-batch (expected) coarse gradients, lr = {cfg.lr}, {cfg.steps} steps. Random starts: v0 ~ N(0, I_m), "
             "w0 ~ N(0, I_n). Near-spurious start: the spurious minimiser with v perturbed by 0.01 N(0, I) and w = -w* "
             f"rotated by 0.05 rad. `iters f<={GLOBAL_TOL:g}`: first iteration with f <= {GLOBAL_TOL:g}; "
             f"`iters crit`: first iteration with ||(G_v, G_w)|| <= {GRAD_TOL:g}.\n")
    L.append("![descent from random starts](descent_random.png)\n")
    L.append("![descent near the spurious minimiser](descent_spurious.png)\n")
    L.append(_table(["STE", "start", "iters f<=1e-6", "iters crit", "final f", "final theta", "final ||w||", "min ||w||",
                     "max one-step increase", "monotone", "ends at"],
                    [[r["ste"], f"{r['kind']} {r['start']}" if r["kind"] == "random" else r["kind"], r["iters_global"],
                      r["iters_critical"], r["final_loss"], r["final_angle"], r["final_w_norm"], r["min_w_norm"],
                      r["max_increase"], r["monotone"], r["end"]] for r in desc["runs"]]))
    L.append("")
    L.append(f"Sampled coarse gradient descent ({cfg.sampled_batch} fresh samples per step, first random start, same lr):\n")
    L.append("![sampled descent](descent_sampled.png)\n")
    L.append(_table(["STE", "final f", "final theta", "steps where f increased", "ends at"],
                    [[r["ste"], r["final_loss"], r["final_angle"], r["increases"], r["end"]] for r in desc["sampled"]]))
    L.append("")
    L.append("Learning-rate sweep (same starts):\n")
    L.append(_table(["lr", "STE", "monotone (random)", "global min", "spurious min", "median iters to f<=1e-6",
                     "worst increase", "near-spurious: monotone", "ends at", "final f", "max increase"],
                    [[r["lr"], r["ste"], f"{r['monotone']}/{r['n']}", f"{r['global_min']}/{r['n']}", f"{r['spurious']}/{r['n']}",
                      r["median_iters"], r["worst_increase"], r["near_monotone"], r["near_end"], r["near_final"],
                      r["near_max_increase"]] for r in desc["sweep"]]))
    L.append("")
    L.append(f"Monotonicity census: {cfg.census_starts} further random starts per STE, lr = {cfg.lr}, {cfg.steps} steps; "
             f"'collapsed' = min ||w|| < {COLLAPSE} along the run (w passed near the origin):\n")
    L.append(_table(["STE", "monotone", "collapsed", "non-monotone & collapsed", "non-monotone, not collapsed",
                     "worst increase (not collapsed)", "global min", "spurious min", "other"],
                    [[r["ste"], f"{r['monotone']}/{r['n']}", f"{r['collapsed']}/{r['n']}", r["nonmono_collapsed"],
                      r["nonmono_not_collapsed"], r["worst_increase_not_collapsed"], r["global_min"], r["spurious"], r["other"]]
                     for r in census["rows"]]))
    L.append("")
    if census["smaller"]:
        L.append("The first non-monotone ReLU start rerun with smaller learning rates over the same horizon lr x steps:\n")
        L.append("![relu collapse](descent_collapse.png)\n")
        L.append(_table(["lr", "steps", "max one-step increase of f", "min ||w||"],
                        [[r["lr"], r["traj"].steps, r["max_increase"], r["min_w_norm"]] for r in census["smaller"]]))
        L.append("")
    # (c)
    L.append("## (c) One step on the empirical loss\n")
    L.append(f"At v = v*, ||w|| = 1, theta = {one['theta']:.3f} (f = {one['f0']:.4f}): draw N samples, "
             "compute the empirical coarse gradient, step with lr and evaluate the *same* empirical loss; "
             f"{cfg.onestep_reps} draws per N. Black: the population loss with the expected coarse gradient.\n")
    L.append("![one-step change](one_step.png)\n")
    lrs = one["lrs"]
    pick = [int(np.argmin(np.abs(lrs - a))) for a in (1e-3, 1e-2, 1e-1, 1.0, 10.0)]
    rows = []
    for ste in tl.STES:
        d = one["by_ste"][ste]
        for N, e in d["per_n"].items():
            rows.append([ste, str(N)] + [f"{e['w_mean'][i]:.1e} / {e['p_dec'][i]:.2f} / {e['p_zero'][i]:.2f}" for i in pick])
        rows.append([ste, "population"] + [f"{d['pop_w'][i]:.1e}" for i in pick])
    L.append("w-only step: mean change / P(decrease) / P(no change):\n")
    L.append(_table(["STE", "N"] + [f"lr={lrs[i]:.3g}" for i in pick], rows))
    L.append("")
    # (d)
    L.append("## (d) Correlation of expected coarse and true gradients\n")
    L.append("![correlation vs angle](correlation.png)\n")
    rows = []
    for ste in tl.STES:
        e = corr["mc"][ste]
        z = np.abs(e["value"] - e["closed"]) / e["se"]
        rows.append([ste, float(np.max(z)), float(np.min(e["closed"])), corr["random_min"][ste],
                     float(np.nanmax(corr["cosines"][ste]))])
    L.append(f"Curves at v = v*. Monte Carlo at {cfg.corr_points} angles ({cfg.corr_samples} samples each, ||w|| = 1); "
             f"minimum of ||w|| <E g, df/dw> / (v^T v*)^2 over {cfg.random_points} random points (random teacher, v, w); "
             "largest cosine between E g_w and df/dw along the curve:\n")
    L.append(_table(["STE", "max z (MC vs closed)", "min closed value on MC angles", "min over random points", "max cosine"], rows))
    L.append("")
    path = out / "report.md"
    path.write_text("\n".join(L) + "\n")
    return path


# --------------------------------------------------------------------------- driver
def run_report(cfg: TheoryConfig, out: Path, progress: bool | None = None) -> Path:
    """Run all experiments and write ``report.md`` and the PNGs into ``out``."""
    from tqdm.auto import tqdm

    cfg.validate()
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    teacher = make_teacher(cfg.m, cfg.n, rng)
    n_starts = cfg.starts + 1
    total = (5 * 3) + (3 * n_starts + 3 + 3 * len(cfg.lr_sweep)) + 4 + 3 * len(cfg.onestep_sizes) + 4
    bar = tqdm(total=total, desc="stbin theory", disable=None if progress is None else not progress)

    def tick() -> None:
        bar.update(1)

    try:
        bar.set_postfix_str("(a) Monte Carlo")
        mc = experiment_mc(cfg, teacher, rng, tick)
        bar.set_postfix_str("(b) descent")
        desc = experiment_descent(cfg, teacher, rng, tick)
        census = experiment_census(cfg, teacher, rng, tick)
        bar.set_postfix_str("(c) one step")
        # (c) at v = v*, theta = pi/2, ||w|| = 1: the w-part of the coarse step matters there.
        one = experiment_one_step(cfg, teacher, teacher.v_star.copy(), w_at_angle(teacher.w_star, math.pi / 2, 1.0, rng),
                                  rng, tick)
        bar.set_postfix_str("(d) correlation")
        corr = experiment_correlation(cfg, teacher, teacher.v_star.copy(), rng, tick)  # v = v*: (v^T v*)^2 large
    finally:
        bar.close()
    plot_descent(plt, desc["runs"], "random", f"coarse gradient descent from {cfg.starts} random starts (lr={cfg.lr})",
                 out / "descent_random.png")
    plot_descent(plt, desc["runs"], "near spurious", f"coarse gradient descent from near the spurious minimiser (lr={cfg.lr})",
                 out / "descent_spurious.png", log_loss=False)
    plot_sampled(plt, desc["sampled"], cfg.sampled_batch, out / "descent_sampled.png")
    if census["smaller"]:
        plot_collapse(plt, census["smaller"], out / "descent_collapse.png")
    plot_one_step(plt, one, out / "one_step.png")
    plot_correlation(plt, corr, out / "correlation.png")
    return write_markdown(out, cfg, teacher, mc, desc, census, one, corr, time.perf_counter() - t0)
