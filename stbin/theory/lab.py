"""Configuration and set-up of the theory lab behind ``stbin theory``: the sizes of the
experiments (:class:`TheoryConfig`), the tolerances that classify runs, and the random
teacher and starting points."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from stbin.theory import two_layer as tl

#: Loss below which a run counts as having reached the global minimum.
GLOBAL_TOL = 1e-6
#: Combined gradient norm below which a run counts as converged to a critical point.
GRAD_TOL = 1e-6
#: A one-step loss increase larger than this is not rounding (losses here are O(1)).
MONOTONE_ATOL = 1e-12
#: A closed-form value (or vector norm) this small is zero up to rounding (values here are O(1)).
ZERO_TOL = 1e-12

#: min ||w|| below which a run counts as having passed (near) the origin.
COLLAPSE = 0.05

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
        if self.steps * (self.m + self.n) > MAX_ITERATE_VALUES:
            raise ValueError(f"steps x (m + n) must be <= {MAX_ITERATE_VALUES:.0e} (a trajectory keeps every iterate, "
                             f"8 bytes a value), got {self.steps} x ({self.m} + {self.n})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")



#: the most values the iterates of one descent trajectory may hold (steps x (m + n); 800 MB as float64)
MAX_ITERATE_VALUES = 100_000_000


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
