"""CIFAR-10 from the standard ``cifar-10-batches-py`` folder. Nothing is downloaded.

The folder holds ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, pickles of dicts
``{b"data": uint8 (N, 3072), b"labels": [N ints], ...}``; they are read with the restricted
unpickler of :mod:`stbin.data.safe_pickle` (NumPy arrays only, no code).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stbin._registry import check_choice
from stbin.data.safe_pickle import load_numpy_pickle

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _missing(root: Path | None, detail: str) -> FileNotFoundError:
    where = "no folder given" if root is None else f"{detail} in {root}"
    return FileNotFoundError(
        f"CIFAR-10 not found ({where}); it cannot be downloaded here: fetch {CIFAR10_URL} on a machine "
        "with internet access, extract it and pass the cifar-10-batches-py folder (e.g. --data-root PATH)")


def cifar10_folder(root: str | Path | None) -> Path:
    """The ``cifar-10-batches-py`` folder: ``root`` itself or its child of that name."""
    if root is None:
        raise _missing(None, "")
    root = Path(root)
    for cand in (root, root / "cifar-10-batches-py"):
        if (cand / "test_batch").is_file():
            return cand
    raise _missing(root, "no test_batch")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise _missing(path.parent, f"no {path.name}")
    obj = load_numpy_pickle(path, encoding="bytes")
    if not isinstance(obj, dict):
        raise ValueError(f"{path} is not a CIFAR-10 batch (expected a dict)")
    get = lambda k: obj.get(k.encode(), obj.get(k))  # noqa: E731  (bytes keys; str if re-pickled)
    data, labels = get("data"), get("labels")
    if data is None or labels is None:
        raise ValueError(f"{path} is not a CIFAR-10 batch (no data/labels)")
    try:
        data = np.asarray(data, dtype=np.uint8)
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"{path} is not a CIFAR-10 batch (data/labels are not arrays of integers: {e})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ValueError(f"{path}: data {data.shape} / labels {labels.shape} are not CIFAR-10 shaped")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(split: str = "train", root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 ``split`` as uint8 images (N, 3, 32, 32) and int64 labels.

    Args:
        split: ``"train"`` (the five data batches, 50000 images) or ``"test"`` (10000).
        root: the ``cifar-10-batches-py`` folder or its parent; FileNotFoundError saying
            where to get it when it is missing.

    Shape:
        images (N, 3, 32, 32) uint8, labels (N,) int64 in 0..9 (:data:`CIFAR10_CLASSES`).

    >>> x, y = load_cifar10("test", root="data/cifar-10-batches-py")  # doctest: +SKIP
    >>> x.shape                                                       # doctest: +SKIP
    torch.Size([10000, 3, 32, 32])
    """
    check_choice("split", split, ("train", "test"))
    folder = cifar10_folder(root)
    parts = [_read_batch(folder / name) for name in CIFAR10_FILES[split]]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(x), torch.from_numpy(y)
