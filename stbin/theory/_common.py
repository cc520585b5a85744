"""Shared pieces of :mod:`stbin.theory.two_layer`: the STE names, constants and the input checks
(conventions in the docstring of :mod:`stbin.theory.two_layer`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stbin._registry import check_choice

#: Names of the straight-through estimators mu (the backward derivative that replaces
#: sigma' = 0): ``identity`` mu' = 1, ``relu`` mu' = 1[x > 0], ``clipped_relu`` mu' = 1[0 < x < 1].
STES: tuple[str, ...] = ("identity", "relu", "clipped_relu")

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SQRT_2 = math.sqrt(2.0)
#: below this value of sin(theta) the direction e_perp is numerical noise; theta is then
#: treated as exactly 0 or pi (see population_gradient).
_SIN_EPS = 1e-12


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
