r"""The stochastic binary activation and its principled straight-through estimator.

Forward (Shekhovtsov & Yanush, GCPR 2021, Sec. 3), with standard symmetric noise :math:`z` of CDF :math:`F` and scale
:math:`s > 0`:

* ``mode="sample"``: :math:`x = \operatorname{sign}(a - s z) \in \{-1, +1\}`, i.e.
  :math:`P(x=+1) = F(a/s)`;
* ``mode="mode"``: :math:`x = \operatorname{sign}(a)` with :math:`\operatorname{sign}(0)=+1`
  (the most likely state; deterministic inference);
* ``mode="mean"``: :math:`x = \mathbb{E}[x] = 2F(a/s) - 1` (a smooth relaxation).

Backward (Shekhovtsov & Yanush, GCPR 2021, Sec. 3), the same closed form in all three modes:

.. math:: \frac{\partial L}{\partial a} = \frac{2}{s} F'\!\left(\frac{a}{s}\right)\,
          \frac{\partial L}{\partial x}.

For one unit with downstream loss :math:`f`, the exact derivative of the expectation is
:math:`\frac{d}{da}\mathbb{E}f(x) = \frac1s F'(a/s)\,(f(+1)-f(-1))`; the ST estimator
replaces the finite difference :math:`f(+1)-f(-1)` by :math:`2 f'(x)` at the sampled
:math:`x`. It is therefore *unbiased whenever f is affine in x* (the finite difference
equals twice the derivative), for a single unit and for a whole layer, and biased
otherwise. With ``mode="mode"`` it is the deterministic ST estimator that the noise
explains: uniform noise with s = 1 gives BinaryNet's htanh backward, logistic noise with
s = 1/2 gives the tanh proxy.

NaN pre-activations give NaN outputs in every mode (see :mod:`stbin.estimators`).

Reference: A. Shekhovtsov, V. Yanush, "Reintroducing Straight-Through Estimators as
Principled Methods for Stochastic Binary Networks", GCPR 2021 (arXiv:2006.06880).
"""

from __future__ import annotations

from typing import Any

import torch

from stbin._registry import check_choice
from stbin._validation import check_floating, check_positive, compute_dtype
from stbin.estimators._common import THRESHOLDS, scaled, scaled_grad, upcast
from stbin.estimators._elementwise import logistic_st_grad
from stbin.estimators.sampling import noisy_sign
from stbin.estimators.noise import Noise, get_noise

MODES = ("sample", "mode", "mean")

_LOGISTIC = get_noise("logistic")


def _is_logistic(noise: Noise) -> bool:
    """Whether ``noise`` is the logistic family (F = sigmoid, F' = sigmoid (1 - sigmoid)).

    Its backward takes a fused path: on large contiguous float32 CPU tensors the one-pass
    kernel of :mod:`stbin.estimators._logistic_numba`, elsewhere ``aten.sigmoid_backward``
    (``g * (1 - y) * y`` in one pass), the same expression as the logistic ``pdf`` of
    :mod:`stbin.estimators.noise`.
    """
    return noise is _LOGISTIC or (noise.cdf is _LOGISTIC.cdf and noise.pdf is _LOGISTIC.pdf)


def _st_backward(grad: torch.Tensor, a: torch.Tensor, noise: Noise, scale: float) -> torch.Tensor:
    r"""``grad`` times the ST factor :math:`\frac{2}{s}F'(a/s)`, in ``grad``'s dtype."""
    if not _is_logistic(noise) or torch.is_grad_enabled():
        # generic path (also for double backward: no in-place ops on the graph)
        return scaled_grad(grad, noise.st_factor(upcast(a), scale))
    fused = logistic_st_grad(grad, a, scale)
    if fused is not None:
        return fused
    if (a.device.type == "cpu" and a.numel() >= THRESHOLDS.chunk_numel and grad.shape == a.shape
            and a.is_contiguous() and grad.is_contiguous()):
        return _logistic_st_backward_chunked(grad, a, scale)
    t, fresh = scaled(a, scale)
    y = t.sigmoid_() if fresh else torch.sigmoid(t)
    g = grad if grad.dtype == y.dtype else grad.to(y.dtype)
    out = torch.ops.aten.sigmoid_backward(g, y).mul_(2.0 / scale)
    return out if out.dtype == grad.dtype else out.to(grad.dtype)


