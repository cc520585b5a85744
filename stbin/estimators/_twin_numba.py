r"""Arguments of the int8 twin that the one-pass sampling kernels write next to their samples.

A one-pass sampling kernel (:mod:`stbin.estimators._logistic_sampling_numba`,
:mod:`stbin.estimators._uniform_sampling_numba`) may also write, next to the float samples
:math:`x_i \in \{-1, +1\}`, their **int8 twin** :math:`t_i = \operatorname{sign}(x_i)` — what an
exact 8-bit product (:mod:`stbin.nn.exact_products`) would otherwise compute in a pass of its
own over the float tensor (reading 4 or 8 bytes an element from memory), for one more byte
written while the tile of samples is in L1. Each kernel writes it inside its decision loop
(measured cheaper than a second loop over the tile: see the kernels' docstrings), with 0 for a
NaN sample and a flag saying whether the call had one (such a twin is never used: the float
samples are not ternary). See :mod:`stbin.estimators._twins` for when twins are produced and
how they are looked up.

The kernels take the twin as an int8 array always — :data:`NO_TWIN` (empty) when none is
wanted — so that each has one compiled signature.
"""

from __future__ import annotations

import numpy as np

#: the placeholder passed to the kernels when no twin is wanted (one compiled signature either way)
NO_TWIN = np.empty(0, np.int8)


def check_twin(what: str, twin: np.ndarray | None, size: int) -> np.ndarray:
    """``twin`` (a 1-D contiguous int8 array of ``size`` elements) or :data:`NO_TWIN` for None; ValueError otherwise.

    >>> check_twin("f", None, 3).size
    0
    """
    if twin is None:
        return NO_TWIN
    if twin.ndim != 1 or not twin.flags.c_contiguous or twin.dtype != np.int8 or twin.size != size:
        raise ValueError(f"{what} needs a 1-D contiguous int8 twin of {size} elements, got {twin.dtype} {twin.shape}")
    return twin
