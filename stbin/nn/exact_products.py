r"""Exact integer forward products of binary layers on CPU: ``linear`` and ``conv2d``.

When both operands of a layer's product hold only the values -1, 0 and +1 (a binarized
input times binary weights), every product term is an integer and so is every sum of
them. A float32 GEMM then computes the exact result (every partial sum is an integer below
:math:`2^{24}` in magnitude), and so does an **8-bit integer** GEMM with 32-bit
accumulation — which the CPU's integer dot-product units (AVX-512 VNNI, AMX) run several
times faster. :func:`linear` and :func:`conv2d` take that route when it gives the same
numbers and fall back to ``torch.nn.functional.linear`` / ``conv2d`` otherwise:

* forward: :math:`y = \mathrm{float}(\mathrm{int8}(x)\,\mathrm{int8}(w)^\top) + b`
  (``torch._int_mm``), resp. oneDNN's quantized convolution on :math:`x + 1` in uint8 with
  zero point 1 and int8 weights, written in float (padding is the zero point, i.e. the
  value 0, as in the float convolution). The integer sum is exact, so the result is the
  float product's, bit for bit without a bias; a bias is added once to the exact sum (one
  rounding, the correctly rounded value; a float GEMM may round before the last term);
* backward: the float operations autograd uses for ``linear`` / ``conv2d``:
  :math:`\partial x = g\,w`, :math:`\partial w = g^\top x`, :math:`\partial b = \sum g`
  (``aten.convolution_backward`` for the convolution), so gradients are unchanged.

The route is taken on CPU tensors of float32/float64, outside CPU autocast (whose products are
bfloat16), on a CPU with 8-bit dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX), for
products of at least :data:`MIN_MACS` multiply-adds whose weights are reused enough to repay
their conversion (:data:`MIN_LINEAR_ROWS`, :data:`MIN_CONV_REUSE`, :data:`MIN_CONV_CHANNELS`),
and only after a one-pass check (:mod:`stbin.nn._ternary_numba`) that both operands are ternary; anything else (a real
input, mean-mode weights, a channel scale, NaN) takes the float path with its numbers. A
real-valued operand is refused from its first :data:`HEAD` elements, without a pass over it. A
sampled operand (a stochastic activation, Bernoulli weights) comes with the **int8 twin** its
sampler wrote (:mod:`stbin.estimators._twins`), which replaces the conversion: no pass over the
float tensor (measured: 9 ms of a 111 ms training step of a 4096 x 4096 layer at batch 64, one
thread). The convolution's uint8 input ``x + 1`` is the twin plus one, a pass over 1 byte an
element (measured, one thread: 8 against 26 us for 16 Ki elements, 81 against 283 us for 1 Mi); a
uint8 twin from the sampler would save only that pass, for one more byte written at every sampling
call, so there is none. Under ``torch.compile`` the samplers write no twin (the conversion runs).
:class:`stbin.nn.BinaryLinear` and :class:`stbin.nn.BinaryConv2d` call them whenever their
weights are binary without a channel scale, whatever binarizes their input (an input
quantizer or the activation module before them). Under ``torch.compile`` they call the custom
operators ``stbin::exact_linear`` / ``stbin::exact_conv2d`` (one opaque node each; the checks run
when the compiled graph runs).

Example (a product of ±1 matrices, large enough for the integer route)::

    >>> x = torch.randint(0, 2, (64, 512)).float() * 2 - 1
    >>> w = torch.randint(0, 2, (256, 512)).float() * 2 - 1
    >>> torch.equal(linear(x, w), torch.nn.functional.linear(x, w))
    True
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from stbin.estimators import _twins
from stbin.estimators._common import is_compiling, use_parallel

#: products below this many multiply-adds keep the float path (the conversions' fixed cost dominates)
MIN_MACS = 1 << 21
#: a linear layer takes the integer route from this many rows on: the weights' conversion (about 0.6 ns a
#: weight on one core) is then repaid by the faster product (measured: benchmarks/bench_layers.py)
MIN_LINEAR_ROWS = 32
#: a convolution takes it where each weight is used at least this many times (N * H' * W') per torch
#: thread, and from this many output channels on: oneDNN packs the int8 weights anew at every call (7-10 ns
#: a weight, one thread), which only a large reuse repays (measured on this project's 2-core x86 machine,
#: 2026-12-02: a 512-channel 3x3 convolution on 2x2 maps at batch 16 took 5.2 ms in float32 against 17.5 ms
#: for the packing alone; a 64-channel one on 32x32 maps 12.4 ms against 0.24 + 4.6 ms)
MIN_CONV_REUSE = 2048
MIN_CONV_CHANNELS = 32
#: the largest reduction length: float32 sums of ±1 terms are exact below 2^24
MAX_K = 1 << 24
#: serial cost of converting one element (``to_small_int``), for the size from which the conversion runs over numba's
#: threads (:func:`stbin.estimators._common.use_parallel`): measured 0.21 ns on one thread (1 M elements, float32;
#: parallel on 2 threads of the 2-vCPU VM: 0.39-0.47 against 0.22 ms serial at 1 M, even at 4 M)
CONVERT_SECONDS = 0.2e-9
#: elements checked before the one-pass conversion (a real-valued operand is refused without a pass over it)
HEAD = 64
_STATE = {"enabled": True}


@functools.lru_cache(maxsize=1)
def cpu_supported() -> bool:
    """Whether this CPU has 8-bit dot-product instructions and torch has oneDNN's quantized kernels."""
    try:
        from llvmlite import binding

        from stbin.nn import _ternary_numba  # noqa: F401 - numba must import

        feats = binding.get_host_cpu_features()
        vnni = any(feats.get(f) for f in ("avx512vnni", "avxvnni", "amx-int8"))
        return bool(vnni and torch.backends.mkldnn.is_available() and hasattr(torch, "_int_mm")
                    and hasattr(torch.ops.onednn, "qconv2d_pointwise"))
    except Exception:  # noqa: BLE001 - no numba, no llvmlite, an unusual torch build: the float path
        return False


