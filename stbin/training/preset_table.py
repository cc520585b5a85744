"""The preset table: plain data (no imports of the config module), described in :mod:`stbin.training.presets`."""

from __future__ import annotations

import copy
from typing import Any

DEFAULT_PRESET = "sbn_mnist"

_SBN = {"activation": "stochastic", "noise": "logistic", "scale": 1.0, "weights": "bernoulli",
        "weight_noise": "logistic", "weight_noise_scale": 1.0}

# Conv nets: sharper Bernoulli weights (s_w = 0.1) and a 3x latent learning rate. On LeNet-5 / MNIST
# (2 epochs) the MLP's settings (s_w = 1, latent lr 0.01) stayed at chance; these reach 96.8% (mode).
_SBN_CONV = {**_SBN, "weight_noise_scale": 0.1}


def _sbn_conv(name: str, data: str, model: str, epochs: int, batch_size: int) -> dict[str, Any]:
    """A conv-net SBN preset: ``_SBN_CONV`` weights, Adam lr 0.01 with the 3x latent learning rate."""
    return {
        "out_dir": f"runs/{name}",
        "data": {"name": data},
        "model": {"name": model, **_SBN_CONV},
        "optim": {"name": "adam", "lr": 0.01, "latent_lr_scale": 3.0},
        "train": {"epochs": epochs, "batch_size": batch_size},
    }


PRESETS: dict[str, dict[str, Any]] = {
    "sbn_mnist": {
        "out_dir": "runs/sbn_mnist",
        "data": {"name": "mnist"},
        "model": {"name": "mlp", "hidden": [512, 512, 512], **_SBN, "weight_noise_scale": 0.1, "binary_first": True},
        "optim": {"name": "adam", "lr": 0.03, "latent": "mirror", "latent_lr_scale": 3.0},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 4, "batch_size": 100},
        "eval": {"ensemble": 10},
    },
    "lenet5_mnist": _sbn_conv("lenet5_mnist", "mnist", "lenet5", 10, 100),
    "binarynet_cifar10": {
        "out_dir": "runs/binarynet_cifar10",
        "data": {"name": "cifar10"},
        "model": {"name": "binarynet_vgg", "activation": "sign", "proxy": "htanh", "weights": "sign"},
        "optim": {"name": "adam", "lr": 0.005, "clip": 1.0},
        "train": {"epochs": 200, "batch_size": 100},
    },
    "sbn_conv_cifar10": _sbn_conv("sbn_conv_cifar10", "cifar10", "sbn_conv", 200, 64),
    "vgg11_cifar10": _sbn_conv("vgg11_cifar10", "cifar10", "vgg11", 200, 128),
    "resnet20_cifar10": _sbn_conv("resnet20_cifar10", "cifar10", "resnet20", 200, 128),
    "tiny": {
        "out_dir": "runs/tiny",
        "data": {"name": "synthetic", "options": {"n_train": 512, "n_test": 256}},
        "model": {"name": "mlp", "hidden": [128, 128], **_SBN},
        "optim": {"name": "adam", "lr": 0.05},
        "train": {"epochs": 3, "batch_size": 32, "eval_batch_size": 256},
        "eval": {"ensemble": 3},
    },
}
PRESETS["sbn_mnist_full"] = merge_dict = copy.deepcopy(PRESETS["sbn_mnist"])
merge_dict.update({"out_dir": "runs/sbn_mnist_full", "train": {"epochs": 20, "batch_size": 100}})
PRESETS["sbn_fashion_mnist"] = fm = copy.deepcopy(PRESETS["sbn_mnist_full"])
fm.update({"out_dir": "runs/sbn_fashion_mnist", "data": {"name": "fashion_mnist"}})
del merge_dict, fm
