r"""Coarse gradients of a two-linear-layer network with a binarized ReLU (Yin et al., ICLR 2019).

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

The closed forms (the clipped-ReLU one derived here, not taken from the paper, and checked by
Monte Carlo) are derived in ``docs/theory.md``.

Layout: :mod:`stbin.theory.closed_forms` (loss, gradients, expected coarse gradients,
``p``, ``q``), :mod:`stbin.theory.sampling` (empirical and Monte Carlo estimates),
:mod:`stbin.theory.critical_points`, :mod:`stbin.theory.descent`; this module gathers them.
"""

from __future__ import annotations

from stbin.theory._common import STES
from stbin.theory.closed_forms import (
    angle,
    coarse_correlation,
    expected_coarse_gradient,
    population_gradient,
    population_loss,
    pq,
    pq_quadrature,
    xi,
)
from stbin.theory.critical_points import CriticalPoint, CriticalPoints, critical_points
from stbin.theory.descent import Trajectory, coarse_gradient_descent
from stbin.theory.sampling import (
    MonteCarloEstimate,
    _default_chunk,  # noqa: F401  (used by benchmarks/bench_theory.py)
    empirical_coarse_gradient,
    empirical_loss,
    sample_coarse_gradient,
    sample_coarse_gradient_stats,
)

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
