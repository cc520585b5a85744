"""Coarse-gradient theory of activation-quantized networks (Yin et al., ICLR 2019).

:mod:`stbin.theory.two_layer` holds the closed forms, Monte Carlo estimators, critical
points and coarse gradient descent of the two-linear-layer model with a binarized ReLU;
:mod:`stbin.theory.report` runs the experiments behind ``stbin theory``.
"""

from stbin.theory.two_layer import (
    STES,
    CriticalPoint,
    CriticalPoints,
    MonteCarloEstimate,
    Trajectory,
    angle,
    coarse_correlation,
    coarse_gradient_descent,
    critical_points,
    empirical_coarse_gradient,
    empirical_loss,
    expected_coarse_gradient,
    population_gradient,
    population_loss,
    pq,
    pq_quadrature,
    sample_coarse_gradient,
    sample_coarse_gradient_stats,
    xi,
)

__all__ = [
    "STES",
    "CriticalPoint",
    "CriticalPoints",
    "MonteCarloEstimate",
    "Trajectory",
    "angle",
    "coarse_correlation",
    "coarse_gradient_descent",
    "critical_points",
    "empirical_coarse_gradient",
    "empirical_loss",
    "expected_coarse_gradient",
    "population_gradient",
    "population_loss",
    "pq",
    "pq_quadrature",
    "sample_coarse_gradient",
    "sample_coarse_gradient_stats",
    "xi",
]
