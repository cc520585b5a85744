"""stbin: binary and few-bit neural networks with principled straight-through estimators.

The sub-packages, in layer order (each imports only from those above it):

* ``stbin.estimators`` - autograd Functions: stochastic and deterministic sign, Heaviside,
  quantized ReLU, magnitude-aware weight sign, each registered by name;
* ``stbin.nn`` - modules: binary activations, BinaryLinear, BinaryConv2d, QuantReLU;
* ``stbin.optim`` - latent-weight updates (mirror descent), Bop, flip ratio;
* ``stbin.analysis`` - the estimator-accuracy lab (exact gradients by enumeration);
* ``stbin.theory`` - coarse-gradient theory of activation-quantized networks;
* ``stbin.data`` - offline datasets, registered by name, and batch transforms;
* ``stbin.models`` - models (MLPs, LeNet-5, VGG, ResNet), registered by name;
* ``stbin.training`` - the trainer, its configuration and presets, checkpoints, summaries;
* ``stbin.recipes`` - paper-reproduction recipes behind ``stbin reproduce``;
* ``stbin.deploy`` - bit-packed export and the CPU XNOR-popcount inference engine;
* ``stbin.reporting`` - Markdown tables, figures and the palette shared by every report;
* ``stbin.cli`` - the ``stbin`` command.

Training from Python: ``stbin.train(config)`` (a ``stbin.Config``, a dict or a TOML path)
returns a ``stbin.TrainResult`` (run folder, final metrics, model); see docs/training.md.

>>> import torch
>>> from stbin.nn import BinaryLinear
>>> layer = BinaryLinear(4, 3)
>>> layer(torch.randn(2, 4)).shape
torch.Size([2, 3])
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
