r"""Sampling of noise-injected signs: ``x = sign(a - s z)``, +1 with probability ``F(a/s)``.

CPU tensors draw from the counter-based Philox stream of :mod:`stbin.estimators.random`.
Two-pass path: the noise's ``cdf`` writes ``F(a/s)`` into the output buffer, and the fused
kernel (:mod:`stbin.estimators._philox_numba`) turns it into ±1 in place, so no uniform
tensor is ever formed and only the output is allocated at full size. One-pass path
(:data:`ONE_PASS`; logistic and uniform noise, float32/float64, from
``THRESHOLDS.elementwise_kernel_min_numel`` elements on): one kernel reads ``a`` and writes
the samples — :mod:`stbin.estimators._logistic_sampling` (an approximate decision with a
proven margin, the undecided few recomputed exactly) and
:mod:`stbin.estimators._uniform_sampling_numba` (the linear CDF evaluated exactly) — with
the two-pass path's numbers, bit for bit. (Processing the two steps
chunk by chunk, while a chunk is in L2, measured no faster with one thread — both are
compute-bound — and much slower with two threads on a loaded machine, where every chunk
hands over between torch's and numba's thread pools.) The kernel is serial below
the size from which a parallel loop pays for this machine's thread wake-up (measured once:
:func:`stbin.estimators._common.use_parallel`; or ``THRESHOLDS.parallel_sampling_min_numel`` where
set), or with one torch thread, and parallel over numba's threads (as many as
``torch.get_num_threads()``) from there on —
both give identical numbers, as does the pure-torch fallback used where numba cannot be
imported. Other devices (CUDA) compare with ``torch.rand`` drawn from the generator
(torch's own parallel Philox).

**Int8 twins.** While a consumer wants them (:mod:`stbin.estimators._twins`: the exact
integer products of :mod:`stbin.nn.exact_products`), the one-pass kernels also write
``sign(x)`` as int8, from ``THRESHOLDS.twin_min_numel`` elements on, and the eager path
attaches it to the output tensor (unless a sample is NaN); the samples are unchanged.

**Output buffers.** From ``THRESHOLDS.reuse_output_min_numel`` elements on, the output
is written into a buffer of :data:`stbin.estimators._buffers.BUFFERS`: the storage of an
earlier output of the same shape and dtype that nothing references any more (glibc maps
blocks above 32 MiB afresh at every allocation, with page faults costing about as much
as the sampling itself).

The kernel is registered as the torch custom operator ``stbin::philox_sign_`` with a fake
(meta) implementation, so ``torch.compile`` keeps it in the graph as one opaque call (no
graph break per sampling call); the seed is drawn with ``torch.randint`` from the
generator, which the compiler traces as an ordinary random op.
"""

from __future__ import annotations

import torch

from stbin._validation import compute_dtype
from stbin.estimators import _twins
from stbin.estimators._buffers import BUFFERS
from stbin.estimators._common import THRESHOLDS, is_compiling, scaled, upcast, use_parallel
from stbin.estimators._elementwise import sign_pm1
from stbin.estimators.noise import NOISES, Noise
from stbin.estimators.random import draw_seed, sign_from_probability

try:  # numba is a dependency; the pure-torch stream is a fallback for platforms without it
    from stbin.estimators import _logistic_sampling as _logistic
    from stbin.estimators import _philox_numba as _kernel
    from stbin.estimators import _uniform_sampling_numba as _uniform
except ImportError:  # pragma: no cover - exercised by the fallback test through monkeypatch
    _kernel = _logistic = _uniform = None  # type: ignore[assignment]


def _plain_usable(a: torch.Tensor, out: torch.Tensor, scale: float) -> bool:
    return a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64) and out.dtype == a.dtype \
        and a.is_contiguous()


def _uniform_into(out: torch.Tensor, a: torch.Tensor, scale: float, seed: torch.Tensor, parallel: bool,
                  threads: int, redo: object, twin: torch.Tensor | None = None) -> bool:
    return _uniform.sample_into(a.detach().numpy(), out.detach().numpy(), scale, seed.numpy(), parallel, threads,
                                twin=None if twin is None else twin.numpy())


#: one-pass CPU samplers by noise CDF: (whether it applies to (a, out, scale), the sampler). Each
#: gives the numbers of the two-pass path bit for bit (tests/estimators/test_logistic_sampling.py,
#: test_uniform_sampling.py). A sampler ``(out, a, scale, seed, parallel, threads, redo, twin=None)``
#: writes the int8 twin too when given one and returns whether it is valid (no NaN sample).
ONE_PASS = {} if _kernel is None else {
    NOISES.get("logistic").cdf: (_logistic.usable, _logistic.sample_into),
    NOISES.get("uniform").cdf: (_plain_usable, _uniform_into),
}


def _philox_sign_impl(p: torch.Tensor, seed: torch.Tensor) -> None:
    if p.numel() == 0:
        return
    flat = p.view(-1)
    if _kernel is not None and p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64):
        threads = torch.get_num_threads()
        parallel = use_parallel(p.numel(), threads)
        _kernel.compare_inplace(flat.detach().numpy(), seed.cpu().numpy(), parallel, threads)
        return
    flat.copy_(sign_from_probability(flat, seed.cpu()).to(flat.device))


if hasattr(torch.library, "custom_op"):
    @torch.library.custom_op("stbin::philox_sign_", mutates_args=("p",), device_types=None)
    def philox_sign_(p: torch.Tensor, seed: torch.Tensor) -> None:
        """In place: ``p`` (contiguous, holding F(a/s)) becomes the Philox samples ±1 (NaN kept)."""
        _philox_sign_impl(p, seed)

    @philox_sign_.register_fake
    def _(p: torch.Tensor, seed: torch.Tensor) -> None:
        return None
