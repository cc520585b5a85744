"""The estimator lab's gradient estimators: a registry whose entries carry their computation.

Three things in stbin are called "estimator"; this package is the second:

* :mod:`stbin.estimators` — the straight-through *functions* used in training (autograd
  Functions such as :func:`stbin.estimators.stochastic_sign`);
* :mod:`stbin.analysis.gradient_estimators` — the *gradient estimators* the lab compares
  against the true gradient (ST, deterministic proxies, REINFORCE, ARM, DisARM, Concrete),
  each a :class:`GradientEstimator` registered in :data:`GRADIENT_ESTIMATORS`;
* ``stbin estimator-lab`` (alias ``stbin estimators``) — the command that runs the lab.

=========================  ====================================================================
module                     entries
=========================  ====================================================================
:mod:`.base`               :class:`GradientEstimator`, :data:`GRADIENT_ESTIMATORS`, :func:`parse_method`
:mod:`.pathwise`           ``st``, ``det_htanh``, ``det_tanh``, ``det_identity``, ``concrete:T``, ``st_concrete:T``
:mod:`.score`              ``reinforce``, ``reinforce_baseline``, ``arm``, ``disarm``
=========================  ====================================================================

>>> from stbin.analysis.gradient_estimators import GRADIENT_ESTIMATORS
>>> sorted(GRADIENT_ESTIMATORS)[:3]
['arm', 'concrete', 'det_htanh']
"""

from stbin.analysis.gradient_estimators import pathwise, score  # noqa: F401  (register the built-ins)
from stbin.analysis.gradient_estimators.base import (GRADIENT_ESTIMATORS, GradientEstimator, NodeContext,
                                                     parse_method, register)

__all__ = ["GRADIENT_ESTIMATORS", "GradientEstimator", "NodeContext", "parse_method", "register"]
