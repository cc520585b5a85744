"""A synthetic image classification set for tests: class prototypes plus noise, deterministic.

Each class has a random prototype image; a sample is its prototype with Gaussian pixel
noise and a random shift of up to one pixel, quantised to uint8. Easy enough that a small
network learns it in a few steps, hard enough that chance is far below a trained network.
"""

from __future__ import annotations

import torch

from stbin._validation import check_int_at_least


def load_synthetic(split: str = "train", n_train: int = 512, n_test: int = 256, num_classes: int = 10,
                   channels: int = 1, image_size: int = 8, noise: float = 0.35,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic ``split`` as uint8 images and int64 labels.

    Args:
        split: ``"train"`` or ``"test"`` (drawn with different seeds, same prototypes).
        n_train, n_test: the number of images of each split.
        num_classes: the number of classes (at least 2).
        channels: colour channels per image.
        image_size: the side S of the square images (at least 4).
        noise: standard deviation of the Gaussian pixel noise (pixels in [0, 1]).
        seed: the seed of the prototypes and samples.

    Shape:
        images (N, C, S, S), or (N, S, S) when ``channels=1``; labels (N,).

    >>> x, y = load_synthetic("train", n_train=16, num_classes=3)
    >>> x.shape, x.dtype, sorted(set(y.tolist())) == [0, 1, 2]
    (torch.Size([16, 8, 8]), torch.uint8, True)
    """
    for name, v, lo in (("n_train", n_train, 1), ("n_test", n_test, 1), ("num_classes", num_classes, 2),
                        ("channels", channels, 1), ("image_size", image_size, 4)):
        check_int_at_least(name, v, lo)
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; valid: test, train")
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(num_classes, channels, image_size, image_size, generator=g) > 0.5).float()
    n = n_train if split == "train" else n_test
    g = torch.Generator().manual_seed(seed * 1000 + (1 if split == "train" else 2))
    y = torch.randint(num_classes, (n,), generator=g)
    x = protos[y] + noise * torch.randn(n, channels, image_size, image_size, generator=g)
    shifts = torch.randint(-1, 2, (n, 2), generator=g)
    x = torch.stack([torch.roll(xi, (int(s[0]), int(s[1])), dims=(-2, -1)) for xi, s in zip(x, shifts)])
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return (x[:, 0] if channels == 1 else x), y
