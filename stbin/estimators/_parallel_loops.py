"""The loops that :mod:`stbin.estimators._parallel_cost` times: ``a += 1``, parallel and serial."""

from __future__ import annotations

from numba import njit, prange

from stbin.estimators._numba_config import JIT


@njit(parallel=True, **JIT)
def touch_parallel(a):  # type: ignore[no-untyped-def]
    """``a[i] += 1`` over numba's threads."""
    for i in prange(a.size):
        a[i] += 1.0


@njit(**JIT)
def touch_serial(a):  # type: ignore[no-untyped-def]
    """``a[i] += 1`` in the calling thread."""
    for i in range(a.size):
        a[i] += 1.0
