"""Properties of stbin.theory.two_layer (Yin et al., ICLR 2019): closed forms against Monte Carlo and
finite differences, the correlation inequalities, critical points, coarse gradient descent,
and the input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stbin.theory import two_layer as tl

STES = tuple(tl.STES)  # every STE of the theory lab
K_SE = 5.0  # Monte Carlo tolerance: |MC - closed| <= K_SE * standard error, component-wise


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def w_at(w_star: np.ndarray, theta: float, norm: float, rng: np.random.Generator) -> np.ndarray:
    u = rng.standard_normal(w_star.shape[0])
    u -= (u @ w_star) * w_star
    u = unit(u)
    return norm * (math.cos(theta) * w_star + math.sin(theta) * u)


@pytest.fixture
def problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.standard_normal(5), unit(rng.standard_normal(8))


def assert_within_se(mc: np.ndarray, se: np.ndarray, closed: np.ndarray, what: str) -> None:
    mc, se, closed = np.atleast_1d(mc), np.atleast_1d(se), np.atleast_1d(closed)
    assert np.all(se > 0), what
    z = np.abs(mc - closed) / se
    assert z.max() <= K_SE, f"{what}: max |MC - closed|/se = {z.max():.2f} (MC {mc}, closed {closed}, se {se})"


# --------------------------------------------------------------------------- Monte Carlo
@pytest.mark.parametrize("theta,norm", [(0.4, 0.5), (1.6, 1.0), (2.6, 2.0)])
@pytest.mark.parametrize("ste", STES)
def test_closed_forms_match_monte_carlo(problem, ste, theta, norm):
    vs, ws = problem
    rng = np.random.default_rng(int(100 * theta) + len(ste))
    v, w = rng.standard_normal(5), w_at(ws, theta, norm, rng)
    est = tl.sample_coarse_gradient_stats(v, w, vs, ws, ste, 200_000, generator=rng)
    dv, dw = tl.expected_coarse_gradient(v, w, vs, ws, ste)
    assert_within_se(est.loss, est.loss_se, tl.population_loss(v, w, vs, ws), "f")
    assert_within_se(est.dv, est.dv_se, tl.population_gradient(v, w, vs, ws)[0], "df/dv")
    assert_within_se(est.dv, est.dv_se, dv, "E dl/dv")
    assert_within_se(est.dw, est.dw_se, dw, f"E g_{ste}")


@pytest.mark.parametrize("norm", [0.1, 0.7, 3.0, 10.0])
@pytest.mark.parametrize("theta", [0.0, 0.3, 2.0, math.pi])
def test_clipped_relu_formula_depends_on_norm_as_monte_carlo_says(norm, theta):
    """The derived clipped-ReLU formula (not in the paper): checked over ||w|| and at theta = 0, pi."""
    rng = np.random.default_rng(int(10 * norm) + int(10 * theta))
    vs, ws = rng.standard_normal(4), unit(rng.standard_normal(6))
    v, w = rng.standard_normal(4), w_at(ws, theta, norm, rng)
    est = tl.sample_coarse_gradient_stats(v, w, vs, ws, "clipped_relu", 100_000, generator=rng)
    _, dw = tl.expected_coarse_gradient(v, w, vs, ws, "clipped_relu")
    assert_within_se(est.dw, est.dw_se, dw, f"E g_crelu at ||w||={norm}, theta={theta}")


def test_monte_carlo_check_has_power():
    """The same test rejects a wrong formula: the ReLU expectation in place of the clipped one."""
    rng = np.random.default_rng(3)
    vs, ws = rng.standard_normal(5), unit(rng.standard_normal(8))
    v, w = rng.standard_normal(5), w_at(ws, 1.2, 1.0, rng)
    est = tl.sample_coarse_gradient_stats(v, w, vs, ws, "clipped_relu", 200_000, generator=rng)
    _, wrong = tl.expected_coarse_gradient(v, w, vs, ws, "relu")
    assert np.max(np.abs(est.dw - wrong) / est.dw_se) > 20


def test_projection_estimate_matches_closed_correlation(problem):
    vs, ws = problem
    rng = np.random.default_rng(11)
    v, w = rng.standard_normal(5), w_at(ws, 1.0, 1.3, rng)
    _, gw = tl.population_gradient(v, w, vs, ws)
    for ste in STES:
        est = tl.sample_coarse_gradient_stats(v, w, vs, ws, ste, 100_000, generator=rng, direction=gw)
        assert est.projection is not None and est.projection_se is not None
        assert abs(est.projection - tl.coarse_correlation(v, w, vs, ws, ste)) <= K_SE * est.projection_se
        # The projection of the mean is the mean of the projections.
        assert est.projection == pytest.approx(float(est.dw @ gw), rel=1e-9, abs=1e-12)


def test_sampling_is_reproducible_and_chunking_does_not_change_the_estimate(problem):
    vs, ws = problem
    v, w = np.ones(5), np.arange(1.0, 9.0)
    a = tl.sample_coarse_gradient(v, w, vs, ws, "relu", 5000, generator=42)
    b = tl.sample_coarse_gradient(v, w, vs, ws, "relu", 5000, generator=np.random.default_rng(42))
    c = tl.sample_coarse_gradient_stats(v, w, vs, ws, "relu", 5000, generator=42, chunk_size=37)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(c.dw, a[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c.dv, a[0], rtol=1e-12, atol=1e-14)
    for out in a:
        assert out.dtype == np.float64
    # A Generator is used in place: two calls give different draws.
    g = np.random.default_rng(0)
    assert not np.array_equal(tl.sample_coarse_gradient(v, w, vs, ws, "relu", 100, g)[1],
                              tl.sample_coarse_gradient(v, w, vs, ws, "relu", 100, g)[1])


def test_sample_equals_empirical_mean_on_the_same_draws(problem):
    vs, ws = problem
    v, w = np.linspace(-1, 1, 5), np.linspace(1, 2, 8)
    Z = np.random.default_rng(5).standard_normal((300, 5, 8))
    for ste in STES:
        dv, dw = tl.empirical_coarse_gradient(v, w, vs, ws, ste, Z)
        est = tl.sample_coarse_gradient_stats(v, w, vs, ws, ste, 300, generator=np.random.default_rng(5))
        np.testing.assert_allclose(dv, est.dv, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dw, est.dw, rtol=1e-12, atol=1e-14)
    # Per-sample check of the coarse gradient formula on one input.
    z = Z[0]
    act = (z @ w > 0).astype(float)
    r = v @ act - vs @ (z @ ws > 0)
    masks = {"identity": np.ones(5), "relu": act, "clipped_relu": ((z @ w > 0) & (z @ w < 1)).astype(float)}
    for ste, mu in masks.items():
        np.testing.assert_allclose(tl.empirical_coarse_gradient(v, w, vs, ws, ste, z)[1], z.T @ (mu * v) * r)
    assert tl.empirical_loss(v, w, vs, ws, z) == pytest.approx(0.5 * r * r)


# --------------------------------------------------------------------------- exact math
@pytest.mark.parametrize("seed", range(5))
def test_gradient_matches_finite_differences(seed):
    rng = np.random.default_rng(seed)
    m, n = 4, 6
    vs, ws = rng.standard_normal(m), unit(rng.standard_normal(n))
    v, w = rng.standard_normal(m), w_at(ws, rng.uniform(0.3, 2.8), rng.uniform(0.3, 3), rng)
    dv, dw = tl.population_gradient(v, w, vs, ws)
    h = 1e-6
    fd_v = np.array([(tl.population_loss(v + h * e, w, vs, ws) - tl.population_loss(v - h * e, w, vs, ws)) / (2 * h)
                     for e in np.eye(m)])
    fd_w = np.array([(tl.population_loss(v, w + h * e, vs, ws) - tl.population_loss(v, w - h * e, vs, ws)) / (2 * h)
                     for e in np.eye(n)])
    np.testing.assert_allclose(dv, fd_v, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(dw, fd_w, rtol=1e-6, atol=1e-9)


def test_loss_matches_dense_matrix_formula_and_w_zero():
    rng = np.random.default_rng(0)
    m, n = 7, 3
    vs, ws, v = rng.standard_normal(m), unit(rng.standard_normal(n)), rng.standard_normal(m)
    w = rng.standard_normal(n)
    I, J = np.eye(m), np.ones((m, m))
    th = math.acos(float(np.clip(unit(w) @ ws, -1, 1)))
    dense = (v @ (I + J) @ v - 2 * v @ ((1 - 2 * th / math.pi) * I + J) @ vs + vs @ (I + J) @ vs) / 8
    assert tl.population_loss(v, w, vs, ws) == pytest.approx(dense, rel=1e-12)
    assert tl.population_loss(v, np.zeros(n), vs, ws) == pytest.approx(vs @ (I + J) @ vs / 8, rel=1e-12)
    # Exact at w = 0 (all student units off): the empirical loss agrees.
    Z = rng.standard_normal((10, m, n))
    assert tl.empirical_loss(v, np.zeros(n), vs, ws, Z) == pytest.approx(
        np.mean(0.5 * ((Z @ ws > 0) @ vs) ** 2))


def test_pq_closed_form_matches_spec_integrals():
    scipy_integrate = pytest.importorskip("scipy.integrate")
    for norm in (0.05, 0.5, 1.0, 4.0, 50.0):
        for theta in np.linspace(0, math.pi, 9):
            p, q = tl.pq(float(theta), norm)
            pg, qg = tl.pq_quadrature(float(theta), norm)
            assert abs(p - pg) < 1e-10 and abs(q - qg) < 1e-10
            if 0 < theta < math.pi:  # independent check with scipy's adaptive quadrature
                f = lambda phi, trig: trig(phi) * tl.xi(1 / (norm * math.cos(phi))) / (2 * math.pi)  # noqa: E731
                ps = scipy_integrate.quad(f, theta - math.pi / 2, math.pi / 2, args=(math.cos,), epsabs=1e-13, limit=200)[0]
                qs = scipy_integrate.quad(f, theta - math.pi / 2, math.pi / 2, args=(math.sin,), epsabs=1e-13, limit=200)[0]
                assert abs(p - ps) < 1e-9 and abs(q - qs) < 1e-9
        assert tl.pq(0.0, norm)[0] == pytest.approx((1 - math.exp(-1 / (2 * norm**2))) / math.sqrt(2 * math.pi), rel=1e-12)
        assert tl.pq(0.0, norm)[1] == 0.0 and tl.pq(math.pi, norm) == (0.0, 0.0)


def test_xi_closed_form():
    scipy_integrate = pytest.importorskip("scipy.integrate")
    for t in (0.0, 0.1, 1.0, 3.0, 10.0):
        ref = scipy_integrate.quad(lambda r: r * r * math.exp(-r * r / 2), 0, t, epsabs=1e-14)[0]
        assert tl.xi(t) == pytest.approx(ref, abs=1e-12)
    assert tl.xi(math.inf) == pytest.approx(math.sqrt(math.pi / 2))
    np.testing.assert_allclose(tl.xi(np.array([0.0, 1.0])), [0.0, tl.xi(1.0)])


def test_relu_and_clipped_limits():
    """Clipped ReLU -> ReLU as ||w|| -> 0 (the window 0 < z.w < 1 covers everything)."""
    rng = np.random.default_rng(1)
    vs, ws = rng.standard_normal(5), unit(rng.standard_normal(8))
    v, w = rng.standard_normal(5), w_at(ws, 1.1, 1e-4, rng)
    np.testing.assert_allclose(tl.expected_coarse_gradient(v, w, vs, ws, "clipped_relu")[1],
                               tl.expected_coarse_gradient(v, w, vs, ws, "relu")[1], atol=1e-12)
    # The ReLU formula in the paper's form with cos(theta/2) and the normalised bisector.
    th = tl.angle(w, ws)
    s, ss = v.sum(), vs.sum()
    h = v @ v + s * s - s * ss + v @ vs
    bis = unit(unit(w) + ws)
    spec = h / (2 * math.sqrt(2 * math.pi)) * unit(w) - math.cos(th / 2) * (v @ vs) / math.sqrt(2 * math.pi) * bis
    np.testing.assert_allclose(tl.expected_coarse_gradient(v, w, vs, ws, "relu")[1], spec, atol=1e-12)


def test_vectorised_for_large_sizes():
    rng = np.random.default_rng(0)
    m = n = 1000
    vs, ws = rng.standard_normal(m), rng.standard_normal(n)
    v, w = rng.standard_normal(m), rng.standard_normal(n)
    f = tl.population_loss(v, w, vs, ws)
    I, J = np.eye(m), np.ones((m, m))
    th = tl.angle(w, ws)
    dense = (v @ (I + J) @ v - 2 * v @ ((1 - 2 * th / math.pi) * I + J) @ vs + vs @ (I + J) @ vs) / 8
    assert f == pytest.approx(dense, rel=1e-10)
    for ste in STES:
        dv, dw = tl.expected_coarse_gradient(v, w, vs, ws, ste)
        assert dv.shape == (m,) and dw.shape == (n,) and np.all(np.isfinite(dw))


# --------------------------------------------------------------------------- inequalities
@pytest.mark.parametrize("ste", STES)
def test_correlation_inequalities_on_random_points(ste):
    rng = np.random.default_rng(123)
    for _ in range(300):
        m, n = rng.integers(1, 9), rng.integers(2, 9)
        vs, ws = rng.standard_normal(m), rng.standard_normal(n) * rng.uniform(0.1, 5)  # w* normalised inside
        v, w = rng.standard_normal(m), rng.standard_normal(n) * 10 ** rng.uniform(-1.5, 1.5)
        _, gw = tl.population_gradient(v, w, vs, ws)
        _, eg = tl.expected_coarse_gradient(v, w, vs, ws, ste)
        dot = float(eg @ gw)
        closed = tl.coarse_correlation(v, w, vs, ws, ste)
        scale = float(v @ vs) ** 2 / np.linalg.norm(w)
        assert dot >= -1e-12 * scale
        assert dot == pytest.approx(closed, rel=1e-9, abs=1e-14 * scale)
        th = tl.angle(w, ws)
        k = math.sin(th) * scale / (2 * math.pi) ** 1.5
        expected = {"identity": k, "relu": k / 2,
                    "clipped_relu": k / 2 * math.erf(1 / (math.sqrt(2) * np.linalg.norm(w) * math.sin(th)))}[ste]
        assert closed == pytest.approx(expected, rel=1e-9, abs=1e-15)


@given(theta=st.floats(0.01, math.pi - 0.01), norm=st.floats(0.05, 20.0))
def test_correlation_ordering(theta, norm):
    """relu = identity/2 and 0 <= clipped_relu <= relu at every angle and norm."""
    rng = np.random.default_rng(0)
    vs, ws = rng.standard_normal(4), unit(rng.standard_normal(5))
    v, w = rng.standard_normal(4), w_at(ws, theta, norm, rng)
    c = {s: tl.coarse_correlation(v, w, vs, ws, s) for s in STES}
    assert c["relu"] == pytest.approx(c["identity"] / 2, rel=1e-12)
    assert 0 <= c["clipped_relu"] <= c["relu"] * (1 + 1e-12)


# --------------------------------------------------------------------------- critical points
def spurious_teacher(m: int = 5, n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    while True:
        vs = rng.standard_normal(m)
        if 0.2 * (m + 1) / 2 * vs @ vs < vs.sum() ** 2 < (m + 1) / 2 * vs @ vs:
            return vs, unit(rng.standard_normal(n))


@pytest.mark.parametrize("m", [2, 5, 9])
def test_spurious_minimiser_properties(m):
    vs, ws = spurious_teacher(m)
    cp = tl.critical_points(vs, ws)
    sp = cp.spurious_min
    assert cp.condition_holds and sp.exists
    v, w = sp.v, sp.w
    assert sp.theta == math.pi and tl.angle(w, ws) == pytest.approx(math.pi)
    np.testing.assert_allclose(v, np.linalg.solve(np.eye(m) + 1, (np.ones((m, m)) - np.eye(m)) @ vs), atol=1e-12)
    assert v @ vs < 0
    dv, dw = tl.population_gradient(v, w, vs, ws)
    np.testing.assert_allclose(dv, 0, atol=1e-12)
    np.testing.assert_allclose(dw, 0, atol=1e-12)
    # Local minimum: random small perturbations of (v, w) never decrease f.
    rng = np.random.default_rng(1)
    f0 = tl.population_loss(v, w, vs, ws)
    assert f0 > 0
    for _ in range(200):
        eps = 10 ** rng.uniform(-4, -2)
        assert tl.population_loss(v + eps * rng.standard_normal(m), w + eps * rng.standard_normal(w.size), vs, ws) >= f0 - 1e-14
    # Coarse gradients there: zero for ReLU and clipped ReLU (any ||w||), not for identity.
    s = vs.sum()
    for scale in (0.3, 1.0, 4.0):
        for ste in ("relu", "clipped_relu"):
            np.testing.assert_allclose(tl.expected_coarse_gradient(v, scale * w, vs, ws, ste)[1], 0, atol=1e-12)
        g_id = tl.expected_coarse_gradient(v, scale * w, vs, ws, "identity")[1]
        expected = 2 * (m - 1) / (math.sqrt(2 * math.pi) * (m + 1) ** 2) * s * s
        assert np.linalg.norm(g_id) == pytest.approx(expected, rel=1e-12)
        np.testing.assert_allclose(unit(g_id), -ws, atol=1e-12)  # the step -lr g moves w = -|w| w* towards +w*: ||w|| shrinks
    assert np.linalg.norm(g_id) > 0


def test_identity_norm_at_spurious_minimiser_by_monte_carlo():
    vs, ws = spurious_teacher(5, 8, seed=3)
    sp = tl.critical_points(vs, ws).spurious_min
    est = tl.sample_coarse_gradient_stats(sp.v, sp.w, vs, ws, "identity", 200_000, generator=9)
    expected = -2 * 4 / (math.sqrt(2 * math.pi) * 36) * vs.sum() ** 2 * ws
    assert_within_se(est.dw, est.dw_se, expected, "E g_id at the spurious minimiser")


def test_spurious_minimiser_absent_when_condition_fails():
    vs, ws = np.ones(4), unit(np.arange(1.0, 4.0))  # (1^T v*)^2 = 16 >= 5/2 * 4 = 10
    cp = tl.critical_points(vs, ws)
    assert not cp.condition_holds and not cp.spurious_min.exists and not cp.saddle.exists
    assert cp.spurious_min.v @ vs >= 0


def test_global_minimiser_and_saddle():
    vs, ws = spurious_teacher(6, 4, seed=2)
    cp = tl.critical_points(vs, ws)
    g = cp.global_min
    assert tl.population_loss(g.v, g.w, vs, ws) == pytest.approx(0, abs=1e-15)
    for ste in STES:
        for out in tl.expected_coarse_gradient(g.v, 2.5 * g.w, vs, ws, ste):
            np.testing.assert_allclose(out, 0, atol=1e-12)
    sa = cp.saddle
    assert sa.exists and math.pi / 2 <= sa.theta < math.pi
    m, s, vv = 6, vs.sum(), vs @ vs
    assert sa.theta == pytest.approx(math.pi / 2 * (m + 1) * vv / ((m + 1) * vv - s * s), rel=1e-12)
    assert sa.v @ vs == pytest.approx(0, abs=1e-12)
    assert tl.angle(sa.w, ws) == pytest.approx(sa.theta, rel=1e-12)
    for out in tl.population_gradient(sa.v, sa.w, vs, ws):
        np.testing.assert_allclose(out, 0, atol=1e-12)
    # Not a minimum: moving theta and v together along the indefinite direction decreases f.
    f0 = tl.population_loss(sa.v, sa.w, vs, ws)
    b = vs / (2 * math.pi)  # d^2 f / dv dtheta
    A = (np.eye(m) + 1) / 4
    dv_dir = -np.linalg.solve(A, b) * 0.5
    u = unit(sa.w - (sa.w @ ws) * ws)
    eps = 1e-3
    th = sa.theta + eps
    w_new = math.cos(th) * ws + math.sin(th) * u
    assert tl.population_loss(sa.v + eps * dv_dir, w_new, vs, ws) < f0
    # n = 1: no saddle (theta is 0 or pi only).
    assert not tl.critical_points(vs, [1.0]).saddle.exists


# --------------------------------------------------------------------------- descent
@pytest.mark.parametrize("ste", ["relu", "clipped_relu"])
def test_monotone_descent_for_relu_and_clipped_relu(ste):
    """f never increases at a small learning rate, except at a step where the iterate passes
    near w = 0 (theta, hence f, jumps there; docs/theory.md)."""
    vs, ws = spurious_teacher(5, 8, seed=4)
    rng = np.random.default_rng(8)
    fully_monotone = 0
    for _ in range(6):
        traj = tl.coarse_gradient_descent(rng.standard_normal(5), rng.standard_normal(8), vs, ws, ste, lr=0.05, steps=600)
        up = np.flatnonzero(np.diff(traj.loss) > 1e-12)
        near_origin = np.minimum(traj.w_norm[up], traj.w_norm[up + 1]) < 0.05
        assert near_origin.all(), (up, traj.w_norm[up])
        fully_monotone += traj.is_monotone(1e-12)
        assert traj.loss[-1] < traj.loss[0]
    assert fully_monotone >= 3
    assert traj.loss.shape == traj.angle.shape == traj.w_norm.shape == traj.grad_w_norm.shape == (601,)
    assert traj.v.shape == (601, 5) and traj.w.shape == (601, 8)


def test_small_step_monotone_descent_away_from_the_origin():
    vs, ws = spurious_teacher(5, 8, seed=4)
    rng = np.random.default_rng(3)
    for ste in ("relu", "clipped_relu"):
        for theta in (0.5, 1.5, 2.5):
            traj = tl.coarse_gradient_descent(0.5 * vs, w_at(ws, theta, 2.0, rng), vs, ws, ste, lr=0.02, steps=300)
            assert traj.w_norm.min() > 0.5
            assert traj.is_monotone(1e-12), (ste, theta, traj.max_increase())


def test_relu_converges_to_global_minimum_from_a_good_start():
    vs, ws = spurious_teacher(5, 8, seed=4)
    rng = np.random.default_rng(0)
    w0 = w_at(ws, 0.5, 1.0, rng)
    traj = tl.coarse_gradient_descent(np.zeros(5), w0, vs, ws, "relu", lr=0.5, steps=1500)
    assert traj.is_monotone()
    assert traj.loss[-1] < 1e-10 and traj.angle[-1] < 1e-4
    assert traj.iterations_to(1e-6) is not None


def test_identity_is_pushed_away_from_the_spurious_minimiser():
    vs, ws = spurious_teacher(5, 8, seed=4)
    sp = tl.critical_points(vs, ws).spurious_min
    rng = np.random.default_rng(2)
    w0 = w_at(ws, math.pi - 0.05, 1.0, rng)
    v0 = sp.v + 0.01 * rng.standard_normal(5)
    ident = tl.coarse_gradient_descent(v0, w0, vs, ws, "identity", lr=0.1, steps=400)
    assert not ident.is_monotone()
    assert ident.w_norm.min() < 0.1  # pushed along +w*: ||w|| collapses
    assert np.max(np.abs(ident.angle - math.pi)) > 1.0  # and theta leaves pi
    for ste in ("relu", "clipped_relu"):
        t = tl.coarse_gradient_descent(v0, w0, vs, ws, ste, lr=0.1, steps=400)
        assert t.is_monotone() and abs(t.angle[-1] - math.pi) < 0.05
        assert t.loss[-1] == pytest.approx(sp.loss, abs=1e-3)


def test_sampled_descent_runs_and_is_seeded():
    vs, ws = spurious_teacher(5, 8, seed=4)
    a = tl.coarse_gradient_descent(np.zeros(5), np.ones(8), vs, ws, "relu", 0.1, 50, n_samples=500, generator=1)
    b = tl.coarse_gradient_descent(np.zeros(5), np.ones(8), vs, ws, "relu", 0.1, 50, n_samples=500, generator=1)
    np.testing.assert_array_equal(a.loss, b.loss)
    assert a.n_samples == 500 and a.loss[-1] < a.loss[0]
    assert tl.coarse_gradient_descent(np.zeros(5), np.ones(8), vs, ws, "relu", 0.1, 0).steps == 0


# --------------------------------------------------------------------------- bad inputs
def test_w_zero_is_rejected_where_undefined(problem):
    vs, ws = problem
    v, w0 = np.ones(5), np.zeros(8)
    calls = [
        lambda: tl.angle(w0, ws),
        lambda: tl.population_gradient(v, w0, vs, ws),
        lambda: tl.coarse_correlation(v, w0, vs, ws, "relu"),
        lambda: tl.coarse_gradient_descent(v, w0, vs, ws, "relu", 0.1, 3),
        lambda: tl.empirical_coarse_gradient(v, w0, vs, ws, "relu", np.zeros((2, 5, 8))),
    ]
    for ste in STES:
        calls.append(lambda ste=ste: tl.expected_coarse_gradient(v, w0, vs, ws, ste))
        calls.append(lambda ste=ste: tl.sample_coarse_gradient(v, w0, vs, ws, ste, 10, 0))
    for call in calls:
        with pytest.raises(ValueError, match=r"w = 0"):
            call()
    assert math.isfinite(tl.population_loss(v, w0, vs, ws))


def test_shape_mismatch_messages(problem):
    vs, ws = problem
    with pytest.raises(ValueError, match=r"v_star must have shape \(m,\) = \(4,\)"):
        tl.population_loss(np.ones(4), np.ones(8), vs, ws)
    with pytest.raises(ValueError, match=r"w_star must have shape \(n,\) = \(3,\)"):
        tl.expected_coarse_gradient(np.ones(5), np.ones(3), vs, ws, "relu")
    with pytest.raises(ValueError, match=r"v must be a non-empty 1-D array, got shape \(5, 1\)"):
        tl.population_gradient(np.ones((5, 1)), np.ones(8), vs, ws)
    with pytest.raises(ValueError, match="finite"):
        tl.population_loss([1, 2, np.nan, 4, 5], np.ones(8), vs, ws)
    with pytest.raises(ValueError, match=r"Z must have shape \(N, m, n\) = \(N, 5, 8\)"):
        tl.empirical_loss(np.ones(5), np.ones(8), vs, ws, np.zeros((3, 8, 5)))
    with pytest.raises(ValueError, match="direction must have shape"):
        tl.sample_coarse_gradient_stats(np.ones(5), np.ones(8), vs, ws, "relu", 10, 0, direction=np.ones(3))


def test_unknown_ste_lists_valid_names(problem):
    vs, ws = problem
    with pytest.raises(ValueError, match=r"unknown STE 'clipped'.*valid: clipped_relu, identity, relu"):
        tl.expected_coarse_gradient(np.ones(5), np.ones(8), vs, ws, "clipped")
    for fn in (lambda: tl.sample_coarse_gradient(np.ones(5), np.ones(8), vs, ws, "sigmoid", 10),
               lambda: tl.coarse_gradient_descent(np.ones(5), np.ones(8), vs, ws, "Relu", 0.1, 2)):
        with pytest.raises(ValueError, match="valid: clipped_relu, identity, relu"):
            fn()


def test_w_star_is_normalised_and_zero_rejected(problem):
    vs, ws = problem
    v, w = np.ones(5), np.arange(1.0, 9.0)
    for fn in (tl.population_loss, tl.population_gradient, lambda *a: tl.expected_coarse_gradient(*a, "clipped_relu")):
        a, b = fn(v, w, vs, ws), fn(v, w, vs, 3.7 * ws)
        np.testing.assert_allclose(np.hstack(a) if isinstance(a, tuple) else a,
                                   np.hstack(b) if isinstance(b, tuple) else b, rtol=1e-12)
    with pytest.raises(ValueError, match="w_star must be nonzero"):
        tl.population_loss(v, w, vs, np.zeros(8))
    with pytest.raises(ValueError, match="v_star must be nonzero"):
        tl.critical_points(np.zeros(5), ws)


def test_other_argument_checks(problem):
    vs, ws = problem
    v, w = np.ones(5), np.ones(8)
    with pytest.raises(ValueError, match="n_samples"):
        tl.sample_coarse_gradient(v, w, vs, ws, "relu", 0)
    with pytest.raises(TypeError, match="generator"):
        tl.sample_coarse_gradient(v, w, vs, ws, "relu", 10, generator="seed")
    with pytest.raises(ValueError, match="lr"):
        tl.coarse_gradient_descent(v, w, vs, ws, "relu", -0.1, 5)
    with pytest.raises(ValueError, match="theta"):
        tl.pq(4.0, 1.0)
    with pytest.raises(ValueError, match="w_norm"):
        tl.pq(1.0, 0.0)


def test_accepts_lists_and_torch_tensors(problem):
    torch = pytest.importorskip("torch")
    vs, ws = problem
    v, w = [1.0, 0, 2, 0, 1], list(range(1, 9))
    ref = tl.expected_coarse_gradient(v, w, vs, ws, "relu")
    got = tl.expected_coarse_gradient(torch.tensor(v, requires_grad=True), torch.tensor(w, dtype=torch.float32),
                                      torch.from_numpy(vs), ws, "relu")
    for a, b in zip(ref, got):
        assert b.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert isinstance(tl.population_loss(v, w, vs, ws), float)


def test_descent_that_overflows_raises_naming_the_learning_rate():
    """Before: the first non-finite iterate was passed on and refused later as 'w must contain only finite
    numbers', with no word about the learning rate that caused it."""
    from stbin.theory.descent import DescentDiverged

    rng = np.random.default_rng(0)
    vs, ws = rng.standard_normal(5), rng.standard_normal(8)
    with pytest.raises(DescentDiverged, match=r"identity STE diverged at step \d+: .*lr = 1000 is too large"):
        tl.coarse_gradient_descent(rng.standard_normal(5), rng.standard_normal(8), vs, ws, "identity", 1e3, 2000)
    # a stable step size runs to the end with finite iterates
    t = tl.coarse_gradient_descent(rng.standard_normal(5), rng.standard_normal(8), vs, ws, "identity", 0.05, 50)
    assert np.all(np.isfinite(t.loss)) and t.steps == 50
