"""Modules: binary activations, binary-weight layers, quantized ReLU; converting float models.

=========================  ============================================================
module                     what
=========================  ============================================================
:class:`StochasticSign`    noise-injected sign activation (principled ST)
:class:`Sign`              deterministic sign with an ST proxy
:class:`Heaviside`         binarized ReLU 1[x>0] with an STE
:class:`QuantReLU`         b-bit quantized ReLU with an STE
:class:`BinaryLinear`      linear layer with Bernoulli or sign binary weights
:class:`BinaryConv2d`      2-D convolution with Bernoulli or sign binary weights
=========================  ============================================================

Every one of them is a :class:`BinaryModule` registered in :data:`BINARY_MODULES` with its
options and its declared :class:`Precision` (``module.precision``); the weight layers derive
from :class:`BinaryWeightLayer`. :func:`binarize` converts any float ``nn.Module`` (with a
report of what it replaced and kept), :func:`load_float_state_dict` maps a float checkpoint
onto a binarized model. :func:`eval_mode` / :func:`set_eval_mode` switch a network between
deterministic (mode), mean-field and sampled evaluation; :func:`ensemble_predict` averages
K sampled networks.
"""

from stbin.nn.registry import BINARY_MODULES, BinaryModule, BinaryModuleType, Precision, precision_of, \
    register_binary_module
from stbin.nn.activations import Heaviside, QuantReLU, Sign, StochasticSign
from stbin.nn.binary import BinaryConv2d, BinaryLinear, BinaryWeightLayer
from stbin.nn.modes import ensemble_predict, eval_mode, set_eval_mode, stochastic_modules
from stbin.nn.convert import FLOAT_ACTIVATIONS, BinarizeReport, binarize, register_float_activation
from stbin.nn.float_checkpoint import FloatLoadReport, load_float_state_dict


def _import_all_modules() -> None:
    """Import every public module of this package, so that a new file registering a module type
    (``@register_binary_module``) is all it takes to add one. Private modules (``_name``: kernels,
    helpers) are imported by the modules that use them, when they use them."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_all_modules()

__all__ = ["StochasticSign", "Sign", "Heaviside", "QuantReLU", "BinaryLinear", "BinaryConv2d", "BinaryWeightLayer",
           "BinaryModule", "BinaryModuleType", "BINARY_MODULES", "Precision", "precision_of", "register_binary_module",
           "eval_mode", "set_eval_mode", "ensemble_predict", "stochastic_modules",
           "binarize", "BinarizeReport", "FLOAT_ACTIVATIONS", "register_float_activation",
           "load_float_state_dict", "FloatLoadReport"]
