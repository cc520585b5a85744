"""Estimator-accuracy lab: exact gradients of small stochastic binary networks, how close each
gradient estimator gets to them, and gradient quality at real scale.

=================================  ==============================================  ===================================
function                           module                                          what
=================================  ==============================================  ===================================
:func:`exact_expected_loss`        :mod:`stbin.analysis.exact`                     expected loss by enumeration
:func:`exact_gradients`            :mod:`stbin.analysis.exact`                     the true gradient (autograd of it)
:data:`GRADIENT_ESTIMATORS`        :mod:`stbin.analysis.gradient_estimators`       registry of the lab's estimators
:func:`estimate_gradients`         :mod:`stbin.analysis.sampling`                  mean of n single-sample estimates
:func:`sample_gradients`           :mod:`stbin.analysis.sampling`                  every single-sample estimate
:func:`expected_estimate`          :mod:`stbin.analysis.sampling`                  exact mean of an estimator
:func:`estimator_metrics`          :mod:`stbin.analysis.metrics`                   bias, variance, RMSE, cosine vs M
:func:`run_lab`                    :mod:`stbin.analysis.protocol`                  reference protocol and sweeps
:func:`reference_sample`           :mod:`stbin.analysis.reference`                 unbiased reference, real networks
:func:`gradient_quality`           :mod:`stbin.analysis.quality`                   estimators vs reference, with CIs
=================================  ==============================================  ===================================

The lab's small models: ``nn.Sequential`` of ``nn.Linear``, :class:`stbin.nn.StochasticSign`
(every noise and scale), :class:`stbin.nn.BinaryLinear` with Bernoulli weights (tiny nets),
``nn.Identity`` and leading ``nn.Flatten``. ``loss_fn(output, target)`` returns per-example
losses; expectations are averaged over the batch. The ``stbin estimator-lab`` command runs
the protocol and writes a CSV, plots and a Markdown report.
"""

from stbin.analysis.exact import exact_expected_loss, exact_gradients, exact_per_example_loss
from stbin.analysis.gradient_estimators import GRADIENT_ESTIMATORS, GradientEstimator, parse_method
from stbin.analysis.metrics import DEFAULT_MS, estimator_metrics, group_metrics
from stbin.analysis.protocol import (DEFAULT_METHODS, LabConfig, LabResult, logistic_loss, reference_data,
                                     reference_network, run_lab, train_snapshots)
from stbin.analysis.quality import QualityResult, gradient_quality
from stbin.analysis.reference import reference_sample
from stbin.analysis.sampling import estimate_gradients, expected_estimate, sample_gradients

#: the former name of :data:`GRADIENT_ESTIMATORS`
METHODS = GRADIENT_ESTIMATORS

__all__ = [
    "GRADIENT_ESTIMATORS", "GradientEstimator", "METHODS", "parse_method", "DEFAULT_METHODS", "DEFAULT_MS",
    "exact_expected_loss", "exact_gradients", "exact_per_example_loss",
    "estimate_gradients", "sample_gradients", "expected_estimate",
    "estimator_metrics", "group_metrics",
    "gradient_quality", "QualityResult", "reference_sample",
    "LabConfig", "LabResult", "logistic_loss", "reference_data", "reference_network", "run_lab", "train_snapshots",
]
