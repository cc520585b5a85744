"""Where the trainer's batches come from: tensors in memory, or any ``Dataset`` streamed by a ``DataLoader``.

* :class:`MemorySource` — the fast path for MNIST-size data (:func:`stbin.data.load_dataset`):
  uint8 tensors on the training device, batches gathered by index, augmented and normalised
  there.
* :class:`StreamSource` — any ``torch.utils.data.Dataset`` of ``(float image C x H x W, int label)``
  (a dataset plugin, the built-in streaming datasets such as ``image_folder``, or an
  in-memory dataset with ``data.stream = true``), read through a ``DataLoader`` with
  ``data.workers`` worker processes and pinned memory on CUDA (``data.pin_memory``).

Both draw each epoch's order from the trainer's checkpointed data generator and cut it into
global batches; under ``torchrun`` each process reads its contiguous share of every global
batch (what :class:`~torch.utils.data.DistributedSampler` does, but per global batch, so
that N processes compute what one process computes on the same global batch). Datasets with
a ``set_epoch(epoch)`` method are told the epoch before it starts (their per-sample
augmentation is seeded by seed, epoch and index, so it does not depend on the number of
workers). Resuming therefore replays exactly the same batches: bit for bit on CPU.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from stbin.data.transforms import augment
from stbin.plugins import PluginError, check_item, is_plugin
from stbin.training import distributed as D


class DataError(ValueError):
    """A sample that breaks the dataset contract, or an unreadable file (one line, naming it)."""


def _unwrap(e: BaseException) -> str:
    """The original one-line message of an exception re-raised by a DataLoader worker."""
    text = str(e)
    if "Original Traceback" in text:
        last = [ln for ln in text.strip().splitlines() if ln.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


class _Collate:
    """Stack checked ``(image, label)`` items (picklable for worker processes)."""

    def __init__(self, name: str, num_classes: int, shape: tuple[int, ...]) -> None:
        self.name, self.num_classes, self.shape = name, num_classes, shape

    def __call__(self, items: list[Any]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        from stbin.data.image_folder import Skipped

        skipped = [it.path for it in items if isinstance(it, Skipped)]
        items = [it for it in items if not isinstance(it, Skipped)]
        if not items:
            return torch.empty(0, *self.shape), torch.empty(0, dtype=torch.long), skipped
        for item in items:
            try:
                check_item(item, self.num_classes, f"dataset {self.name!r}: an item", self.shape)
            except PluginError as e:
                raise DataError(str(e)) from None
        return (torch.stack([it[0] for it in items]).float(),
                torch.tensor([int(it[1]) for it in items], dtype=torch.long), skipped)


class MemorySource:
    """Batches of an in-memory :class:`~stbin.data.ImageData` (the original fast path)."""

    streaming = False

    def __init__(self, data: Any, device: torch.device, crop: int, hflip: bool) -> None:
        self.data, self.device, self.crop, self.hflip = data, device, crop, hflip
        self.name, self.input_shape, self.num_classes = data.name, data.input_shape, data.num_classes
        self.x_train, self.y_train = data.x_train.to(device), data.y_train.to(device)
        self.splits = {"test": (data.x_test, data.y_test)}
        if data.x_val is not None:
            self.splits["val"] = (data.x_val, data.y_val)
        self.n_train, self.n_test = len(self.x_train), len(data.x_test)
        self.eval_split = "val" if "val" in self.splits else "test"

    def train_batches(self, epoch: int, batch_size: int, steps: int, g_data: torch.Generator,
                      g_aug: torch.Generator, dinfo: D.DistInfo) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        perm = torch.randperm(self.n_train, generator=g_data).to(self.device)
        for s in range(steps):
            gidx = perm[s * batch_size: (s + 1) * batch_size]
            idx = D.shard(gidx, dinfo)
            xb = self.x_train[idx]
            if self.crop or self.hflip:
                xb = self.data.augment_batch(xb, self.crop, self.hflip, g_aug)
            yield self.data.prepare(xb), self.y_train[idx], len(gidx)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y = self.splits[split]
        for i in range(0, len(x), batch_size):
            yield self.data.prepare(x[i: i + batch_size].to(self.device)), y[i: i + batch_size].to(self.device)


class StreamSource:
    """Batches of ``torch.utils.data.Dataset`` objects read through a ``DataLoader``."""

    streaming = True

    def __init__(self, name: str, train: Dataset, splits: dict[str, Dataset], num_classes: int,
                 device: torch.device, workers: int = 0, pin_memory: bool | None = None, crop: int = 0,
                 hflip: bool = False, seed: int = 0) -> None:
        self.name, self.train, self.splits, self.num_classes = name, train, splits, num_classes
        self.device, self.workers, self.crop, self.hflip, self.seed = device, workers, crop, hflip, seed
        self.pin = device.type == "cuda" if pin_memory is None else bool(pin_memory) and torch.cuda.is_available()
        self.n_train, self.n_test = len(train), len(splits["test"])  # type: ignore[arg-type]
        self.eval_split = "val" if "val" in splits else "test"
        from stbin.data.image_folder import Skipped

        items = (train[i] for i in range(min(len(train), 64)))  # type: ignore[arg-type]
        first = next((it for it in items if not isinstance(it, Skipped)), None)
        if first is None:
            raise DataError(f"dataset {name!r}: none of the first 64 training items is readable")
        self.input_shape = check_item(first, num_classes, f"dataset {name!r}: train[0]")
        self.collate = _Collate(name, num_classes, self.input_shape)
        self.skipped: list[str] = []  # unreadable files skipped so far (skip_corrupt)

    def _iterate(self, ds: Dataset, batches: Any,
                 generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = DataLoader(ds, batch_sampler=batches, num_workers=self.workers, pin_memory=self.pin,
                            collate_fn=self.collate, generator=generator)
        it = iter(loader)
        while True:
            try:
                xb, yb, skipped = next(it)
            except StopIteration:
                return
            except (DataError, PluginError, OSError) as e:
                raise DataError(_unwrap(e)) from None
            except Exception as e:
                if "Original Traceback" in str(e):  # the dataset raised in a worker
                    raise DataError(f"dataset {self.name!r}: reading a sample raised {_unwrap(e)}") from None
                raise
            self.skipped += skipped
            yield xb.to(self.device, non_blocking=self.pin), yb.to(self.device, non_blocking=self.pin)

    def train_batches(self, epoch: int, batch_size: int, steps: int, g_data: torch.Generator,
                      g_aug: torch.Generator, dinfo: D.DistInfo) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        perm = torch.randperm(self.n_train, generator=g_data)
        batches = []
        for s in range(steps):
            gidx = perm[s * batch_size: (s + 1) * batch_size]
            batches.append((D.shard(gidx, dinfo).tolist(), len(gidx)))
        for ds in (self.train, *self.splits.values()):
            _set_epoch(ds, epoch)
        sizes = iter([n for _, n in batches])
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)  # the workers' base seed
        for xb, yb in self._iterate(self.train, [b for b, _ in batches], g):
            n = next(sizes)
            if not len(yb):  # every image of this share was skipped as unreadable
                continue
            if self.crop or self.hflip:
                xb = augment(xb, self.crop, self.hflip, g_aug)
            yield xb, yb, n

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ds = self.splits[split]
        n = len(ds)  # type: ignore[arg-type]
        batches = [list(range(i, min(n, i + batch_size))) for i in range(0, n, batch_size)]
        for xb, yb in self._iterate(ds, batches, torch.Generator().manual_seed(self.seed)):
            if len(yb):
                yield xb, yb


def _set_epoch(ds: Any, epoch: int) -> None:
    while isinstance(ds, Subset):
        ds = ds.dataset
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)


class _Normalised(Dataset):
    """An in-memory dataset's tensors as a Dataset of normalised float images (``data.stream = true``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.x, self.y = x, y
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return (self.x[i].float() / 255.0 - self.mean) / self.std, int(self.y[i])


