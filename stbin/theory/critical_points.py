r"""Critical points of the population loss of the two-linear-layer model (Yin et al., ICLR 2019,
Proposition 1); see :mod:`stbin.theory.two_layer` for the model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stbin.theory._common import _as_vector, _unit_w_star
from stbin.theory.closed_forms import population_loss

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
