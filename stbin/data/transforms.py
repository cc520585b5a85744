"""Batch transforms on tensors, on the training device: normalisation, random crop, flip.

All take a batch ``x`` of shape (N, C, H, W) and an optional ``torch.Generator`` living on
``x``'s device, so that augmentation is reproducible (and resumable) and never leaves the
device.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def to_float(x: torch.Tensor, mean: Sequence[float], std: Sequence[float],
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (or [0,1] float) images -> normalised floats ``(x/255 - mean) / std`` per channel.

    Args:
        x: a batch of images, uint8 (0..255) or float (already in [0, 1]).
        mean, std: one value per channel.
        dtype: the floating dtype of the result.

    Shape:
        x: (N, C, H, W); output: the same, in ``dtype``.

    >>> import torch
    >>> to_float(torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2), (0.5,), (0.5,))
    tensor([[[[-1.,  1.]]]])
    """
    x = x.to(dtype) / 255.0 if x.dtype == torch.uint8 else x.to(dtype)
    m = torch.as_tensor(mean, dtype=dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad by ``padding`` zeros on each side and crop back to (H, W) at a random offset per image.

    Args:
        x: the batch.
        padding: zeros added on each side (0: ``x`` is returned unchanged).
        generator: a ``torch.Generator`` on ``x``'s device, for reproducible crops.

    Shape:
        x: (N, C, H, W); output: (N, C, H, W).

    >>> import torch
    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> y = random_crop(x, 1, torch.Generator().manual_seed(0))
    >>> y.shape, bool(torch.isin(y[y != 0], x).all())
    (torch.Size([1, 1, 4, 4]), True)
    """
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    off = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=x.device)
    rows = off[0, :, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = off[1, :, None] + torch.arange(w, device=x.device)  # (N, W)
    ni = torch.arange(n, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[ni, ci, rows[:, None, :, None], cols[:, None, None, :]]


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Flip each image horizontally with probability ``p``.

    Args:
        x: the batch.
        generator: a ``torch.Generator`` on ``x``'s device.
        p: the probability of flipping each image.

    Shape:
        x: (N, C, H, W); output: (N, C, H, W).

    >>> import torch
    >>> random_hflip(torch.tensor([[[[1, 2, 3]]]]), p=1.0)
    tensor([[[[3, 2, 1]]]])
    """
    mask = torch.rand(x.shape[0], generator=generator, device=x.device) < p
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


def augment(x: torch.Tensor, crop_padding: int = 0, hflip: bool = False,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with padding, then horizontal flip (each if enabled).

    Args:
        x: the batch.
        crop_padding: padding of :func:`random_crop` (0: no crop).
        hflip: whether to flip with probability 1/2 (:func:`random_hflip`).
        generator: a ``torch.Generator`` on ``x``'s device.

    Shape:
        x: (N, C, H, W); output: (N, C, H, W).

    >>> import torch
    >>> augment(torch.zeros(2, 3, 8, 8), crop_padding=2, hflip=True).shape
    torch.Size([2, 3, 8, 8])
    """
    if crop_padding:
        x = random_crop(x, crop_padding, generator)
    if hflip:
        x = random_hflip(x, generator)
    return x
