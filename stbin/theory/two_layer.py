r"""Coarse gradients of a two-linear-layer network with a binarized ReLU (SPEC B1).

Model (Yin et al., ICLR 2019): an input :math:`Z \in \mathbb{R}^{m\times n}` with i.i.d.
:math:`N(0,1)` entries, a filter :math:`w\in\mathbb{R}^n` shared by the ``m`` rows, a
second layer :math:`v\in\mathbb{R}^m` and the binary activation
:math:`\sigma(x) = 1[x > 0]` (elementwise)::

    y(Z; v, w) = v^T sigma(Z w),      teacher  y*(Z) = v*^T sigma(Z w*)
    l(v, w; Z) = 1/2 (y - y*)^2,       f(v, w) = E_Z[l]

Notation used in every docstring of this module: ``theta`` is the angle between ``w`` and
``w*``, ``1`` the all-ones vector of length ``m``, ``I`` the identity, ``w_hat = w/||w||``,
``P_w = I_n - w w^T/||w||^2``, ``e_perp = P_w w*/||P_w w*||`` (the unit vector of the
``w``--``w*`` plane orthogonal to ``w``), ``s* = 1^T v*`` and ``phi``/``Phi``/``erf`` the
standard normal pdf/cdf and the error function.

Conventions
-----------
* Inputs are array-likes (lists, NumPy arrays, CPU torch tensors) and are converted to
  float64; every output is float64 NumPy (or a Python float). ``v`` and ``v_star`` must be
  1-D of the same length ``m``; ``w`` and ``w_star`` 1-D of the same length ``n``.
* **w_star is normalised, not rejected**: the teacher ``sigma(Z w*)`` is invariant to a
  positive rescaling of ``w*``, so every quantity here is computed with
  ``w*/||w*||`` (the closed forms assume ``||w*|| = 1``). ``w_star = 0`` is rejected.
* ``w = 0`` is allowed only in :func:`population_loss` (where ``y = 0`` and
  ``f = 1/8 v*^T (I + 1 1^T) v*``) and in the empirical loss; the angle, ``df/dw`` and the
  coarse gradients (expected or sampled) use ``w_hat`` and raise :class:`ValueError` there.
* Random numbers: ``generator`` may be ``None`` (fresh, unseeded), an ``int`` seed, or a
  :class:`numpy.random.Generator` (used and advanced in place).

The closed forms (and the correction status of SPEC's clipped-ReLU formula) are derived
in ``docs/theory.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stbin._registry import check_choice
from stbin._validation import check_int_at_least, check_positive

__all__ = [
    "STES",
    "angle",
    "population_loss",
    "population_gradient",
    "expected_coarse_gradient",
    "sample_coarse_gradient",
    "sample_coarse_gradient_stats",
    "MonteCarloEstimate",
    "empirical_loss",
    "empirical_coarse_gradient",
    "coarse_correlation",
    "xi",
    "pq",
    "pq_quadrature",
    "critical_points",
    "CriticalPoint",
    "CriticalPoints",
    "coarse_gradient_descent",
    "Trajectory",
]

#: Names of the straight-through estimators mu (the backward derivative that replaces
#: sigma' = 0): ``identity`` mu' = 1, ``relu`` mu' = 1[x > 0], ``clipped_relu`` mu' = 1[0 < x < 1].
STES: tuple[str, ...] = ("identity", "relu", "clipped_relu")

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SQRT_2 = math.sqrt(2.0)
#: below this value of sin(theta) the direction e_perp is numerical noise; theta is then
#: treated as exactly 0 or pi (see population_gradient).
_SIN_EPS = 1e-12


# --------------------------------------------------------------------------- validation
def _as_vector(name: str, x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a 1-D array of real numbers ({e})") from None
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must contain only finite numbers")
    return a


def _check_vectors(
    v: Any, w: Any, v_star: Any, w_star: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate shapes, convert to float64 and normalise w*."""
    v = _as_vector("v", v)
    w = _as_vector("w", w)
    v_star = _as_vector("v_star", v_star)
    w_star = _as_vector("w_star", w_star)
    m, n = v.shape[0], w.shape[0]
    if v_star.shape != (m,):
        raise ValueError(f"v_star must have shape (m,) = ({m},) like v, got {v_star.shape}")
    if w_star.shape != (n,):
        raise ValueError(f"w_star must have shape (n,) = ({n},) like w, got {w_star.shape}")
    return v, w, v_star, _unit_w_star(w_star)


