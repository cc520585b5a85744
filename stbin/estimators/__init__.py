"""Straight-through estimators as autograd Functions with closed-form backward.

Every estimator is registered by name in :data:`ESTIMATORS`; its sub-choices (noises, sign
proxies, STEs) have registries of their own. The math of each one (forward, backward,
the noise it corresponds to, references) is in its module's docstring:

==========================  ===================================  =====================================
function                    module                               what
==========================  ===================================  =====================================
:func:`stochastic_sign`     :mod:`stbin.estimators.stochastic`   noise-injected sign, principled ST
:func:`sign`                :mod:`stbin.estimators.sign`         deterministic sign, backward proxies
:func:`heaviside`           :mod:`stbin.estimators.heaviside`    binarized ReLU 1[x>0], STEs
:func:`quant_relu`          :mod:`stbin.estimators.quant_relu`   b-bit quantized ReLU, STEs
:func:`magnitude_aware_sign` :mod:`stbin.estimators.magnitude`   per-channel scaled sign for weights
:func:`bernoulli_weight`    :mod:`stbin.estimators.latent`       Bernoulli weights, latent backward
==========================  ===================================  =====================================

**NaN policy.** A NaN input propagates: every estimator maps a NaN element to a NaN output
element, in every mode (``sign``, ``stochastic_sign`` and ``bernoulli_weight`` in
``sample``/``mode``/``mean``, ``magnitude_aware_sign``, ``heaviside``, ``quant_relu``), and
its backward gives NaN there too. A NaN pre-activation or latent weight means that training
has diverged; mapping it silently to -1 (what a comparison ``a >= 0`` does) would hide
that, whereas a NaN output reaches the loss, where :mod:`stbin.training` stops at the first
non-finite loss. Infinities are ordinary values: ``sign(+-inf) = +-1``.
"""

from __future__ import annotations

from typing import Callable

from stbin._registry import Registry
from stbin.estimators.heaviside import heaviside
from stbin.estimators.latent import bernoulli_weight
from stbin.estimators.magnitude import magnitude_aware_sign
from stbin.estimators.noise import NOISES, Noise, get_noise
from stbin.estimators.quant_relu import lloyd_alpha, quant_relu
from stbin.estimators.sign import SIGN_PROXIES, sign
from stbin.estimators.ste import STES
from stbin.estimators.stochastic import stochastic_sign

ESTIMATORS: Registry[Callable[..., object]] = Registry("estimator")
ESTIMATORS.register("stochastic_sign", stochastic_sign)
ESTIMATORS.register("sign", sign)
ESTIMATORS.register("heaviside", heaviside)
ESTIMATORS.register("quant_relu", quant_relu)
ESTIMATORS.register("magnitude_aware_sign", magnitude_aware_sign)
ESTIMATORS.register("bernoulli_weight", bernoulli_weight)


def get_estimator(name: str) -> Callable[..., object]:
    """The estimator function registered as ``name`` (ValueError listing valid names if unknown)."""
    return ESTIMATORS.get(name)


__all__ = [
    "ESTIMATORS", "NOISES", "SIGN_PROXIES", "STES", "Noise",
    "get_estimator", "get_noise",
    "stochastic_sign", "sign", "heaviside", "quant_relu", "lloyd_alpha", "magnitude_aware_sign",
    "bernoulli_weight",
]
