r"""Int8 twins of sampled ±1 tensors: produced by the samplers, looked up by an exact integer product.

An exact 8-bit product of binary operands (:mod:`stbin.nn.exact_products`) needs each float
operand :math:`x \in \{-1, 0, +1\}^n` as int8, and converting it is a pass of its own over the
float tensor (4 or 8 bytes an element read from memory: about 9 ms of a 111 ms training step
of a 4096 x 4096 binary linear layer). The one-pass CPU samplers
(:mod:`stbin.estimators.sampling`) write the samples tile by tile while they are in L1, so
they can write :math:`t = \operatorname{sign}(x)` as int8 too, for one byte an element
(:mod:`stbin.estimators._twin_numba`), and attach it to the sample tensor here; the product
then looks it up instead of converting.

A twin is returned **only for the very tensor object it was attached to**, unchanged since:

* identity: entries are keyed by the tensor object (a weak reference: an entry dies with its
  tensor, nothing is kept alive by the registry but the twin itself); a view, a reshape, a
  ``detach()`` or a copy is another object and has no twin;
* ``tensor._version`` equal to its value at attachment (every in-place operation of torch
  increments it), and the same ``data_ptr``, shape, strides and dtype;
* a spot check of the values: the twin's first and last :data:`SPOT` elements are the signs of
  the tensor's. Writes that bypass the version counter (through ``tensor.data`` or a numpy
  view: untracked by autograd too) are caught there when they touch those elements; elsewhere
  they are the writer's responsibility, as for autograd.

Twins are made only while a consumer wants them (:func:`set_consumer`: the exact products
register a predicate that is true while their route is enabled on a CPU with 8-bit
dot-product instructions), from ``THRESHOLDS.twin_min_numel`` elements on, by the one-pass
kernels (logistic and uniform noise, float32 and float64: the kernels are the same for both
dtypes, so float64 costs nothing more), in eager mode on CPU only (not under
``torch.compile``, whose graph calls the sampler as a custom operator, nor in inference mode,
whose tensors have no version counter; CUDA samples with ``torch.rand``), and never for a call
with a NaN sample.

Cost and gain, measured (one thread, logistic noise, median of interleaved runs on a loaded
2-core machine): the twin adds about 3 us to a sampling call of 16 Ki elements (BUFFERS and
registry included) and 26 us to one of 1 Mi (1.4 ms: under 2%); the conversion it replaces
took 25 us resp. 300 us (the lookup: 2 us). So the threshold is where the one-pass kernels
start (16 Ki elements), and a twin nobody looks up (an activation before a float layer) costs
a few percent of its sampling call.

>>> x = torch.tensor([1.0, -1.0])
>>> attach(x, torch.tensor([1, -1], dtype=torch.int8))
>>> lookup(x)
tensor([ 1, -1], dtype=torch.int8)
>>> _ = x.mul_(1.0)     # an in-place change: the twin is no longer x's
>>> lookup(x) is None
True
"""

from __future__ import annotations

import weakref
from typing import Callable

import numpy as np
import torch

from stbin.estimators._common import THRESHOLDS

_Key = tuple[int, torch.Size, tuple[int, ...], torch.dtype]
#: elements compared at each end by :func:`lookup` (a few microseconds)
SPOT = 32
_ENDS = np.arange(2 * SPOT)


class _Entry:
    __slots__ = ("ref", "twin", "version", "key", "spots", "signs")

    def __init__(self, ref: weakref.ref, twin: torch.Tensor, version: int, key: _Key) -> None:
        self.ref, self.twin, self.version, self.key = ref, twin, version, key
        n = twin.numel()
        self.spots = np.arange(n) if n <= 2 * SPOT else _ENDS + np.array(n - 2 * SPOT) * (_ENDS >= SPOT)
        self.signs = twin.numpy().reshape(-1)[self.spots].copy()


_ENTRIES: dict[int, _Entry] = {}
_CONSUMER: dict[str, Callable[[], bool] | None] = {"wanted": None}


def _layout(t: torch.Tensor) -> _Key:
    return t.data_ptr(), t.shape, t.stride(), t.dtype


def set_consumer(wanted: Callable[[], bool] | None) -> None:
    """Register the predicate saying whether twins are wanted now (None: never)."""
    _CONSUMER["wanted"] = wanted


def wanted(numel: int) -> bool:
    """Whether a sampler should write the twin of an output of ``numel`` elements (see the module docstring)."""
    fn = _CONSUMER["wanted"]
    return (fn is not None and numel >= THRESHOLDS.twin_min_numel and not torch.is_inference_mode_enabled()
            and fn())


def attach(t: torch.Tensor, twin: torch.Tensor) -> None:
    """Record ``twin`` (int8, ``t``'s shape, contiguous) as the twin of ``t`` in its present state."""
    if twin.dtype != torch.int8 or twin.shape != t.shape or not twin.is_contiguous() or not t.is_contiguous():
        raise ValueError(f"a twin must be a contiguous int8 tensor of the contiguous tensor's shape {tuple(t.shape)}, "
                         f"got {twin.dtype} {tuple(twin.shape)}")
    key = id(t)

    def drop(ref: weakref.ref, key: int = key) -> None:
        entry = _ENTRIES.get(key)
        if entry is not None and entry.ref is ref:  # not an entry of a later tensor with the same id
            _ENTRIES.pop(key, None)

    _ENTRIES[key] = _Entry(weakref.ref(t, drop), twin, t._version, _layout(t))


def lookup(t: torch.Tensor) -> torch.Tensor | None:
    """The twin attached to this very tensor object if it is unchanged since, else None."""
    entry = _ENTRIES.get(id(t))
    if entry is None or entry.ref() is not t or t.is_inference():
        return None
    if t._version != entry.version or _layout(t) != entry.key:
        return None
    if not (np.sign(t.detach().numpy().reshape(-1)[entry.spots]) == entry.signs).all():  # NaN fails too
        return None
    return entry.twin


def count() -> int:
    """Entries held (tests: an entry dies with its tensor)."""
    return len(_ENTRIES)