def _unit_w_star(w_star: np.ndarray) -> np.ndarray:
    nrm = float(np.linalg.norm(w_star))
    if nrm == 0.0:
        raise ValueError("w_star must be nonzero (it is normalised to unit norm)")
    return w_star / nrm


def _w_norm_nonzero(w: np.ndarray, what: str) -> float:
    nrm = float(np.linalg.norm(w))
    if nrm == 0.0:
        raise ValueError(f"{what} is undefined at w = 0 (it needs w_hat = w/||w||); pass a nonzero w")
    return nrm


def _geometry(w: np.ndarray, w_star: np.ndarray, what: str) -> tuple[float, np.ndarray, float, float, np.ndarray]:
    """||w||, w_hat, cos(theta), sin(theta), P_w w* (w* has unit norm)."""
    w_norm = _w_norm_nonzero(w, what)
    w_hat = w / w_norm
    cos = float(np.clip(w_hat @ w_star, -1.0, 1.0))
    perp = w_star - cos * w_hat
    sin = float(np.linalg.norm(perp))
    return w_norm, w_hat, cos, sin, perp


def _check_ste(ste: Any) -> str:
    return check_choice("STE", ste, STES)


def _rng(generator: Any) -> np.random.Generator:
    if generator is None:
        return np.random.default_rng()
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(
        "generator must be None, an int seed or a numpy.random.Generator, "
        f"got {type(generator).__name__}"
    )


# --------------------------------------------------------------------------- closed forms
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

    SPEC B1 defines them by the polar integrals (``b = 1/||w||``)::

        p(theta) = 1/(2 pi) int_{theta - pi/2}^{pi/2} cos(phi) xi(b sec(phi)) dphi
        q(theta) = 1/(2 pi) int_{theta - pi/2}^{pi/2} sin(phi) xi(b sec(phi)) dphi

    i.e. ``(p, q) = E[(z1, z2) 1[0 < z1 < b] 1[z1 cos(theta) + z2 sin(theta) > 0]]`` for a
    standard normal ``(z1, z2)``. In Cartesian coordinates the inner integral is explicit
    (derivation in ``docs/theory.md``)::

        q(theta) = sin(theta) / (2 sqrt(2 pi)) * erf(b / (sqrt(2) sin(theta)))
        p(theta) = (1 + cos(theta) erf(b / (sqrt(2) sin(theta)))) / (2 sqrt(2 pi))
                   - phi(b) Phi(b cot(theta))

    with the limits ``p(0) = (1 - exp(-b^2/2))/sqrt(2 pi)``, ``p(pi) = q(0) = q(pi) = 0``.
    :func:`pq_quadrature` evaluates the SPEC integrals instead (a cross-check).
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
    r"""``p(theta), q(theta)`` from SPEC's integrals by composite Gauss--Legendre quadrature.

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
    r"""Closed form of ``<E g_mu, df/dw>`` (SPEC B1 statements; all are ``>= 0``)::

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


# --------------------------------------------------------------------------- sampling
def _as_samples(Z: Any, m: int, n: int) -> np.ndarray:
    if hasattr(Z, "detach") and hasattr(Z, "numpy"):
        Z = Z.detach().cpu().numpy()
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim == 2:
        Z = Z[None]
    if Z.ndim != 3 or Z.shape[1:] != (m, n) or Z.shape[0] == 0:
        raise ValueError(f"Z must have shape (N, m, n) = (N, {m}, {n}) or ({m}, {n}), got {Z.shape}")
    return Z


