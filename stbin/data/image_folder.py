"""``image_folder``: class-subfolder image datasets (ImageNet layout) streamed from disk.

Layout: ``root/train/<class>/...png|jpg|jpeg`` and ``root/val/<class>/...`` (or ``root/test``);
classes are the sorted subfolder names of ``train/``. Only the file list is held in memory
(one numpy byte array, no per-file Python objects, so worker processes do not copy it);
images are decoded with Pillow when read (``pip install 'stbin[images]'``).

Options (``[data] options = {...}``):

* ``image_size`` — H (square) or [H, W] of the network input (default: the first training
  image's size);
* ``augment`` — ``"none"`` (default), ``"crop"`` (resize, then random crop with ``padding``
  zero pixels on each side, default 4: the CIFAR recipe of He et al., CVPR 2016) or
  ``"resized_crop"`` (random area ``scale`` in [0.08, 1] and aspect ratio in [3/4, 4/3],
  resized to ``image_size``: the ImageNet recipe of Szegedy et al., CVPR 2015; evaluation
  then resizes the shorter side to ``image_size / 0.875`` and takes the centre crop);
* ``hflip`` — random horizontal flips (default false);
* ``mean`` / ``std`` — per-channel normalisation (default: computed on ``norm_samples``
  training images, default 500, seeded);
* ``channels`` — 3 (RGB, default) or 1 (grayscale);
* ``skip_corrupt`` — skip unreadable images and count them (default false: such a file
  stops the run with one line naming it).

Augmentation of item ``i`` in epoch ``e`` draws from a generator seeded by (seed, e, i), so
it is reproducible, resumable and independent of the number of workers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from stbin.data.streaming import STREAMING

EXTENSIONS = (".png", ".jpg", ".jpeg")
AUGMENTS = ("none", "crop", "resized_crop")


class Skipped:
    """Placeholder item for an unreadable image (``skip_corrupt = true``); dropped by the collation."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason


def _pil() -> Any:
    from stbin._extras import require_extra

    require_extra("PIL", "PIL.Image", extra="images", purpose='data.name = "image_folder"', name="Pillow")
    from PIL import Image
    return Image


def scan(folder: Path, classes: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(paths as a byte array, labels, class names) of ``folder/<class>/**/*.png|jpg|jpeg``, sorted."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder: no folder {folder}")
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if classes is None:
        classes = found
    else:
        extra = [c for c in found if c not in classes]
        if extra:
            raise ValueError(f"image folder: {folder} has class folders that train/ lacks: {', '.join(extra[:5])}")
    if not classes:
        raise ValueError(f"image folder: {folder} has no class subfolders")
    paths, labels = [], []
    for k, c in enumerate(classes):
        if not (folder / c).is_dir():
            continue
        for dirpath, dirnames, files in os.walk(folder / c):
            dirnames.sort()
            for f in sorted(files):
                if f.lower().endswith(EXTENSIONS):
                    paths.append(os.path.join(dirpath, f).encode())
                    labels.append(k)
    if not paths:
        raise ValueError(f"image folder: no .png/.jpg/.jpeg files under {folder}")
    return np.array(paths), np.array(labels, dtype=np.int64), list(classes)


class ImageFolder(Dataset):
    """Images of one split, decoded, resized, augmented and normalised on access."""

    def __init__(self, folder: str | os.PathLike, classes: Sequence[str] | None = None,
                 image_size: tuple[int, int] | None = None, augment: str = "none", padding: int = 4,
                 scale: tuple[float, float] = (0.08, 1.0), hflip: bool = False, channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, train: bool = True,
                 skip_corrupt: bool = False, seed: int = 0) -> None:
        self.paths, self.labels, self.classes = scan(Path(folder), classes)
        self.augment, self.padding, self.scale, self.hflip = augment, padding, tuple(scale), hflip
        self.mode = "RGB" if channels == 3 else "L"
        self.train, self.skip_corrupt, self.seed, self.epoch = train, skip_corrupt, seed, 0
        if image_size is None:
            im = self._open(0)
            if isinstance(im, Skipped):
                raise ValueError(f"image folder: cannot take the image size from {im.path}: {im.reason}")
            image_size = (im.height, im.width)
        self.size = image_size
        c = 3 if channels == 3 else 1
        self.mean = torch.tensor(list(mean) if mean is not None else [0.0] * c, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(list(std) if std is not None else [1.0] * c, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _open(self, i: int) -> Any:
        Image = _pil()
        path = self.paths[i].decode()
        try:
            with Image.open(path) as im:
                im.load()
                return im.convert(self.mode)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if self.skip_corrupt:
                return Skipped(path, reason)
            raise ValueError(f"unreadable image file {path}: {reason} (set data.options.skip_corrupt=true "
                             "to skip such files)") from None

    def _geometry(self, im: Any, rng: np.random.Generator | None) -> Any:
        Image = _pil()
        h, w = self.size
        if self.augment == "resized_crop":
            if rng is None:  # evaluation: shorter side to size / 0.875, centre crop
                s = min(im.width / w, im.height / h) * 0.875
                rw, rh = max(w, round(im.width / s)), max(h, round(im.height / s))
                im = im.resize((rw, rh), Image.BILINEAR)
                left, top = (rw - w) // 2, (rh - h) // 2
                return im.crop((left, top, left + w, top + h))
            area = im.width * im.height
            for _ in range(10):
                target = area * rng.uniform(*self.scale)
                ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
                cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
                if 0 < cw <= im.width and 0 < ch <= im.height:
                    left, top = int(rng.integers(0, im.width - cw + 1)), int(rng.integers(0, im.height - ch + 1))
                    return im.resize((w, h), Image.BILINEAR, box=(left, top, left + cw, top + ch))
            return im.resize((w, h), Image.BILINEAR)
        return im.resize((w, h), Image.BILINEAR) if (im.height, im.width) != (h, w) else im

    def __getitem__(self, i: int) -> Any:
        i = int(i)
        im = self._open(i)
        if isinstance(im, Skipped):
            return im
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train and self.augment != "none" or \
            (self.train and self.hflip) else None
        im = self._geometry(im, rng if self.train else None)
        a = np.asarray(im, dtype=np.uint8)
        a = a[:, :, None] if a.ndim == 2 else a
        if rng is not None and self.augment == "crop" and self.padding > 0:
            p = self.padding
            a = np.pad(a, ((p, p), (p, p), (0, 0)))
            top, left = int(rng.integers(0, 2 * p + 1)), int(rng.integers(0, 2 * p + 1))
            a = a[top: top + self.size[0], left: left + self.size[1]]
        if rng is not None and self.hflip and rng.random() < 0.5:
            a = a[:, ::-1]
        x = torch.from_numpy(np.array(a, dtype=np.uint8, order="C")).permute(2, 0, 1).float().div_(255.0)
        return (x - self.mean) / self.std, int(self.labels[i])


def _size(v: Any) -> tuple[int, int] | None:
    if v is None:
        return None
    vals = [v, v] if isinstance(v, int) and not isinstance(v, bool) else v
    if not isinstance(vals, (list, tuple)) or len(vals) != 2 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in vals):
        raise ValueError(f"data.options.image_size must be a positive integer or [H, W], got {v!r}")
    return int(vals[0]), int(vals[1])


def _stats(v: Any, key: str, c: int, positive: bool) -> list[float] | None:
    if v is None:
        return None
    vals = [v] * c if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    if not isinstance(vals, (list, tuple)) or len(vals) != c or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and (s > 0 or not positive)
            for s in vals):
        raise ValueError(f"data.options.{key} must be {c} finite numbers{' > 0' if positive else ''}, got {v!r}")
    return [float(s) for s in vals]