def enabled() -> bool:
    """Whether the integer route may be taken (on by default; see :func:`disabled`)."""
    return _STATE["enabled"] and cpu_supported()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within the block, every product takes the float path (benchmarks, tests)."""
    before = _STATE["enabled"]
    _STATE["enabled"] = False
    try:
        yield
    finally:
        _STATE["enabled"] = before


def _autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # pragma: no cover - torch without the device-type form
        return torch.is_autocast_cpu_enabled()


def _usable(x: torch.Tensor, w: torch.Tensor, macs: int, k: int) -> bool:
    return (macs >= MIN_MACS and 0 < k < MAX_K and x.device.type == "cpu" and w.device.type == "cpu"
            and x.dtype == w.dtype and x.dtype in (torch.float32, torch.float64) and not _autocast() and enabled())


_twins.set_consumer(enabled)  # the samplers write int8 twins while this route is enabled


def _small_int(t: torch.Tensor, offset: int) -> torch.Tensor | None:
    """``sign(t) + offset`` as int8 (offset 0) / uint8 (offset 1) in ``t``'s shape, or None if ``t`` is not ternary.

    A sample tensor's int8 twin (:mod:`stbin.estimators._twins`: written by the sampler, valid only for this
    very, unchanged tensor) is used as it is, resp. plus one as uint8 (``-1 + 1 = 0``, ``1 + 1 = 2``: one pass
    over 1 byte an element); otherwise the checked conversion reads ``t``.
    """
    from stbin.nn._ternary_numba import to_small_int

    twin = _twins.lookup(t)
    if twin is not None:
        return twin if offset == 0 else twin.add(1).view(torch.uint8)
    src = t.detach().contiguous()
    head = src.view(-1)[:HEAD].numpy()
    if not ((head == 1) | (head == -1) | (head == 0)).all():  # a real-valued tensor fails here, at no cost
        return None
    out = torch.empty(src.shape, dtype=torch.int8 if offset == 0 else torch.uint8)
    threads = torch.get_num_threads()
    ok = to_small_int(src.view(-1).numpy(), out.view(-1).numpy(), offset,
                      use_parallel(src.numel(), threads, CONVERT_SECONDS), threads)
    return out if ok else None


class _IntLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2, w, b, xi, wi):  # type: ignore[no-untyped-def, override]
        ctx.save_for_backward(x2, w)
        ctx.has_bias = b is not None
        y = torch._int_mm(xi, wi.t()).to(x2.dtype)
        return y.add_(b) if b is not None else y

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def, override]
        x2, w = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        return (*_linear_grads(g, x2, w, mask), None, None)


def _linear_grads(g: torch.Tensor, x2: torch.Tensor, w: torch.Tensor,
                  mask: list[bool]) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The gradients autograd computes for ``F.linear`` on 2-D ``x2`` (its ``addmm`` backward's operations)."""
    return (g.mm(w) if mask[0] else None, g.t().mm(x2) if mask[1] else None, g.sum(0) if mask[2] else None)