def _per_sample(
    Z: np.ndarray, v: np.ndarray, w: np.ndarray, v_star: np.ndarray, w_star: np.ndarray, ste: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-sample loss (N,), dl/dv (N, m) and g_mu (N, n) (None when ste is None)."""
    N, m, n = Z.shape
    # einsum's own loops, not BLAS: these tall-skinny products gain nothing from OpenBLAS
    # threads, which slow them down many times over when the cores are busy.
    u = np.einsum("bmn,n->bm", Z, w)
    act = u > 0.0
    r = np.einsum("bm,m->b", act, v) - np.einsum("bm,m->b", np.einsum("bmn,n->bm", Z, w_star) > 0.0, v_star)  # y - y*
    loss = 0.5 * r * r
    dv = act * r[:, None]
    if ste is None:
        return loss, dv, None
    if ste == "identity":
        coef = np.broadcast_to(v, (N, m)) * r[:, None]
    elif ste == "relu":
        coef = act * v * r[:, None]
    else:
        coef = (act & (u < 1.0)) * v * r[:, None]
    dw = np.einsum("bm,bmn->bn", coef, Z)
    return loss, dv, dw


def empirical_loss(v: Any, w: Any, v_star: Any, w_star: Any, Z: Any) -> float:
    r"""Empirical loss ``1/N sum_k 1/2 (v^T sigma(Z_k w) - v*^T sigma(Z_k w*))^2`` on given
    samples ``Z`` of shape ``(N, m, n)`` (or one ``(m, n)`` sample). Defined at ``w = 0``."""
    v, w, v_star, w_star = _check_vectors(v, w, v_star, w_star)
    Z = _as_samples(Z, v.shape[0], w.shape[0])
    loss, _, _ = _per_sample(Z, v, w, v_star, w_star, None)
    return float(loss.mean())


def empirical_coarse_gradient(
    v: Any, w: Any, v_star: Any, w_star: Any, ste: str, Z: Any
) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean over the given samples of ``(dl/dv, g_mu)`` (see :func:`expected_coarse_gradient`):
    the coarse gradient of :func:`empirical_loss` on the same ``Z``."""
    ste = _check_ste(ste)
    v, w, v_star, w_star = _check_vectors(v, w, v_star, w_star)
    _w_norm_nonzero(w, f"the {ste} coarse gradient")
    Z = _as_samples(Z, v.shape[0], w.shape[0])
    _, dv, dw = _per_sample(Z, v, w, v_star, w_star, ste)
    assert dw is not None
    return dv.mean(axis=0), dw.mean(axis=0)


class _Moments:
    """Running mean and sum of squared deviations (Chan et al. pairwise update)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def add(self, x: np.ndarray) -> None:
        k = x.shape[0]
        mu = x.mean(axis=0)
        m2 = ((x - mu) ** 2).sum(axis=0)
        if self.mean is None:
            self.count, self.mean, self.m2 = k, mu, m2
            return
        assert self.m2 is not None
        tot = self.count + k
        delta = mu - self.mean
        self.mean = self.mean + delta * (k / tot)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * k / tot)
        self.count = tot

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.mean is not None and self.m2 is not None
        var = self.m2 / (self.count - 1) if self.count > 1 else np.full_like(self.m2, np.nan)
        return self.mean, np.sqrt(var / self.count)


@dataclass
class MonteCarloEstimate:
    """Monte Carlo means and their standard errors (``sqrt(sample variance / n_samples)``)."""

    dv: np.ndarray  #: mean of dl/dv (estimates df/dv)
    dw: np.ndarray  #: mean of g_mu (estimates E g_mu)
    dv_se: np.ndarray
    dw_se: np.ndarray
    loss: float  #: mean of l (estimates f)
    loss_se: float
    n_samples: int
    projection: float | None = None  #: mean of <g_mu, direction> when a direction was given
    projection_se: float | None = None


def _default_chunk(m: int, n: int) -> int:
    return max(1, (1 << 19) // (m * n))  # ~4 MiB of float64 samples per chunk


def sample_coarse_gradient_stats(
    v: Any,
    w: Any,
    v_star: Any,
    w_star: Any,
    ste: str,
    n_samples: int,
    generator: Any = None,
    *,
    direction: Any = None,
    chunk_size: int | None = None,
) -> MonteCarloEstimate:
    r"""Monte Carlo estimate of ``E[dl/dv]``, ``E[g_mu]`` and ``f`` with standard errors.

    Draws ``n_samples`` i.i.d. inputs ``Z`` in chunks of ``chunk_size`` samples (default
    ~4 MiB of normals, reused buffer), so memory is bounded and 10^6 samples at m = 5,
    n = 8 take well under 2 s. ``direction`` (shape ``(n,)``), if given, also estimates
    ``E <g_mu, direction>`` with its own standard error (e.g. ``direction = df/dw``).
    """
    ste = _check_ste(ste)
    v, w, v_star, w_star = _check_vectors(v, w, v_star, w_star)
    _w_norm_nonzero(w, f"the {ste} coarse gradient")
    n_samples = check_int_at_least("n_samples", n_samples, 1)
    m, n = v.shape[0], w.shape[0]
    d = None
    if direction is not None:
        d = _as_vector("direction", direction)
        if d.shape != (n,):
            raise ValueError(f"direction must have shape (n,) = ({n},), got {d.shape}")
    chunk = _default_chunk(m, n) if chunk_size is None else check_int_at_least("chunk_size", chunk_size, 1)
    chunk = min(chunk, n_samples)
    rng = _rng(generator)
    buf = np.empty((chunk, m, n))
    acc_loss, acc_dv, acc_dw, acc_p = _Moments(), _Moments(), _Moments(), _Moments()
    done = 0
    while done < n_samples:
        k = min(chunk, n_samples - done)
        Z = buf[:k]
        rng.standard_normal(out=Z)
        loss, dv, dw = _per_sample(Z, v, w, v_star, w_star, ste)
        assert dw is not None
        acc_loss.add(loss[:, None])
        acc_dv.add(dv)
        acc_dw.add(dw)
        if d is not None:
            acc_p.add((dw @ d)[:, None])
        done += k
    loss_mean, loss_se = acc_loss.result()
    dv_mean, dv_se = acc_dv.result()
    dw_mean, dw_se = acc_dw.result()
    est = MonteCarloEstimate(
        dv=dv_mean, dw=dw_mean, dv_se=dv_se, dw_se=dw_se,
        loss=float(loss_mean[0]), loss_se=float(loss_se[0]), n_samples=n_samples,
    )
    if d is not None:
        p_mean, p_se = acc_p.result()
        est.projection, est.projection_se = float(p_mean[0]), float(p_se[0])
    return est


def sample_coarse_gradient(
    v: Any, w: Any, v_star: Any, w_star: Any, ste: str, n_samples: int, generator: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Monte Carlo mean ``(1/N sum_k dl/dv(Z_k), 1/N sum_k g_mu(Z_k))`` over ``N = n_samples``
    fresh standard-normal inputs (batched; see :func:`sample_coarse_gradient_stats` for the
    standard errors). ``generator``: None, an int seed or a numpy Generator."""
    est = sample_coarse_gradient_stats(v, w, v_star, w_star, ste, n_samples, generator)
    return est.dv, est.dw


# --------------------------------------------------------------------------- critical points
@dataclass
class CriticalPoint:
    """One critical point (or family): ``w`` is a representative (any positive multiple of
    ``w``, and for saddles any ``w`` with the same angle, is also critical)."""

    kind: str
    exists: bool
    v: np.ndarray
    theta: float
    w: np.ndarray | None
    loss: float | None


@dataclass
class CriticalPoints:
    r"""Critical points of ``f`` with ``w != 0`` (Yin et al. Proposition 1).

    ``condition`` is the existence condition ``(1^T v*)^2 < (m+1)/2 ||v*||^2`` of the
    spurious minimisers and of the saddle points; ``lhs``/``rhs`` are its two sides.
    """

    global_min: CriticalPoint
    spurious_min: CriticalPoint
    saddle: CriticalPoint
    condition: str
    lhs: float
    rhs: float
    w_star: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    @property
    def condition_holds(self) -> bool:
        return self.lhs < self.rhs


def _orthogonal_unit(u: np.ndarray) -> np.ndarray | None:
    """A unit vector orthogonal to the unit vector u (None when n = 1)."""
    n = u.shape[0]
    if n < 2:
        return None
    e = np.zeros(n)
    e[int(np.argmin(np.abs(u)))] = 1.0
    x = e - (u @ e) * u
    return x / np.linalg.norm(x)


def critical_points(v_star: Any, w_star: Any) -> CriticalPoints:
    r"""Global minimiser, spurious minimiser and saddle points of ``f`` (Proposition 1).

    With ``s* = 1^T v*`` and ``(I + 1 1^T)^{-1} = I - 1 1^T/(m+1)``:

    * global minimisers: ``theta = 0`` (``w = c w*``, ``c > 0``), ``v = v*``, ``f = 0``;
    * spurious local minimisers: ``theta = pi`` (``w = -c w*``), ``v = (I + 1 1^T)^{-1}
      (1 1^T - I) v* = 2 s*/(m+1) 1 - v*``; a local minimum iff ``v^T v* < 0``, i.e. iff
      ``s*^2 < (m+1)/2 ||v*||^2``;
    * saddle points: ``df/dw = 0`` needs ``v^T v* = 0``; with ``df/dv = 0``,
      ``v = (I + 1 1^T)^{-1}((1 - 2 theta/pi) I + 1 1^T) v* = c v* + (1-c) s*/(m+1) 1``,
      ``c = 1 - 2 theta/pi = -s*^2 / ((m+1)||v*||^2 - s*^2)``, i.e.
      ``theta = pi/2 * (m+1)||v*||^2 / ((m+1)||v*||^2 - s*^2)``; in ``(0, pi)`` (so they
      exist, for n >= 2) under the same condition.

    ``v_star`` must be nonzero; ``w_star`` is normalised.
    """
    v_star = _as_vector("v_star", v_star)
    w_star = _unit_w_star(_as_vector("w_star", w_star))
    if not np.any(v_star):
        raise ValueError("v_star must be nonzero (with v* = 0 the teacher is identically 0)")
    m = v_star.shape[0]
    s = float(v_star.sum())
    vv = float(v_star @ v_star)
    lhs, rhs = s * s, (m + 1) / 2.0 * vv
    exists = lhs < rhs
    ones = np.ones(m)

    def loss(v: np.ndarray, w: np.ndarray | None) -> float | None:
        return None if w is None else population_loss(v, w, v_star, w_star)

    glob = CriticalPoint("global minimiser", True, v_star.copy(), 0.0, w_star.copy(), 0.0)
    v_sp = 2.0 * s / (m + 1) * ones - v_star
    spur = CriticalPoint("spurious local minimiser", bool(exists), v_sp, math.pi, -w_star, loss(v_sp, -w_star))
    denom = (m + 1) * vv - s * s  # > 0 by Cauchy-Schwarz
    c = -s * s / denom
    theta_s = 0.5 * math.pi * (1.0 - c)
    v_sa = c * v_star + (1.0 - c) * s / (m + 1) * ones
    perp = _orthogonal_unit(w_star)
    saddle_exists = bool(exists and perp is not None)
    w_sa = None if perp is None else math.cos(theta_s) * w_star + math.sin(theta_s) * perp
    saddle = CriticalPoint("saddle point", saddle_exists, v_sa, theta_s, w_sa, loss(v_sa, w_sa))
    return CriticalPoints(
        global_min=glob, spurious_min=spur, saddle=saddle,
        condition="(1^T v*)^2 < (m+1)/2 ||v*||^2", lhs=lhs, rhs=rhs, w_star=w_star,
    )


# --------------------------------------------------------------------------- descent
@dataclass
class Trajectory:
    """A coarse-gradient-descent run: arrays of length ``steps + 1`` indexed by iterate.

    ``loss`` is the population loss f (closed form) at each iterate, ``angle`` theta,
    ``grad_v_norm``/``grad_w_norm`` the norms of the gradients computed *at* that iterate
    (the last one is computed but not applied). ``v``/``w`` hold all iterates.
    """

    ste: str
    lr: float
    n_samples: int | None
    loss: np.ndarray
    angle: np.ndarray
    w_norm: np.ndarray
    v_norm: np.ndarray
    grad_v_norm: np.ndarray
    grad_w_norm: np.ndarray
    v: np.ndarray
    w: np.ndarray

    @property
    def steps(self) -> int:
        return self.loss.shape[0] - 1

    def iterations_to(self, loss_tol: float) -> int | None:
        """First iteration k with ``loss[k] <= loss_tol`` (None if never)."""
        hit = np.flatnonzero(self.loss <= loss_tol)
        return int(hit[0]) if hit.size else None

    def max_increase(self) -> float:
        """``max_k (loss[k+1] - loss[k])`` (<= 0 for a monotone run; 0.0 with no steps)."""
        return float(np.max(np.diff(self.loss))) if self.steps else 0.0

    def is_monotone(self, atol: float = 1e-12) -> bool:
        """Whether the loss never increases by more than ``atol`` (rounding) in one step."""
        return self.max_increase() <= atol


def coarse_gradient_descent(
    v0: Any,
    w0: Any,
    v_star: Any,
    w_star: Any,
    ste: str,
    lr: float,
    steps: int,
    n_samples: int | None = None,
    generator: Any = None,
) -> Trajectory:
    r"""Coarse gradient descent ``v <- v - lr G_v``, ``w <- w - lr G_w``.

    Full batch (``n_samples=None``): ``(G_v, G_w) = (df/dv, E[g_mu])`` from the closed
    forms (:func:`expected_coarse_gradient`). Sampled: the Monte Carlo mean over
    ``n_samples`` fresh inputs per step (:func:`sample_coarse_gradient`, drawing from
    ``generator``). Returns a :class:`Trajectory` (loss, angle, ||w||, ||v||, gradient
    norms per iterate). Raises ValueError if an iterate reaches ``w = 0``.
    """
    ste = _check_ste(ste)
    v, w, v_star, w_star = _check_vectors(v0, w0, v_star, w_star)
    lr = check_positive("lr", lr)
    steps = check_int_at_least("steps", steps, 0)
    if n_samples is not None:
        n_samples = check_int_at_least("n_samples", n_samples, 1)
    _w_norm_nonzero(w, "coarse gradient descent (starting point)")
    rng = _rng(generator) if n_samples is not None else None
    m, n = v.shape[0], w.shape[0]
    V = np.empty((steps + 1, m))
    W = np.empty((steps + 1, n))
    out = {k: np.empty(steps + 1) for k in ("loss", "angle", "w_norm", "v_norm", "gv", "gw")}
    for k in range(steps + 1):
        if not np.any(w):
            raise ValueError(f"coarse gradient descent reached w = 0 at step {k}; the coarse gradient is undefined there")
        V[k], W[k] = v, w
        if n_samples is None:
            gv, gw = _expected(v, w, v_star, w_star, ste)
        else:
            gv, gw = sample_coarse_gradient(v, w, v_star, w_star, ste, n_samples, rng)
        w_norm, _, cos, sin, _ = _geometry(w, w_star, "theta")
        out["loss"][k] = _loss(v, w, v_star, w_star)
        out["angle"][k] = math.atan2(sin, cos)
        out["w_norm"][k] = w_norm
        out["v_norm"][k] = np.linalg.norm(v)
        out["gv"][k] = np.linalg.norm(gv)
        out["gw"][k] = np.linalg.norm(gw)
        if k < steps:
            v = v - lr * gv
            w = w - lr * gw
    return Trajectory(
        ste=ste, lr=lr, n_samples=n_samples, loss=out["loss"], angle=out["angle"],
        w_norm=out["w_norm"], v_norm=out["v_norm"], grad_v_norm=out["gv"], grad_w_norm=out["gw"],
        v=V, w=W,
    )
