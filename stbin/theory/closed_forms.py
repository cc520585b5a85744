r"""Closed forms of the two-linear-layer model (see :mod:`stbin.theory.two_layer` for the model,
the notation and the conventions): the angle, the population loss and its gradient, the
expected coarse gradients of the three STEs, their correlation with the true gradient, and the
functions ``xi``, ``p``, ``q`` behind the clipped-ReLU formula."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stbin._validation import check_int_at_least, check_positive
from stbin.theory._common import (
    _SIN_EPS,
    _SQRT_2,
    _SQRT_2PI,
    _as_vector,
    _check_ste,
    _check_vectors,
    _geometry,
    _unit_w_star,
)

def angle(w: Any, w_star: Any) -> float:
    r"""The angle ``theta = atan2(||P_w w*||, w_hat . w*)`` in ``[0, pi]`` (undefined at w = 0)."""
    w = _as_vector("w", w)
    w_star = _as_vector("w_star", w_star)
    if w_star.shape != w.shape:
        raise ValueError(f"w_star must have shape (n,) = ({w.shape[0]},) like w, got {w_star.shape}")
    _, _, cos, sin, _ = _geometry(w, _unit_w_star(w_star), "the angle theta(w, w*)")
    return math.atan2(sin, cos)


def population_loss(v: Any, w: Any, v_star: Any, w_star: Any) -> float:
    r"""Population loss ``f(v, w) = E_Z[1/2 (v^T sigma(Z w) - v*^T sigma(Z w*))^2]``.

    Closed form (Yin et al. Lemma 1), for ``w != 0``::

        f = 1/8 [ v^T (I + 1 1^T) v - 2 v^T ((1 - 2 theta/pi) I + 1 1^T) v* + v*^T (I + 1 1^T) v* ]

    and ``f = 1/8 v*^T (I + 1 1^T) v*`` at ``w = 0`` (all student units are off).
    Cost O(m + n).
    """
    v, w, v_star, w_star = _check_vectors(v, w, v_star, w_star)
    return _loss(v, w, v_star, w_star)


def _loss(v: np.ndarray, w: np.ndarray, v_star: np.ndarray, w_star: np.ndarray) -> float:
    s, s_star = float(v.sum()), float(v_star.sum())
    teacher = float(v_star @ v_star) + s_star * s_star
    if not np.any(w):
        return teacher / 8.0
    _, _, cos, sin, _ = _geometry(w, w_star, "theta")
    theta = math.atan2(sin, cos)
    c = 1.0 - 2.0 * theta / math.pi
    student = float(v @ v) + s * s
    cross = c * float(v @ v_star) + s * s_star
    return (student - 2.0 * cross + teacher) / 8.0


def population_gradient(v: Any, w: Any, v_star: Any, w_star: Any) -> tuple[np.ndarray, np.ndarray]:
    r"""True gradient ``(df/dv, df/dw)`` of the population loss (Yin et al. Lemma 2)::

        df/dv = 1/4 (I + 1 1^T) v - 1/4 ((1 - 2 theta/pi) I + 1 1^T) v*
        df/dw = -(v^T v*) / (2 pi ||w||) * P_w w* / ||P_w w*||        (theta in (0, pi))

    ``||P_w w*|| = sin(theta)``. At ``theta = 0`` or ``pi`` (numerically: ``sin(theta) <=
    1e-12``) ``f`` is not differentiable in ``w`` unless ``v^T v* = 0`` (it behaves like
    ``theta``, a cone); there ``df/dw`` is returned as ``0``, the minimum-norm element of
    the Clarke subdifferential. Undefined at ``w = 0`` (``f`` jumps there): ValueError.
    """
    v, w, v_star, w_star = _check_vectors(v, w, v_star, w_star)
    w_norm, _, cos, sin, perp = _geometry(w, w_star, "df/dw")
    theta = math.atan2(sin, cos)
    c = 1.0 - 2.0 * theta / math.pi
    dv = 0.25 * (v + v.sum()) - 0.25 * (c * v_star + v_star.sum())
    if sin <= _SIN_EPS:
        dw = np.zeros_like(w)
    else:
        dw = (-(float(v @ v_star)) / (2.0 * math.pi * w_norm * sin)) * perp
    return dv, dw


def xi(t: Any) -> np.ndarray | float:
    r"""``xi(t) = int_0^t r^2 exp(-r^2/2) dr = sqrt(pi/2) erf(t/sqrt 2) - t exp(-t^2/2)``.

    (Integration by parts.) ``xi(inf) = sqrt(pi/2)``; elementwise on arrays.
    """
    t_arr = np.asarray(t, dtype=np.float64)
    erf = np.vectorize(math.erf, otypes=[np.float64])
    with np.errstate(over="ignore", invalid="ignore"):
        tail = np.where(np.isinf(t_arr), 0.0, t_arr * np.exp(-0.5 * t_arr * t_arr))
    out = math.sqrt(math.pi / 2.0) * erf(t_arr / _SQRT_2) - tail
    return float(out) if out.ndim == 0 else out


def _Phi(x: float) -> float:
    return 0.5 * math.erfc(-x / _SQRT_2)


def _pq_from_cos_sin(cos: float, sin: float, w_norm: float) -> tuple[float, float, float]:
    """p(theta), q(theta)/sin(theta) (finite at sin = 0) and p(0), for ||w|| = w_norm."""
    b = 1.0 / w_norm  # the clipped-ReLU window is 0 < z.w_hat < b
    phi_b = math.exp(-0.5 * b * b) / _SQRT_2PI
    if sin == 0.0:
        cot = math.copysign(math.inf, cos)
        e = 1.0
    else:
        cot = cos / sin
        e = math.erf(b / (_SQRT_2 * sin))
    p = (1.0 + cos * e) / (2.0 * _SQRT_2PI) - phi_b * _Phi(b * cot)
    q_over_sin = e / (2.0 * _SQRT_2PI)
    p0 = -math.expm1(-0.5 * b * b) / _SQRT_2PI
    return p, q_over_sin, p0


def pq(theta: float, w_norm: float) -> tuple[float, float]:
    r"""``p(theta)`` and ``q(theta)`` of the clipped-ReLU coarse gradient, in closed form.

    They are defined by the polar integrals (``b = 1/||w||``; derivation in ``docs/theory.md``)::

        p(theta) = 1/(2 pi) int_{theta - pi/2}^{pi/2} cos(phi) xi(b sec(phi)) dphi
        q(theta) = 1/(2 pi) int_{theta - pi/2}^{pi/2} sin(phi) xi(b sec(phi)) dphi

    i.e. ``(p, q) = E[(z1, z2) 1[0 < z1 < b] 1[z1 cos(theta) + z2 sin(theta) > 0]]`` for a
    standard normal ``(z1, z2)``. In Cartesian coordinates the inner integral is explicit
    (derivation in ``docs/theory.md``)::

        q(theta) = sin(theta) / (2 sqrt(2 pi)) * erf(b / (sqrt(2) sin(theta)))
        p(theta) = (1 + cos(theta) erf(b / (sqrt(2) sin(theta)))) / (2 sqrt(2 pi))
                   - phi(b) Phi(b cot(theta))

    with the limits ``p(0) = (1 - exp(-b^2/2))/sqrt(2 pi)``, ``p(pi) = q(0) = q(pi) = 0``.
    :func:`pq_quadrature` evaluates the polar integrals instead (a cross-check).
    """
    theta = float(theta)
    if not 0.0 <= theta <= math.pi:
        raise ValueError(f"theta must lie in [0, pi], got {theta!r}")
    w_norm = check_positive("w_norm", w_norm)
    cos, sin = math.cos(theta), math.sin(theta)
    if theta == 0.0 or theta == math.pi:
        sin = 0.0
    p, q_over_sin, _ = _pq_from_cos_sin(cos, sin, w_norm)
    return p, q_over_sin * sin


def pq_quadrature(theta: float, w_norm: float, nodes: int = 64, panels: int = 24) -> tuple[float, float]:
    r"""``p(theta), q(theta)`` from their polar integrals by composite Gauss--Legendre quadrature.

    The interval ``[theta - pi/2, pi/2]`` is cut in two halves, each cut into ``panels``
    pieces graded geometrically towards its outer end (``xi(sec(phi)/||w||)`` saturates
    near ``phi = +-pi/2``, with a transition at ``cos(phi) ~ 1/||w||``); each piece gets
    ``nodes`` Legendre nodes (:func:`numpy.polynomial.legendre.leggauss`). With the
    defaults the result agrees with :func:`pq` to ~1e-12 for ``||w||`` in [1e-2, 1e2].
    Used to check the closed form.
    """
    theta = float(theta)
    if not 0.0 <= theta <= math.pi:
        raise ValueError(f"theta must lie in [0, pi], got {theta!r}")
    w_norm = check_positive("w_norm", w_norm)
    nodes = check_int_at_least("nodes", nodes, 2)
    panels = check_int_at_least("panels", panels, 1)
    lo, hi = theta - math.pi / 2.0, math.pi / 2.0
    if hi - lo <= 0.0:
        return 0.0, 0.0
    # Distances to each outer end decrease geometrically down to ~1e-9 of the half length.
    dist = (0.5 * (hi - lo)) * (1e-9 ** (1.0 / panels)) ** np.arange(panels + 1)
    dist[-1] = 0.0
    edges = np.concatenate([(lo + dist)[::-1], (hi - dist)[1:]])
    x, wts = np.polynomial.legendre.leggauss(nodes)
    a, b = edges[:-1, None], edges[1:, None]
    phi = 0.5 * (b - a) * x[None, :] + 0.5 * (a + b)
    weights = 0.5 * (b - a) * wts[None, :]
    cos_phi = np.cos(phi)
    with np.errstate(divide="ignore", over="ignore"):
        t = 1.0 / (w_norm * cos_phi)
    g = np.asarray(xi(t)) * weights / (2.0 * math.pi)
    return float(np.sum(cos_phi * g)), float(np.sum(np.sin(phi) * g))


def expected_coarse_gradient(
    v: Any, w: Any, v_star: Any, w_star: Any, ste: str
) -> tuple[np.ndarray, np.ndarray]:
    r"""Expected coarse gradient ``(E[dl/dv], E[g_mu])`` for the STE ``ste``.

    The sampled coarse gradient replaces ``sigma'`` by ``mu'`` in back-propagation::

        g_mu(v, w; Z) = Z^T (mu'(Z w) * v) (v^T sigma(Z w) - y*(Z))

    and ``dl/dv = sigma(Z w) (y - y*)`` is the true partial gradient, so
    ``E[dl/dv] = df/dv`` for every STE. With ``h = ||v||^2 + (1^T v)^2 - (1^T v)(1^T v*)
    + v^T v*``::

        identity:      E g = ( ||v||^2 w_hat - (v^T v*) w* ) / sqrt(2 pi)
        relu:          E g = h/(2 sqrt(2 pi)) w_hat - cos(theta/2) (v^T v*)/sqrt(2 pi) (w_hat + w*)/||w_hat + w*||
                           = ( h w_hat - (v^T v*) (w_hat + w*) ) / (2 sqrt(2 pi))
        clipped_relu:  E g = 1/2 p(0) h w_hat - (v^T v*) ( p(theta) w_hat + q(theta) e_perp )

    using ``||w_hat + w*|| = 2 cos(theta/2)``; ``p, q`` are given by :func:`pq` (they
    depend on ``||w||``; ``p(0) = (1 - exp(-1/(2||w||^2)))/sqrt(2 pi)``). These are
    well defined at ``theta = 0, pi`` (``q = 0`` there) but not at ``w = 0``: ValueError.
    """
    ste = _check_ste(ste)
    v, w, v_star, w_star = _check_vectors(v, w, v_star, w_star)
    return _expected(v, w, v_star, w_star, ste)


def _expected(
    v: np.ndarray, w: np.ndarray, v_star: np.ndarray, w_star: np.ndarray, ste: str
) -> tuple[np.ndarray, np.ndarray]:
    w_norm, w_hat, cos, sin, perp = _geometry(w, w_star, f"the {ste} coarse gradient")
    dv, _ = _dv_only(v, cos, sin, v_star)
    vv, vvs = float(v @ v), float(v @ v_star)
    s, s_star = float(v.sum()), float(v_star.sum())
    if ste == "identity":
        dw = (vv * w_hat - vvs * w_star) / _SQRT_2PI
    else:
        h = vv + s * s - s * s_star + vvs
        if ste == "relu":
            dw = (h * w_hat - vvs * (w_hat + w_star)) / (2.0 * _SQRT_2PI)
        else:
            p, q_over_sin, p0 = _pq_from_cos_sin(cos, 0.0 if sin <= _SIN_EPS else sin, w_norm)
            # q e_perp = (q / sin) P_w w*: no division by a small sin(theta).
            dw = (0.5 * p0 * h - vvs * p) * w_hat - (vvs * q_over_sin) * perp
    return dv, dw


def _dv_only(v: np.ndarray, cos: float, sin: float, v_star: np.ndarray) -> tuple[np.ndarray, float]:
    theta = math.atan2(sin, cos)
    c = 1.0 - 2.0 * theta / math.pi
    return 0.25 * (v + v.sum()) - 0.25 * (c * v_star + v_star.sum()), theta


def coarse_correlation(v: Any, w: Any, v_star: Any, w_star: Any, ste: str) -> float:
    r"""Closed form of ``<E g_mu, df/dw>`` (the correlation statements of Yin et al., ICLR 2019; all are ``>= 0``)::

        identity:      sin(theta) / ((2 pi)^{3/2} ||w||) (v^T v*)^2
        relu:          sin(theta) / (2 (2 pi)^{3/2} ||w||) (v^T v*)^2
        clipped_relu:  q(theta) / (2 pi ||w||) (v^T v*)^2
                       = sin(theta) erf(1/(sqrt 2 ||w|| sin theta)) / (2 (2 pi)^{3/2} ||w||) (v^T v*)^2

    Computed from the formulas, independently of :func:`expected_coarse_gradient` and
    :func:`population_gradient` (tests compare the two routes).
    """
    ste = _check_ste(ste)
    v, w, v_star, w_star = _check_vectors(v, w, v_star, w_star)
    w_norm, _, cos, sin, _ = _geometry(w, w_star, "<E g, df/dw>")
    if sin <= _SIN_EPS:
        return 0.0
    k = float(v @ v_star) ** 2 / w_norm
    if ste == "identity":
        return sin / (2.0 * math.pi) ** 1.5 * k
    if ste == "relu":
        return sin / (2.0 * (2.0 * math.pi) ** 1.5) * k
    _, q = pq(math.atan2(sin, cos), w_norm)
    return q / (2.0 * math.pi) * k
