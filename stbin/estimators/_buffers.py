"""Reusable output buffers for elementwise results (samples, signs, ST gradients) on CPU.

A fresh output is not free: glibc maps blocks above its mmap threshold afresh at every
allocation and trims the top of its heap when enough of it is free, so an output of the
same size allocated at every training step keeps paying page faults (zero-filled 4 KiB
pages) — measured at several thousand per step on the presets (``resource.getrusage``),
costing about as much as computing the output. From ``THRESHOLDS.reuse_output_min_numel``
elements on, :data:`BUFFERS` hands out the storage of an earlier output of the same shape
and dtype — but only when nothing references that storage any more (no tensor, view,
autograd-saved tensor, numpy array or storage object: checked with the storage's C++ and
Python reference counts); otherwise it allocates.

Up to :data:`MAX_PER_KEY` buffers are kept per shape and dtype, so that every layer of one
shape (whose outputs are alive at the same time, saved for their backward — seven in a
ResNet-20 stage) finds its own at the next step. The cache holds at most
:attr:`OutputBuffers.max_bytes` bytes (default :data:`MAX_BYTES`); beyond it, buffers that
nothing uses are dropped, least recently used shape first (e.g. those of an evaluation
batch size), so the memory it keeps is bounded by what one training step uses anyway.
The returned tensor is always a new tensor object (not a view) owning a reference to
that storage.
"""

from __future__ import annotations

import math
import sys
import threading
from collections import OrderedDict

import torch

from stbin.estimators._common import THRESHOLDS

#: buffers kept per (shape, dtype): the oldest is dropped (freed once unreferenced) beyond it
MAX_PER_KEY = 32
#: default bound of the bytes held by the cache (buffers in use included)
MAX_BYTES = 1 << 30


class _Entry:
    """A cached buffer, the Python object of its storage, and the reference counts while only the cache holds them."""

    __slots__ = ("buf", "storage", "base", "nbytes")

    def __init__(self, buf: torch.Tensor) -> None:
        self.buf = buf
        self.storage = buf.untyped_storage()  # torch keeps one Python object per storage: hold it
        self.base = self.counts()
        self.nbytes = self.storage.nbytes()

    def counts(self) -> tuple[int, int]:
        """(C++ references to the storage, Python references to its object)."""
        return torch._C._storage_Use_Count(self.storage._cdata), sys.getrefcount(self.storage)

    def free(self) -> bool:
        """Whether nothing but the cache refers to the buffer."""
        return self.counts() == self.base


class OutputBuffers:
    """Reusable output buffers per (shape, dtype) (see the module docstring).

    ``take(shape, dtype)`` returns a new tensor on a cached buffer's storage that nothing
    but the cache refers to, or a freshly allocated one, which is then cached: the oldest
    buffer of its key is dropped when the key holds :data:`MAX_PER_KEY`, and unused buffers
    of the least recently used keys while the cache holds more than ``max_bytes``. Below
    ``THRESHOLDS.reuse_output_min_numel`` elements it always allocates.

    Args:
        max_bytes: bound of the bytes the cache keeps (a buffer larger than it is never cached).

    >>> from stbin.estimators._common import path_thresholds
    >>> cache = OutputBuffers()
    >>> with path_thresholds(reuse_output_min_numel=1):
    ...     a = cache.take((3,), torch.float32)
    ...     ptr = a.data_ptr()
    ...     del a                      # nothing refers to the buffer any more
    ...     cache.take((3,), torch.float32).data_ptr() == ptr
    True
    """

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        if not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._bufs: OrderedDict[tuple[tuple[int, ...], torch.dtype], list[_Entry]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of all cached buffers (those in use included)."""
        return self._bytes

    def take(self, shape: torch.Size | tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        numel = math.prod(shape)
        if numel < THRESHOLDS.reuse_output_min_numel or not hasattr(torch._C, "_storage_Use_Count"):
            return torch.empty(shape, dtype=dtype)
        key = (tuple(shape), dtype)
        with self._lock:
            entries = self._bufs.get(key)
            if entries is None:
                entries = self._bufs[key] = []
            else:
                self._bufs.move_to_end(key)
            entry = next((e for e in entries if e.free()), None)
            if entry is None:
                buf = torch.empty(shape, dtype=dtype)
                if buf.untyped_storage().nbytes() > self.max_bytes:
                    return buf
                entry = _Entry(buf)
                if len(entries) >= MAX_PER_KEY:
                    self._bytes -= entries.pop(0).nbytes
                entries.append(entry)
                self._bytes += entry.nbytes
                self._evict(key)
            buf = entry.buf
            return torch.empty(0, dtype=dtype).set_(buf.untyped_storage(), 0, buf.shape, buf.stride())

    def _evict(self, keep: tuple[tuple[int, ...], torch.dtype]) -> None:
        """Drop unused buffers, least recently used key first (never ``keep``'s), while over ``max_bytes``."""
        for key in list(self._bufs):
            if self._bytes <= self.max_bytes:
                return
            if key == keep:
                continue
            entries = self._bufs[key]
            for e in [e for e in entries if e.free()]:
                entries.remove(e)
                self._bytes -= e.nbytes
                if self._bytes <= self.max_bytes:
                    break
            if not entries:
                del self._bufs[key]

    def clear(self) -> None:
        """Drop every cached buffer (their memory is freed once no output refers to it)."""
        with self._lock:
            self._bufs.clear()
            self._bytes = 0


BUFFERS = OutputBuffers()
