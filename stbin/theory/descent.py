r"""Coarse gradient descent on the two-linear-layer model (see :mod:`stbin.theory.two_layer`),
full batch (expected coarse gradients) or sampled."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from stbin._validation import check_int_at_least, check_positive
from stbin.theory._common import _check_ste, _check_vectors, _geometry, _rng, _w_norm_nonzero
from stbin.theory.closed_forms import _expected, _loss
from stbin.theory.sampling import sample_coarse_gradient

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


class DescentDiverged(ValueError):
    """Coarse gradient descent whose iterate became infinite or NaN (the learning rate is too large)."""


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
    norms per iterate). Raises ValueError if an iterate reaches ``w = 0``, and
    :class:`DescentDiverged` (a ValueError) if it overflows (``lr`` too large).
    """
    ste = _check_ste(ste)
    v, w, v_star, w_star = _check_vectors(v0, w0, v_star, w_star)
    lr = check_positive("lr", lr)
    steps = check_int_at_least("steps", steps, 0)
    if n_samples is not None:
        n_samples = check_int_at_least("n_samples", n_samples, 1)
    _w_norm_nonzero(w, "coarse gradient descent (starting point)")
    rng = _rng(generator) if n_samples is not None else None
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is caught below, as DescentDiverged
        return _descend(v, w, v_star, w_star, ste, lr, steps, n_samples, rng)


def _descend(v: np.ndarray, w: np.ndarray, v_star: np.ndarray, w_star: np.ndarray, ste: str, lr: float, steps: int,
             n_samples: int | None, rng: Any) -> Trajectory:
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
            if not (np.all(np.isfinite(v)) and np.all(np.isfinite(w))):
                raise DescentDiverged(f"coarse gradient descent with the {ste} STE diverged at step {k + 1}: the "
                                      f"iterate overflowed; lr = {lr:g} is too large for this problem")
    return Trajectory(
        ste=ste, lr=lr, n_samples=n_samples, loss=out["loss"], angle=out["angle"],
        w_norm=out["w_norm"], v_norm=out["v_norm"], grad_v_norm=out["gv"], grad_w_norm=out["gw"],
        v=V, w=W,
    )