def compute_stats(ds: ImageFolder, samples: int, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of up to ``samples`` seeded training images (evaluation transform)."""
    n = len(ds)
    pick = np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False)
    s1 = s2 = None
    count = 0
    for i in pick:
        im = ds._open(int(i))
        if isinstance(im, Skipped):
            continue
        a = torch.from_numpy(np.asarray(ds._geometry(im, None), dtype=np.uint8).copy()).double() / 255.0
        a = a.view(-1, 1) if a.dim() == 2 else a.reshape(-1, a.shape[-1])
        s1 = a.sum(0) if s1 is None else s1 + a.sum(0)
        s2 = (a * a).sum(0) if s2 is None else s2 + (a * a).sum(0)
        count += a.shape[0]
    if s1 is None or s2 is None:
        raise ValueError("image folder: no readable training image to compute the normalisation from")
    mean = s1 / count
    std = (s2 / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.tolist(), std.tolist()


@STREAMING.register("image_folder")
def open_image_folder(root: str | None = None, seed: int = 0, image_size: Any = None, augment: str = "none",
                      padding: int = 4, scale: Sequence[float] = (0.08, 1.0), hflip: bool = False,
                      mean: Any = None, std: Any = None, norm_samples: int = 500, channels: int = 3,
                      skip_corrupt: bool = False) -> tuple[ImageFolder, ImageFolder, int]:
    """``(train, val-or-test, num_classes)`` of the image folder at ``root`` (options: module docstring)."""
    from stbin._registry import check_choice

    _pil()
    if root is None:
        raise ValueError("data.root must be the image folder (holding train/ and val/ or test/)")
    check_choice("data.options.augment", augment, AUGMENTS)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"data.options.channels must be 1 or 3, got {channels!r}")
    for key, v in (("hflip", hflip), ("skip_corrupt", skip_corrupt)):
        if not isinstance(v, bool):
            raise ValueError(f"data.options.{key} must be true or false, got {v!r}")
    if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
        raise ValueError(f"data.options.padding must be an integer >= 0, got {padding!r}")
    if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and all(isinstance(s, (int, float)) for s in scale)
            and 0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"data.options.scale must be [lo, hi] with 0 < lo <= hi <= 1, got {scale!r}")
    if not isinstance(norm_samples, int) or isinstance(norm_samples, bool) or norm_samples < 1:
        raise ValueError(f"data.options.norm_samples must be an integer >= 1, got {norm_samples!r}")
    size = _size(image_size)
    mean_l, std_l = _stats(mean, "mean", channels, False), _stats(std, "std", channels, True)
    base = Path(root)
    if not (base / "train").is_dir():
        raise FileNotFoundError(f"image folder: {base} has no train/ folder (expected train/ and val/ or test/)")
    held = next((base / s for s in ("val", "test") if (base / s).is_dir()), None)
    if held is None:
        raise FileNotFoundError(f"image folder: {base} has no val/ or test/ folder")
    kw = dict(augment=augment, padding=padding, scale=tuple(scale), hflip=hflip, channels=channels,
              skip_corrupt=skip_corrupt, seed=seed)
    train = ImageFolder(base / "train", None, size, train=True, **kw)
    if mean_l is None or std_l is None:
        m, s = compute_stats(train, norm_samples, seed)
        mean_l, std_l = mean_l or m, std_l or s
    train.mean = torch.tensor(mean_l, dtype=torch.float32).view(-1, 1, 1)
    train.std = torch.tensor(std_l, dtype=torch.float32).view(-1, 1, 1)
    test = ImageFolder(held, train.classes, train.size, mean=mean_l, std=std_l, train=False, **kw)
    return train, test, len(train.classes)


__all__ = ["ImageFolder", "Skipped", "open_image_folder", "scan", "compute_stats", "EXTENSIONS"]