def _operands(x: torch.Tensor, w: torch.Tensor, x_offset: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Both operands as 8-bit integers (``x`` shifted by ``x_offset``), or None if either is not ternary (the
    input first: a real-valued input is refused before the weights are converted)."""
    xi = _small_int(x, x_offset)
    wi = None if xi is None else _small_int(w, 0)
    return None if wi is None else (xi, wi)


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.nn.functional.linear(x, w, b)``, through an exact 8-bit product where it applies.

    Args:
        x: input (*, K); w: weight (M, K); b: optional bias (M,).

    Shape: output (*, M), as ``F.linear``.
    """
    if is_compiling():  # one opaque node of the graph: the checks run when the compiled graph runs
        return exact_linear(x, w, b) if _OPS and x.device.type == "cpu" else F.linear(x, w, b)
    return _linear(x, w, b)


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    k = w.shape[-1] if w.dim() == 2 else 0
    rows = x.numel() // max(k, 1) if x.dim() >= 2 and x.shape[-1] == k else 0
    if not (rows >= MIN_LINEAR_ROWS and _usable(x, w, rows * k * w.shape[0], k)):
        return F.linear(x, w, b)
    ints = _operands(x, w, 0)  # x itself, not a reshape of it: a sample's twin belongs to that tensor object only
    if ints is None:
        return F.linear(x, w, b)
    x2 = x.reshape(rows, k)
    y = _IntLinear.apply(x2, w, b, ints[0].reshape(rows, k), ints[1])
    return y if x.dim() == 2 else y.reshape(*x.shape[:-1], w.shape[0])


class _IntConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, xu, wp, geometry):  # type: ignore[no-untyped-def, override]
        stride, padding, dilation, groups = geometry
        ctx.save_for_backward(x, w)
        ctx.geometry, ctx.has_bias = geometry, b is not None
        m = w.shape[0]
        y = torch.ops.onednn.qconv2d_pointwise(xu, 1.0, 1, wp, torch.ones(m), torch.zeros(m, dtype=torch.long), None,
                                               stride, padding, dilation, groups, 1.0, 0, torch.float32, "none", [],
                                               "")
        y = y.to(x.dtype).contiguous()  # NCHW, as the float convolution returns for an NCHW input
        return y.add_(b.view(1, -1, 1, 1)) if b is not None else y

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def, override]
        x, w = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        return (*_conv_grads(g, x, w, ctx.geometry, ctx.has_bias, mask), None, None, None)


