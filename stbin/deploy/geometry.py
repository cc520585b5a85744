"""Output sizes of convolutions and pooling windows (shared by shape inference and the kernels)."""

from __future__ import annotations


def conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    """Output size along one axis of a window ``k`` with stride ``s``, padding ``p``, dilation ``d`` (floor mode).

    >>> conv_out(32, 3, 1, 1, 1), conv_out(32, 3, 2, 1, 1), conv_out(2, 5, 1, 0, 1)
    (32, 16, -2)
    """
    return (size + 2 * p - d * (k - 1) - 1) // s + 1
