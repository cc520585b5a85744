"""Estimator-accuracy lab: exact gradients of small stochastic binary networks, and how close
each gradient estimator gets to them (SPEC A4).

=================================  =======================================  ===============================
function                           module                                   what
=================================  =======================================  ===============================
:func:`exact_expected_loss`        :mod:`stbin.analysis.exact`              expected loss by enumeration
:func:`exact_gradients`            :mod:`stbin.analysis.exact`              the true gradient (autograd of it)
:func:`estimate_gradients`         :mod:`stbin.analysis.estimators`         mean of n single-sample estimates
:func:`sample_gradients`           :mod:`stbin.analysis.estimators`         every single-sample estimate
:func:`expected_estimate`          :mod:`stbin.analysis.estimators`         exact mean of an estimator
:func:`estimator_metrics`          :mod:`stbin.analysis.metrics`            bias, variance, RMSE, cosine vs M
:func:`run_lab`                    :mod:`stbin.analysis.protocol`           reference protocol and sweeps
=================================  =======================================  ===============================

Supported models: ``nn.Sequential`` of ``nn.Linear``, :class:`stbin.nn.StochasticSign`
(every noise and scale), :class:`stbin.nn.BinaryLinear` with Bernoulli weights (tiny nets),
``nn.Identity`` and leading ``nn.Flatten``. ``loss_fn(output, target)`` returns per-example
losses; expectations are averaged over the batch. The ``stbin estimators`` command runs the
protocol and writes a CSV, plots and a Markdown report.
"""

from stbin.analysis.estimators import METHODS, estimate_gradients, expected_estimate, sample_gradients
from stbin.analysis.exact import exact_expected_loss, exact_gradients, exact_per_example_loss
from stbin.analysis.metrics import DEFAULT_MS, estimator_metrics, group_metrics
from stbin.analysis.protocol import (DEFAULT_METHODS, LabConfig, LabResult, logistic_loss, reference_data,
                                     reference_network, run_lab, train_snapshots)

__all__ = [
    "METHODS", "DEFAULT_METHODS", "DEFAULT_MS",
    "exact_expected_loss", "exact_gradients", "exact_per_example_loss",
    "estimate_gradients", "sample_gradients", "expected_estimate",
    "estimator_metrics", "group_metrics",
    "LabConfig", "LabResult", "logistic_loss", "reference_data", "reference_network", "run_lab", "train_snapshots",
]