def _conv_grads(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, geometry: tuple, has_bias: bool,
                mask: list[bool]) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The gradients autograd computes for ``F.conv2d`` (``aten.convolution_backward``, the same call)."""
    stride, padding, dilation, groups = geometry
    return torch.ops.aten.convolution_backward(g.contiguous(), x, w, [w.shape[0]] if has_bias else None, stride,
                                               padding, dilation, False, [0, 0], groups, mask)


def _pair(v: int | Sequence[int]) -> list[int] | None:
    t = [v, v] if isinstance(v, int) else list(v)
    return t if len(t) == 2 and all(isinstance(i, int) for i in t) else None


def conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, stride: int | Sequence[int] = 1,
           padding: int | Sequence[int] | str = 0, dilation: int | Sequence[int] = 1, groups: int = 1) -> torch.Tensor:
    """``torch.nn.functional.conv2d`` with zero padding, through an exact 8-bit product where it applies.

    Args: as ``F.conv2d``; ``x`` (N, C, H, W) contiguous NCHW, ``w`` (M, C / groups, kh, kw).

    Shape: output (N, M, H', W'), as ``F.conv2d``.
    """
    if is_compiling():
        geometry = (_pair(stride), [0, 0] if padding == "valid" else _pair(padding), _pair(dilation))
        if _OPS and x.device.type == "cpu" and None not in geometry:
            return exact_conv2d(x, w, b, *geometry, groups)  # type: ignore[arg-type]
        return F.conv2d(x, w, b, stride, padding, dilation, groups)
    return _conv2d(x, w, b, stride, padding, dilation, groups)


def _conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: int | Sequence[int],
            padding: int | Sequence[int] | str, dilation: int | Sequence[int], groups: int) -> torch.Tensor:
    geometry = (_pair(stride), [0, 0] if padding == "valid" else _pair(padding), _pair(dilation), groups)  # type: ignore[arg-type]
    if (x.dim() != 4 or w.dim() != 4 or None in geometry or not x.is_contiguous() or x.shape[1] != w.shape[1] * groups
            or w.shape[0] % groups):
        return F.conv2d(x, w, b, stride, padding, dilation, groups)
    n, _, h, wd = x.shape
    (sh, sw), (ph, pw), (dh, dw) = geometry[:3]  # type: ignore[misc]
    oh = (h + 2 * ph - dh * (w.shape[2] - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (w.shape[3] - 1) - 1) // sw + 1
    k = w[0].numel()
    reuse = n * oh * ow
    if (reuse < MIN_CONV_REUSE * torch.get_num_threads() or w.shape[0] // groups < MIN_CONV_CHANNELS
            or not _usable(x, w, reuse * w.shape[0] * k, k)):
        return F.conv2d(x, w, b, stride, padding, dilation, groups)
    ints = _operands(x, w, 1)
    if ints is None:
        return F.conv2d(x, w, b, stride, padding, dilation, groups)
    xu, wi = ints
    wp = torch.ops.onednn.qconv_prepack(wi, torch.ones(w.shape[0]), 1.0, 1, geometry[0], geometry[1], geometry[2],
                                        groups, list(x.shape))
    return _IntConv2d.apply(x, w, b, xu, wp, geometry)


# -- torch.compile: the same routes as custom operators (opaque nodes, checks at run time) ---------------------------

_OPS = hasattr(torch.library, "custom_op")

if _OPS:
    @torch.library.custom_op("stbin::exact_linear", mutates_args=())
    def exact_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """:func:`linear` as a custom operator (what a compiled graph calls)."""
        return _linear(x, w, b)

    @exact_linear.register_fake
    def _(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return x.new_empty((*x.shape[:-1], w.shape[0]))

    def _linear_setup(ctx, inputs, output):  # type: ignore[no-untyped-def]
        x, w, b = inputs
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None

    def _linear_backward(ctx, g):  # type: ignore[no-untyped-def]
        x, w = ctx.saved_tensors
        gx, gw, gb = _linear_grads(g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1]), w,
                                   [True, True, ctx.has_bias])
        return gx.reshape(x.shape), gw, gb

    exact_linear.register_autograd(_linear_backward, setup_context=_linear_setup)

    @torch.library.custom_op("stbin::exact_conv2d", mutates_args=())
    def exact_conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: list[int], padding: list[int],
                     dilation: list[int], groups: int) -> torch.Tensor:
        """:func:`conv2d` as a custom operator (what a compiled graph calls)."""
        return _conv2d(x.contiguous(), w, b, stride, padding, dilation, groups)

    @exact_conv2d.register_fake
    def _(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: list[int], padding: list[int],
          dilation: list[int], groups: int) -> torch.Tensor:
        return F.conv2d(x.contiguous(), w, b, stride, padding, dilation, groups).contiguous()

    def _conv_setup(ctx, inputs, output):  # type: ignore[no-untyped-def]
        x, w, b, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(x, w)
        ctx.geometry, ctx.has_bias = (stride, padding, dilation, groups), b is not None

    def _conv_backward(ctx, g):  # type: ignore[no-untyped-def]
        x, w = ctx.saved_tensors
        return (*_conv_grads(g, x, w, ctx.geometry, ctx.has_bias, [True, True, ctx.has_bias]), None, None, None, None)

    exact_conv2d.register_autograd(_conv_backward, setup_context=_conv_setup)
