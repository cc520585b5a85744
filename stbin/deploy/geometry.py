"""Output sizes of convolutions and pooling windows (shared by shape inference and the kernels)."""

from __future__ import annotations


def conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    """Output size along one axis of a window ``k`` with stride ``s``, padding ``p``, dilation ``d`` (floor mode).

    >>> conv_out(32, 3, 1, 1, 1), conv_out(32, 3, 2, 1, 1), conv_out(2, 5, 1, 0, 1)
    (32, 16, -2)
    """
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def conv_out_hw(h: int, w: int, kh: int, kw: int, stride: tuple[int, int], padding: tuple[int, int],
                dilation: tuple[int, int]) -> tuple[int, int]:
    """Output height and width of a ``kh`` x ``kw`` window over an ``h`` x ``w`` map (:func:`conv_out` per axis);
    ``stride``, ``padding``, ``dilation`` are (vertical, horizontal) pairs.

    >>> conv_out_hw(32, 16, 3, 3, (2, 1), (1, 1), (1, 1))
    (16, 16)
    """
    return (conv_out(h, kh, stride[0], padding[0], dilation[0]),
            conv_out(w, kw, stride[1], padding[1], dilation[1]))
