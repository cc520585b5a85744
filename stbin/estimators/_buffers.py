"""Reusable output buffers for large elementwise results (samples, signs) on CPU.

glibc returns blocks above 32 MiB to the system when they are freed and maps them anew
(page faults, zero-filled pages) when they are allocated again, so a fresh 67 MB output
per step costs about as much as computing it. From ``THRESHOLDS.reuse_output_min_numel``
elements on, :data:`BUFFERS` hands out the storage of an earlier output of the same shape
and dtype — but only when nothing references that storage any more (no tensor, view,
autograd-saved tensor, numpy array or storage object: checked with the storage's C++ and
Python reference counts); otherwise it allocates. A few buffers are kept per shape and
dtype, so that several layers of one shape (whose outputs are alive at the same time,
saved for their backward) each find theirs at the next step. The returned tensor is
always a new tensor object (not a view) owning a reference to that storage.
"""

from __future__ import annotations

import math
import sys
import threading

import torch

from stbin.estimators._common import THRESHOLDS

#: buffers kept per (shape, dtype): the oldest is dropped (freed once unreferenced) beyond it
MAX_PER_KEY = 4


class _Entry:
    """A cached buffer, the Python object of its storage, and the reference counts while only the cache holds them."""

    __slots__ = ("buf", "storage", "base")

    def __init__(self, buf: torch.Tensor) -> None:
        self.buf = buf
        self.storage = buf.untyped_storage()  # torch keeps one Python object per storage: hold it
        self.base = self.counts()

    def counts(self) -> tuple[int, int]:
        """(C++ references to the storage, Python references to its object)."""
        return torch._C._storage_Use_Count(self.storage._cdata), sys.getrefcount(self.storage)

    def free(self) -> bool:
        """Whether nothing but the cache refers to the buffer."""
        return self.counts() == self.base


class OutputBuffers:
    """Up to :data:`MAX_PER_KEY` reusable output buffers per (shape, dtype) (see the module docstring).

    ``take(shape, dtype)`` returns a new tensor on a cached buffer's storage that nothing
    but the cache refers to, or a freshly allocated one (which is then cached, the oldest
    cached buffer of that key dropped when the key holds :data:`MAX_PER_KEY`). Below
    ``THRESHOLDS.reuse_output_min_numel`` elements it always allocates (glibc keeps such
    blocks mapped: there are no page faults to save).
    """

    def __init__(self) -> None:
        self._bufs: dict[tuple[tuple[int, ...], torch.dtype], list[_Entry]] = {}
        self._lock = threading.Lock()

    def take(self, shape: torch.Size | tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        numel = math.prod(shape)
        if numel < THRESHOLDS.reuse_output_min_numel or not hasattr(torch._C, "_storage_Use_Count"):
            return torch.empty(shape, dtype=dtype)
        key = (tuple(shape), dtype)
        with self._lock:
            entries = self._bufs.setdefault(key, [])
            entry = next((e for e in entries if e.free()), None)
            if entry is None:
                entry = _Entry(torch.empty(shape, dtype=dtype))
                if len(entries) >= MAX_PER_KEY:
                    entries.pop(0)
                entries.append(entry)
            buf = entry.buf
            return torch.empty(0, dtype=dtype).set_(buf.untyped_storage(), 0, buf.shape, buf.stride())

    def clear(self) -> None:
        """Drop every cached buffer (their memory is freed once no output refers to it)."""
        with self._lock:
            self._bufs.clear()


BUFFERS = OutputBuffers()
