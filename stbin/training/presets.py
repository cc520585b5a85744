"""Named training presets. ``stbin train --preset NAME``; the default is :data:`DEFAULT_PRESET`.

=====================  ==========================================================================
preset                 what
=====================  ==========================================================================
``sbn_mnist``          **default / the main job**: all-binary stochastic MLP 784-512-512-512-10 on
                       MNIST (Bernoulli logistic weights with s_w = 0.1 in the first three layers,
                       logistic stochastic binary units, principled ST; only the last layer and
                       BN real-valued), Adam (latent lr 3x) with mirror-descent latent updates,
                       cosine schedule, 4 epochs (~1-3 min on 2 CPU cores)
``sbn_mnist_full``     the same, 20 epochs
``sbn_fashion_mnist``  the same network on Fashion-MNIST, 20 epochs
``lenet5_mnist``       LeNet-5 with stochastic binary units and Bernoulli weights (s_w = 0.1) on MNIST
``binarynet_cifar10``  BinaryNet VGG (sign activations, sign weights, htanh ST) on CIFAR-10
``sbn_conv_cifar10``   the all-binary stochastic conv net on CIFAR-10
``vgg11_cifar10``      VGG-11 with stochastic binary units / Bernoulli weights on CIFAR-10
``resnet20_cifar10``   ResNet-20 with stochastic binary units / Bernoulli weights on CIFAR-10
``tiny``               a few seconds on synthetic data (tests, smoke runs)
=====================  ==========================================================================

:func:`float_twin` turns any config into its real-valued twin (ReLU units, real weights),
used by the throughput benchmark.
"""

from __future__ import annotations

import copy

from stbin.training.config import Config, get_preset
from stbin.training.preset_table import DEFAULT_PRESET, PRESETS


def preset_names() -> list[str]:
    return sorted(PRESETS)


def float_twin(cfg: Config) -> Config:
    """The same run with real-valued units (ReLU) and real weights: the float baseline."""
    cfg = copy.deepcopy(cfg)
    cfg.model.update({"activation": "relu", "weights": "real"})
    return cfg


__all__ = ["DEFAULT_PRESET", "PRESETS", "get_preset", "preset_names", "float_twin"]