def _limit(ds: Dataset, n: int | None) -> Dataset:
    return ds if n is None or n >= len(ds) else Subset(ds, range(n))  # type: ignore[arg-type]


def check_data_options(cfg: Any) -> None:
    """Validate the keys of ``[data]`` that this module reads (one ValueError naming key and value)."""
    d = cfg.data
    if not isinstance(d.workers, int) or isinstance(d.workers, bool) or d.workers < 0:
        raise ValueError(f"data.workers must be an integer >= 0, got {d.workers!r}")
    for key in ("pin_memory", "stream"):
        v = getattr(d, key)
        if v is not None and not isinstance(v, bool):
            raise ValueError(f"data.{key} must be true or false, got {v!r}")


def open_source(cfg: Any, device: torch.device) -> tuple[MemorySource | StreamSource, float]:
    """The batch source of ``cfg.data`` and the seconds it took to open it."""
    from stbin._registry import unknown_name_message
    from stbin.data import DATASETS, load_dataset
    from stbin.data.streaming import STREAMING

    check_data_options(cfg)
    d = cfg.data
    t0 = time.perf_counter()
    splits: dict[str, Dataset]
    if d.name in DATASETS and not d.stream:
        data = load_dataset(d.name, root=d.root, val_size=d.val_size, train_limit=d.train_limit,
                            test_limit=d.test_limit, seed=cfg.seed, **dict(d.options))
        crop = data.augment.get("crop_padding", 0) if d.crop_padding is None else d.crop_padding
        hflip = data.augment.get("hflip", False) if d.hflip is None else d.hflip
        return MemorySource(data, device, crop, hflip), time.perf_counter() - t0
    crop, hflip = d.crop_padding or 0, bool(d.hflip)
    if d.name in DATASETS:  # data.stream = true: the same tensors, read item by item
        data = load_dataset(d.name, root=d.root, train_limit=d.train_limit, test_limit=d.test_limit,
                            seed=cfg.seed, **dict(d.options))
        crop = data.augment.get("crop_padding", 0) if d.crop_padding is None else d.crop_padding
        hflip = data.augment.get("hflip", False) if d.hflip is None else d.hflip
        train: Dataset = _Normalised(data.x_train, data.y_train, data.mean, data.std)
        test: Dataset = _Normalised(data.x_test, data.y_test, data.mean, data.std)
        k = data.num_classes
    elif d.name in STREAMING:
        opener = STREAMING.get(d.name)
        accepted = sorted(set(inspect.signature(opener).parameters) - {"root", "seed"})
        for key in d.options:
            if key not in accepted:
                raise ValueError(unknown_name_message(f"option of dataset {d.name!r}", key, accepted))
        train, test, k = opener(root=d.root, seed=cfg.seed, **dict(d.options))
    elif is_plugin(d.name):
        from stbin.plugins import load_dataset_plugin
        train, test, k = load_dataset_plugin(d.name, d.root, **dict(d.options))
    else:
        raise ValueError(unknown_name_message("dataset", d.name, DATASETS.names() + STREAMING.names()) +
                         " (or an import path 'package.module:factory')")
    train, test = _limit(train, d.train_limit), _limit(test, d.test_limit)
    splits = {"test": test}
    if d.val_size:
        n = len(train)  # type: ignore[arg-type]
        if not 0 < d.val_size < n:
            raise ValueError(f"data.val_size must be between 1 and {n - 1} for {d.name}, got {d.val_size}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))
        splits["val"] = Subset(train, perm[: d.val_size].sort().values.tolist())
        train = Subset(train, perm[d.val_size:].sort().values.tolist())
    src = StreamSource(d.name, train, splits, k, device, d.workers, d.pin_memory, crop, hflip, cfg.seed)
    return src, time.perf_counter() - t0


@torch.no_grad()
def evaluate_source(model: torch.nn.Module, source: MemorySource | StreamSource, split: str, mode: str,
                    batch_size: int, samples: int = 1) -> dict[str, float]:
    """Accuracy (%) and loss of ``model`` in ``mode`` on ``split``; ``samples`` > 1 averages sampled softmaxes."""
    from stbin.training.evaluation import evaluate_batches

    return evaluate_batches(model, source.eval_batches(split, batch_size), mode, samples)


__all__ = ["MemorySource", "StreamSource", "DataError", "open_source", "evaluate_source", "check_data_options"]