else:  # pragma: no cover - torch < 2.4: no custom-op API, eager only
    philox_sign_ = _philox_sign_impl


def probability(a: torch.Tensor, noise: Noise, scale: float) -> torch.Tensor:
    """``F(a / s)`` as a fresh contiguous tensor in the compute dtype (float32 for half types)."""
    t, fresh = scaled(a, scale)
    if noise.cdf is torch.sigmoid:
        p = t.sigmoid_() if fresh else torch.sigmoid(t)
    else:
        p = noise.cdf(t)
        if p is t and not fresh:
            p = p.clone()
    return p.contiguous()


def noisy_sign(a: torch.Tensor, noise: Noise, scale: float, mode: str,
               generator: torch.Generator | None) -> torch.Tensor:
    """The forward of a noise-injected sign, ``x = sign(a - s z)``, in one of three modes.

    ``"mode"``: sign(a) with sign(0) = +1; ``"mean"``: 2F(a/s) - 1; ``"sample"``:
    :func:`sample_sign`. Shared by the stochastic activation and the Bernoulli weights,
    which differ only in their backward. NaN inputs give NaN in every mode.
    """
    if mode == "mode":
        return sign_pm1(a)
    if mode == "mean":
        return noise.mean(upcast(a) / scale).to(a.dtype)
    return sample_sign(a, noise, scale, generator)


def sample_sign(a: torch.Tensor, noise: Noise, scale: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """``sign(a - s z)``, ``z`` i.i.d. standard noise of CDF ``F``: +1 with probability ``F(a / s)``.

    Returned in ``a``'s dtype and shape (contiguous); ``a`` is not modified; NaN where ``a``
    is NaN. CPU: the Philox stream seeded by four words drawn from ``generator`` (see
    :mod:`stbin.estimators.random`); other devices: ``torch.rand`` from ``generator``.

    >>> from stbin.estimators.noise import get_noise
    >>> sample_sign(torch.tensor([-50.0, 50.0]), get_noise("logistic"), 1.0, torch.Generator().manual_seed(0))
    tensor([-1.,  1.])
    """
    if a.device.type != "cpu":
        return _sample_sign_rand(a, noise, scale, generator)
    seed = draw_seed(generator)
    if is_compiling():
        p = probability(a, noise, scale)
        philox_sign_(p, seed)  # one opaque node of the graph
    else:
        p = _sample_eager(a, noise, scale, seed)  # eager: no custom-op dispatch (about 50 us a call)
    return p if p.dtype == a.dtype else p.to(a.dtype)


def _sample_eager(a: torch.Tensor, noise: Noise, scale: float, seed: torch.Tensor) -> torch.Tensor:
    """Eager CPU sampling into the (possibly reused) output buffer.

    Noises of :data:`ONE_PASS` (logistic, uniform) on float32/float64 tensors from
    ``THRESHOLDS.elementwise_kernel_min_numel`` elements on: their one-pass kernel (the
    logistic one with its exact fix-up, :mod:`._logistic_sampling`); otherwise ``F(a/s)``
    into the buffer, then the comparison kernel in place. Both give the same numbers. The
    one-pass kernels also write the samples' int8 twin where :func:`stbin.estimators._twins.wanted`
    (attached to the output unless a sample is NaN).
    """
    out = BUFFERS.take(a.shape, compute_dtype(a.dtype))
    if not a.numel():
        return out
    flat, src = out.view(-1), a.reshape(-1)
    one_pass = ONE_PASS.get(noise.cdf) if _kernel is not None else None
    if one_pass is not None and a.numel() >= THRESHOLDS.elementwise_kernel_min_numel \
            and one_pass[0](src, flat, scale):
        threads = torch.get_num_threads()
        parallel = use_parallel(a.numel(), threads)

        def redo(lo: int, hi: int) -> None:  # the two-pass way on elements lo .. hi-1
            _cdf_into(flat[lo:hi], src[lo:hi], noise, scale)
            _kernel.compare_inplace(flat[lo:hi].numpy(), seed.numpy(), False, start=lo)

        if not _twins.wanted(a.numel()):
            one_pass[1](flat, src, scale, seed, parallel, threads, redo)
            return out
        twin = BUFFERS.take(a.shape, torch.int8)
        if one_pass[1](flat, src, scale, seed, parallel, threads, redo, twin.view(-1)):
            _twins.attach(out, twin)
        return out
    _cdf_into(flat, src, noise, scale)
    _philox_sign_impl(out, seed)
    return out


def _cdf_into(dst: torch.Tensor, a: torch.Tensor, noise: Noise, scale: float) -> None:
    """``dst <- F(upcast(a) / scale)``: the same operations as :func:`probability`, written into ``dst``."""
    if noise.cdf is not torch.sigmoid:
        t, _ = scaled(a, scale)
        dst.copy_(noise.cdf(t))
        return
    t = a
    if a.dtype != dst.dtype:
        t = dst.copy_(a)  # upcast first, then divide, as upcast(a) / scale
    if scale != 1.0:
        t = torch.div(t, scale, out=dst)
    torch.sigmoid(t, out=dst)




def _sample_sign_rand(a: torch.Tensor, noise: Noise, scale: float,
                      generator: torch.Generator | None) -> torch.Tensor:
    """Devices other than CPU: ``+1`` where ``u < F(a/s)``, ``u = torch.rand`` in the compute dtype."""
    p = probability(a, noise, scale)
    u = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
    x = u.lt_(p).mul_(2).sub_(1)  # the uniform draw's buffer receives 1.0 / 0.0, then 2x - 1
    x = torch.where(torch.isnan(p), p, x)
    return x if x.dtype == a.dtype else x.to(a.dtype)
