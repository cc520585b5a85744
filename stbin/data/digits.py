"""The scikit-learn ``digits`` set (1797 8x8 images, 10 classes), read from the installed package.

The data file ``sklearn/datasets/data/digits.csv.gz`` is read directly (no scikit-learn
import, nothing downloaded). Pixel values 0..16 are mapped to uint8 0..255. The split is
a fixed, seeded 80/20 train/test split.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from stbin._registry import check_choice


def digits_file() -> Path:
    """Path of ``digits.csv.gz`` in the installed scikit-learn (FileNotFoundError if none)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the digits set comes with scikit-learn: pip install scikit-learn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"scikit-learn is installed but has no {path}")
    return path


def load_digits(split: str = "train", test_fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits ``split`` as uint8 images (N, 8, 8) and int64 labels (fixed seeded split).

    Args:
        split: ``"train"`` or ``"test"``.
        test_fraction: the share of the 1797 images in the test split.
        seed: the seed of the split's permutation.

    Shape:
        images (N, 8, 8) uint8 in 0..255, labels (N,) int64 in 0..9.

    >>> x, y = load_digits("test")  # doctest: +SKIP
    >>> x.shape                     # doctest: +SKIP
    torch.Size([359, 8, 8])
    """
    check_choice("split", split, ("train", "test"))
    with gzip.open(digits_file(), "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.float64)
    x = np.rint(arr[:, :64] * 255.0 / 16.0).clip(0, 255).astype(np.uint8).reshape(-1, 8, 8)
    y = arr[:, 64].astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    idx = perm[n_test:] if split == "train" else perm[:n_test]
    return torch.from_numpy(x[idx].copy()), torch.from_numpy(y[idx].copy())
