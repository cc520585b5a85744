"""The sign, its ``htanh`` backward and the logistic ST backward, on their fastest path.

Large contiguous float32/float64 CPU tensors go through the one-pass numba kernels of
:mod:`stbin.estimators._sign_numba` (one read, one write; torch needs four or five
elementwise passes and a temporary mask for each) and, for the logistic ST backward,
float32 ones through :mod:`stbin.estimators._logistic_numba`, into an output buffer of
:data:`stbin.estimators._buffers.BUFFERS` (reused once nothing refers to it, from
``THRESHOLDS.reuse_output_min_numel`` elements on); the kernels run over numba's threads
(as many as ``torch.get_num_threads()``) from the size at which that pays
(:func:`stbin.estimators._common.use_parallel`). Everything else — other devices and dtypes, small or
strided tensors, torch.compile tracing, double backward — takes the pure-torch formulas, which give the
same values bit for bit (the logistic backward: within a few float32 ulp; tested on every path).
"""

from __future__ import annotations

import numpy as np
import torch

from stbin.estimators._buffers import BUFFERS
from stbin.estimators._common import THRESHOLDS, is_compiling, sign_pm1_torch, use_parallel
from stbin.estimators._parallel_cost import ELEMENTWISE_SECONDS

try:  # numba is a dependency; the torch formulas are the fallback where it cannot be imported
    from stbin.estimators import _logistic_numba as _logistic_kernel
    from stbin.estimators import _sign_numba as _kernel
except ImportError:  # pragma: no cover - exercised by the fallback test through monkeypatch
    _kernel = _logistic_kernel = None  # type: ignore[assignment]

_KERNEL_DTYPES = (torch.float32, torch.float64)


def _fast(*tensors: torch.Tensor) -> bool:
    """Whether the kernels apply: large contiguous CPU float32/float64 tensors of one dtype and shape (not
    negative or conjugate views), outside torch.compile tracing. Cheapest tests first: this runs on every call."""
    x = tensors[0]
    if _kernel is None or x.numel() < THRESHOLDS.elementwise_kernel_min_numel or x.dtype not in _KERNEL_DTYPES:
        return False
    if is_compiling():
        return False
    dtype, shape = x.dtype, x.shape
    for t in tensors:
        if not (t.is_cpu and t.dtype == dtype and t.shape == shape and t.is_contiguous()) or t.is_neg() or t.is_conj():
            return False
    return True


def _flat(t: torch.Tensor) -> np.ndarray:
    """The 1-D numpy view of a contiguous CPU tensor (``force=True`` only detaches: :func:`_fast` excluded copies)."""
    return t.numpy(force=True).reshape(-1)


def _parallel(numel: int) -> tuple[bool, int]:
    threads = torch.get_num_threads()
    return use_parallel(numel, threads, ELEMENTWISE_SECONDS), threads


def sign_pm1(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``sign(x)`` in {-1, +1} with sign(0) = sign(-0) = +1 and NaN -> NaN, in ``dtype`` (default ``x``'s).

    >>> sign_pm1(torch.tensor([-2.0, -0.0, 0.0, 3.0, float("nan")]))
    tensor([-1.,  1.,  1.,  1., nan])
    """
    if (dtype is not None and dtype != x.dtype) or not _fast(x):
        return sign_pm1_torch(x, dtype)
    out = BUFFERS.take(x.shape, x.dtype)
    parallel, threads = _parallel(x.numel())
    _kernel.sign_into(_flat(x), _flat(out), parallel, threads)
    return out


def htanh_grad(grad: torch.Tensor, x: torch.Tensor, clip: float) -> torch.Tensor | None:
    r"""``grad`` times the ``htanh`` factor :math:`1[|x| \le c]`, or None where the kernel does not apply.

    The product with a float mask, as torch computes it (so ``-0.0`` or NaN where ``grad``
    is negative or not finite outside the clip), with ``clip`` rounded to ``x``'s dtype.
    None for anything but large contiguous CPU float32/float64 tensors of one dtype and
    shape, during torch.compile tracing and while grad mode is on (double backward needs a
    differentiable formula): the caller then applies the proxy's factor.

    >>> from stbin.estimators._common import path_thresholds
    >>> with torch.no_grad(), path_thresholds(elementwise_kernel_min_numel=1):
    ...     htanh_grad(torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.5, -1.0, 1.5]), 1.0)
    tensor([ 1., -2.,  0.])
    """
    if torch.is_grad_enabled() or not _fast(grad, x):
        return None
    out = BUFFERS.take(grad.shape, grad.dtype)
    parallel, threads = _parallel(grad.numel())
    _kernel.htanh_grad_into(_flat(grad), _flat(x), clip, _flat(out), parallel, threads)
    return out


def logistic_st_grad(grad: torch.Tensor, a: torch.Tensor, scale: float) -> torch.Tensor | None:
    r"""``grad * (2/s) F'(a/s)`` for logistic noise in one pass, or None where the kernel does not apply.

    Large contiguous float32 CPU tensors of one shape, outside torch.compile tracing and
    with grad mode off (double backward needs a differentiable formula); the caller then
    takes its torch path. Within a few float32 ulp of the closed form (see
    :mod:`stbin.estimators._logistic_numba`).

    >>> from stbin.estimators._common import path_thresholds
    >>> with torch.no_grad(), path_thresholds(elementwise_kernel_min_numel=1):
    ...     logistic_st_grad(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([0.0, float("inf"), float("nan")]), 1.0)
    tensor([0.5000, 0.0000,    nan])
    """
    if torch.is_grad_enabled() or _logistic_kernel is None or a.dtype != torch.float32 or not _fast(grad, a):
        return None
    out = BUFFERS.take(grad.shape, grad.dtype)
    parallel, threads = _parallel(grad.numel())
    _logistic_kernel.logistic_st_grad_into(_flat(grad), _flat(a), scale, _flat(out), parallel, threads)
    return out