def _logistic_st_backward_chunked(grad: torch.Tensor, a: torch.Tensor, scale: float) -> torch.Tensor:
    """The logistic branch of :func:`_st_backward` on cache-sized chunks of contiguous CPU tensors.

    Only the result is allocated at full size (sigmoid and, for half types, the upcast
    gradient live in two reused chunk buffers): fresh pages of large tensors are costly.
    """
    out = torch.empty_like(grad)
    cdt = compute_dtype(a.dtype)
    n = a.numel()
    a_flat, g_flat, o_flat = a.view(-1), grad.view(-1), out.view(-1)
    chunk = THRESHOLDS.chunk_numel
    m = min(n, chunk)
    y_buf = torch.empty(m, dtype=cdt)
    g_buf = torch.empty(m, dtype=cdt) if grad.dtype != cdt else None
    factor = 2.0 / scale
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        y = y_buf[: hi - lo]
        src = a_flat[lo:hi]
        if a.dtype != cdt:
            src = y.copy_(src)  # upcast first, then divide, as upcast(a) / scale
        if scale != 1.0:
            src = torch.div(src, scale, out=y)
        torch.sigmoid(src, out=y)
        if g_buf is None:
            torch.ops.aten.sigmoid_backward.grad_input(g_flat[lo:hi], y, grad_input=o_flat[lo:hi])
        else:
            g = g_buf[: hi - lo].copy_(g_flat[lo:hi])
            torch.ops.aten.sigmoid_backward.grad_input(g, y, grad_input=g)
            o_flat[lo:hi].copy_(g.mul_(factor))
    return out.mul_(factor) if g_buf is None else out


class StochasticSign(torch.autograd.Function):
    """Autograd Function of :func:`stochastic_sign` (see the module docstring for the math)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, noise: Noise, scale: float, mode: str,
                generator: torch.Generator | None) -> torch.Tensor:
        ctx.save_for_backward(a)
        ctx.noise, ctx.scale = noise, scale
        return noisy_sign(a, noise, scale, mode, generator)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None]:
        (a,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        return _st_backward(grad, a, ctx.noise, ctx.scale), None, None, None, None


def stochastic_sign(a: torch.Tensor, noise: str | Noise = "logistic", scale: float = 1.0,
                    mode: str = "sample", generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Stochastic binary activation :math:`x = \operatorname{sign}(a - s z)` with the ST backward.

    Args:
        a: pre-activations (any floating dtype, any device).
        noise: ``"logistic"``, ``"uniform"`` or ``"gaussian"`` (see :mod:`stbin.estimators.noise`).
        scale: noise scale :math:`s > 0`.
        mode: ``"sample"`` (:math:`P(x=+1)=F(a/s)`), ``"mode"`` (:math:`\operatorname{sign}(a)`,
            sign(0)=+1) or ``"mean"`` (:math:`2F(a/s)-1`).
        generator: a ``torch.Generator`` on ``a``'s device for reproducible sampling.

    Returns:
        a tensor of ``a``'s shape and dtype; ±1 in ``sample``/``mode``, in [-1, 1] in ``mean``;
        NaN where ``a`` is NaN (the divergence stays visible).

    Backward: :math:`\partial L/\partial a = \frac{2}{s}F'(a/s)\,\partial L/\partial x`.
    The input is never modified.
    """
    check_floating("a", a)
    nz = get_noise(noise)
    s = check_positive("scale", scale)
    check_choice("mode", mode, MODES)
    return StochasticSign.apply(a, nz, s, mode, generator)
