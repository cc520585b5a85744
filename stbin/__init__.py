"""stbin: binary and few-bit neural networks with principled straight-through estimators.

Layers of the package (each a sub-package):

* :mod:`stbin.estimators` — autograd Functions: stochastic and deterministic sign,
  Heaviside, quantized ReLU, magnitude-aware weight sign (the math is in each docstring);
* :mod:`stbin.nn` — modules: activations, ``BinaryLinear``, ``BinaryConv2d``, ``QuantReLU``;
* :mod:`stbin.optim` — latent-weight updates (mirror descent), Bop, flip ratio;
* :mod:`stbin.analysis` — estimator-accuracy lab (exact gradients by enumeration);
* :mod:`stbin.theory` — coarse-gradient theory of activation-quantized networks;
* :mod:`stbin.data` — offline datasets;
* :mod:`stbin.cli` — the ``stbin`` command.

Training from Python: ``stbin.train(config)`` (a :class:`stbin.Config`, a dict or a TOML path)
returns a :class:`stbin.TrainResult` (run folder, final metrics, model); see docs/training.md.
"""

from typing import Any

__version__ = "0.1.0"

# Lazy exports: ``import stbin`` (and ``stbin --help``) stays free of torch until one is used.
_EXPORTS = {
    "train": "stbin.training.api", "TrainResult": "stbin.training.api",
    "Config": "stbin.training.config", "DataConfig": "stbin.training.config",
    "OptimConfig": "stbin.training.config", "ScheduleConfig": "stbin.training.config",
    "TrainConfig": "stbin.training.config", "EvalConfig": "stbin.training.config",
    "LogConfig": "stbin.training.config",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stbin' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = ["train", "TrainResult", "Config", "DataConfig", "OptimConfig", "ScheduleConfig", "TrainConfig",
           "EvalConfig", "LogConfig", "__version__"]
