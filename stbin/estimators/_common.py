"""Helpers shared by the estimator Functions: dtype handling, scaling, ±1 sampling.

They sit on the hot path of a training step (see ``benchmarks/bench_layers.py`` and
``docs/performance-layers.md``): they skip exact no-ops (division by a scale of 1), work in
place on tensors they have just allocated, allocate as little at full size as they can,
and never modify a tensor they were given.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Iterator

import torch

from stbin._validation import compute_dtype
from stbin.estimators import _parallel_cost
from stbin.estimators.noise import Noise


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype used for elementwise factors (float32 for float16/bfloat16)."""
    cdt = compute_dtype(x.dtype)
    return x if x.dtype == cdt else x.to(cdt)


def scaled(x: torch.Tensor, scale: float) -> tuple[torch.Tensor, bool]:
    """``upcast(x) / scale``, and whether that is a new tensor (free to modify in place).

    With ``scale == 1`` the division is skipped (``x / 1 == x`` exactly), so the result may
    be ``x`` itself; the caller must then not modify it.
    """
    t = upcast(x)
    fresh = t is not x
    if scale != 1.0:
        t = t.div_(scale) if fresh else t / scale
        fresh = True
    return t, fresh


def scaled_grad(grad: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``grad * factor`` computed in the factor's dtype and returned in ``grad``'s dtype."""
    if grad.dtype == factor.dtype:
        return grad * factor
    return (grad.to(factor.dtype) * factor).to(grad.dtype)


def plus_minus_one(positive: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Map a boolean tensor to +1 (True) / -1 (False) in ``dtype``."""
    return positive.to(dtype).mul_(2).sub_(1)


def is_compiling() -> bool:
    """Whether torch.compile is tracing the current call (then only torch operations may run)."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


def sign_pm1_torch(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``sign(x)`` in {-1, +1} with sign(0) = sign(-0) = +1 and **NaN -> NaN** (the library's NaN policy).

    The pure-torch implementation (every device, dtype and torch.compile);
    :func:`stbin.estimators._elementwise.sign_pm1` takes a one-pass kernel on large CPU tensors.

    A NaN pre-activation or latent weight means the run has diverged; mapping it to -1 (as
    a comparison ``x >= 0`` would) hides that, so it propagates to the output instead.
    """
    out = plus_minus_one(x >= 0, x.dtype if dtype is None else dtype)
    return out.masked_fill_(torch.isnan(x), float("nan"))


# Size-dependent code paths. The deterministic sign and its htanh backward take their
# one-pass numba kernels from ``elementwise_kernel_min_numel`` elements on (below, torch's
# operations: a kernel call costs a few microseconds). CPU sampling (and those kernels) run the
# parallel loop from the size at which it pays for this machine's thread wake-up (:func:`use_parallel`,
# measured once: :mod:`stbin.estimators._parallel_cost`), or from ``parallel_sampling_min_numel``
# elements on where that is set (below, the serial one: same numbers, no thread wake-up). Sampling
# reuses its output buffer from ``reuse_output_min_numel`` elements on (128 KiB of float32, glibc's
# initial mmap threshold: larger blocks are mapped afresh, or the heap top trimmed and refaulted, so that a fresh output per training step keeps paying
# page faults — thousands per step on the training presets); sampling and the logistic ST backward run on chunks
# of ``chunk_numel`` elements (512 KB of float32, within L2), so large tensors are not
# streamed through memory pass after pass. From ``twin_min_numel`` elements on, the one-pass
# samplers also write the samples' int8 twin while a consumer wants it
# (:mod:`stbin.estimators._twins`). The values are read at every call, so tests force each
# path on small tensors with :func:`path_thresholds` (every path must give the closed
# form by value).


@dataclass
class PathThresholds:
    """Element counts from which the size-dependent fast paths are taken (read at every call)."""

    parallel_sampling_min_numel: int | None = None  # None: measured (use_parallel)
    elementwise_kernel_min_numel: int = 1 << 14
    chunk_numel: int = 1 << 17
    reuse_output_min_numel: int = 1 << 15
    twin_min_numel: int = 1 << 14


THRESHOLDS = PathThresholds()


def use_parallel(numel: int, threads: int, element_seconds: float = _parallel_cost.SAMPLING_SECONDS) -> bool:
    """Whether a CPU kernel over ``numel`` elements takes its parallel loop on ``threads`` threads: from
    ``THRESHOLDS.parallel_sampling_min_numel`` elements on where it is set, else from the size at which this
    machine's thread wake-up pays for a loop of ``element_seconds`` an element (default: the samplers';
    :func:`stbin.estimators._parallel_cost.parallel_min_numel`)."""
    if threads < 2:
        return False
    floor = THRESHOLDS.parallel_sampling_min_numel
    if floor is None:
        if numel < _parallel_cost.MIN_NUMEL:  # never parallel: no measurement needed
            return False
        floor = _parallel_cost.parallel_min_numel(threads, element_seconds)
    return numel >= floor


@contextlib.contextmanager
def path_thresholds(**values: int) -> Iterator[PathThresholds]:
    """Temporarily set fields of :data:`THRESHOLDS` (for tests that force a path on small tensors)."""
    saved = dataclasses.asdict(THRESHOLDS)
    for k, v in values.items():
        if k not in saved:
            raise ValueError(f"unknown path threshold {k!r}; expected one of {sorted(saved)}")
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"path threshold {k} must be an int >= 1, got {v!r}")
        setattr(THRESHOLDS, k, v)
    try:
        yield THRESHOLDS
    finally:
        for k, v in saved.items():
            setattr(THRESHOLDS, k, v)
