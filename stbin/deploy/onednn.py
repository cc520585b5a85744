"""Binary convolutions at large batches on oneDNN's int8 convolution (AMX tiles where the CPU has them).

For ±1 operands an int8 convolution is exact: the input ``x`` goes in as the uint8 ``x + 1`` (0 or 2) with zero
point 1 and scale 1, the weights as int8 ±1 with scale 1 and zero point 0, so oneDNN computes in int32
``sum (u - 1) * w = sum x * w`` over the taps inside the map; zero padding is the zero point, i.e. a real 0, as
PyTorch's zero padding of a ±1 input and the popcount loops' valid-tap count (``dot = K_valid - 2 popcount``).
Its float32 output ``D`` holds those integers exactly (``|dot| <= C * KH * KW < 2**24``, checked), so the output
stages that follow (:mod:`stbin.deploy._onednn_loops`: ``bconv2d``'s integer thresholds, ``bconv2d_res``'s float
tail with the same operations in the same order) give the popcount path's bits and values, bit for bit.

Measured on a 2-core Sapphire-Rapids-class guest (``benchmarks/bench_onednn_conv.py``, docs/performance-deploy.md):
at batch 64, ResNet-20's 3x3 layers run 1.5-3.3x faster per core on oneDNN's AMX kernels
(``brg_conv_fwd:avx10_1_512_amx``) than on the XOR-popcount loops; at batch 1 they tie, so the path is taken only
from :data:`MIN_MACS` multiply-adds on. It is used only where torch has the ops
(``torch.ops.onednn.qconv_prepack`` / ``qconv2d_pointwise``), the CPU has AMX int8 tiles, and a self-test of the
exactness above passes once per process (:func:`available`); ``STBIN_ONEDNN=0`` turns it off. Elsewhere the
engine's own loops run, unchanged.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import numpy as np

from stbin.deploy.ops import OPS, Op, RunContext
from stbin.deploy.packing import n_words

#: multiply-adds (N * OH * OW * OC * C * KH * KW) from which a binary convolution runs on oneDNN: ResNet-20's
#: layers at batch 1 (2.4 M) tie with the popcount loops (measured), at batch 64 (151 M) they run 1.5-3.3x faster
MIN_MACS = 16_000_000
#: the largest number of taps (C * KH * KW) whose dot products float32 holds exactly
MAX_TAPS = 2**24 - 1
_STATE: dict[str, Any] = {}


def enabled() -> bool:
    """The path is on unless ``STBIN_ONEDNN=0``."""
    return os.environ.get("STBIN_ONEDNN", "1") != "0"


def _qconv(x_u8: Any, wp: Any, m: int, geo: tuple[tuple[int, int], ...]) -> Any:
    import torch

    (sh, sw), (ph, pw), (dh, dw) = geo
    return torch.ops.onednn.qconv2d_pointwise(x_u8, 1.0, 1, wp, torch.ones(m), torch.zeros(m, dtype=torch.long), None,
                                              [sh, sw], [ph, pw], [dh, dw], 1, 1.0, 0, torch.float32, "none", [], "")


def _prepack(w_int8: Any, in_shape: tuple[int, ...], geo: tuple[tuple[int, int], ...]) -> Any:
    import torch

    (sh, sw), (ph, pw), (dh, dw) = geo
    return torch.ops.onednn.qconv_prepack(w_int8, torch.ones(w_int8.shape[0]), 1.0, 1, [sh, sw], [ph, pw], [dh, dw],
                                          1, list(in_shape))


def _self_test() -> bool:
    """oneDNN's int8 convolution of random ±1 operands equals the exact integer convolution (float64), padding,
    strides, dilation and channels across a word boundary included."""
    import torch

    g = torch.Generator().manual_seed(0)
    for n, c, h, m, k, geo in ((2, 70, 7, 19, 3, ((2, 1), (1, 2), (1, 2))), (3, 16, 6, 32, 1, ((2, 2), (0, 0), (1, 1))),
                               (1, 3, 5, 5, 3, ((1, 1), (1, 1), (1, 1)))):
        x = torch.randint(0, 2, (n, c, h, h), generator=g).double() * 2 - 1
        w = torch.randint(0, 2, (m, c, k, k), generator=g).double() * 2 - 1
        want = torch.nn.functional.conv2d(x, w, None, geo[0], geo[1], geo[2])
        u = (x + 1).to(torch.uint8).contiguous(memory_format=torch.channels_last)
        got = _qconv(u, _prepack(w.to(torch.int8), tuple(x.shape), geo), m, geo)
        if got.dtype != torch.float32 or got.shape != want.shape or not torch.equal(got.double(), want):
            return False
    return True


def available() -> bool:
    """Whether this process may use the path: enabled, torch's oneDNN int8 ops present, AMX int8 tiles on the CPU,
    and the exactness self-test passed (run once per process)."""
    if not enabled():
        return False
    if "ok" not in _STATE:
        ok = False
        try:
            import torch

            ops = torch.ops.onednn
            if (sys.byteorder == "little" and hasattr(ops, "qconv_prepack") and hasattr(ops, "qconv2d_pointwise")
                    and getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()):
                ok = _self_test()
        except (ImportError, RuntimeError, AttributeError, TypeError):
            ok = False
        _STATE["ok"] = ok
    return bool(_STATE["ok"])


# -- checked entry points of the loops (the conventions of stbin.deploy.kernels) --------------------------------

def _dots(k: str, D: np.ndarray, shape: tuple[int, ...]) -> None:
    from stbin.deploy.kernels import _arr, _shape

    _arr(k, "D", D, np.float32, 4)
    _shape(k, "D", D, shape)
    if not D.flags.c_contiguous:
        raise ValueError(f"{k}: D must be C-contiguous")


#: byte j of entry b: 0 if bit j of b is set (-1), else 2 (+1 plus one), for :func:`bits_u8`
_LUT = np.array([sum((0 if b >> j & 1 else 2) << (8 * j) for j in range(8)) for b in range(256)], np.uint64)


def _run(k: str, serial: bool, work: int, *args: Any) -> None:
    """The loop ``k`` on checked arguments: its serial twin if ``serial`` (callable from several threads at once,
    never entering numba's thread pool), else as the engine's kernels pick it."""
    from stbin.deploy import _onednn_loops
    from stbin.deploy.kernels import _launch

    if serial:
        getattr(_onednn_loops, k + "_serial")(*args)
    else:
        _launch(k, work, *args)


def bits_u8(X: np.ndarray, c_bits: int, out: np.ndarray, serial: bool = False) -> None:
    """The uint8 map (N, H, W, C) of ``x + 1`` (0 for a set bit of X (N, H, W, ceil(C/64)) uint64, else 2) into
    ``out`` (N, H, W, C // 8) uint64 (its uint8 view, little endian); C must be a multiple of 8."""
    from stbin.deploy.kernels import _arr, _int, _shape

    k = "bits_u8"
    _arr(k, "X", X, np.uint64, 4)
    c = _int(k, "c_bits", c_bits, 8, 64 * X.shape[3])
    if c % 8:
        raise ValueError(f"{k}: c_bits must be a multiple of 8, got {c}")
    _shape(k, "X", X, (*X.shape[:3], n_words(c)))
    _arr(k, "out", out, np.uint64, 4)
    _shape(k, "out", out, (*X.shape[:3], c // 8))
    _run(k, serial, out.size, X, c, _LUT, out)


def float_thresholds(S: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 forms of ``bconv2d``'s integer thresholds for dot products below 2**24 in magnitude: S (±1, else a
    ValueError) as is, T clamped to [-2**24, 2**24] (the same test ``S * dot >= T``: beyond, its outcome is
    constant and the bound gives it; inside, float32 holds every integer)."""
    if not np.all(np.abs(S.astype(np.int64)) == 1):
        raise ValueError("dot_sign: threshold directions S must be +1 or -1")
    return S.astype(np.float32), np.clip(T.astype(np.int64), -2**24, 2**24).astype(np.float32)


def dot_sign(D: np.ndarray, S: np.ndarray, T: np.ndarray, out: np.ndarray, serial: bool = False) -> None:
    """Bit o of out (N, OH, OW, ceil(OC/64)) = not (S[o] * D[..., o] >= T[o]): D (N, OH, OW, OC) float32 integers,
    S, T (OC,) float32 from :func:`float_thresholds`."""
    from stbin.deploy.kernels import _arr, _shape, _thresholds

    k = "dot_sign"
    _dots(k, D, D.shape)
    _thresholds(k, S, T, np.float32, D.shape[3])
    if not (S.flags.c_contiguous and T.flags.c_contiguous):
        raise ValueError(f"{k}: S and T must be C-contiguous")
    _arr(k, "out", out, np.uint64, 4)
    _shape(k, "out", out, (*D.shape[:3], n_words(D.shape[3])))
    _run(k, serial, D.size, D, S, T, out)


def dot_res(D: np.ndarray, *tail: Any, out_f_nhwc: bool, pool: tuple[int, int], serial: bool = False) -> None:
    """A residual block's tail (:func:`stbin.deploy.fused_kernels.bconv2d_res`'s operands after the geometry) on
    the dot products D (N, OH, OW, OC) float32 integers instead of a binary convolution."""
    from stbin.deploy.fused_kernels import res_tail

    k = "dot_res"
    _dots(k, D, D.shape)
    args = res_tail(k, D.shape, *tail, out_f_nhwc, pool)
    _run(k, serial, D.size * 4, D, *args)


# -- the convolution and the plan steps --------------------------------------------------------------------------

def _geometry(op: Op) -> tuple[tuple[int, int], ...]:
    a = op.attrs
    return tuple((int(a[key][0]), int(a[key][1])) for key in ("stride", "padding", "dilation"))  # type: ignore[return-value]


def conv_dots(op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
    """The exact dot products (N, OH, OW, OC) float32 of the binary convolution ``op`` on the bit map ``x``
    (N, H, W, ceil(C/64)), on oneDNN's int8 convolution with torch's current threads (serial loops only: callable
    from several threads at once on parts of a batch)."""
    import torch

    from stbin.deploy.geometry import conv_out_hw

    w, c, geo = op.arrays["weight"], int(op.attrs["in_channels"]), _geometry(op)
    m, kh, kw, _ = w.shape
    n, h, wd = x.shape[:3]
    oh, ow = conv_out_hw(h, wd, kh, kw, *geo)

    def weights() -> Any:  # packed (M, KH, KW, CW) bits -> int8 ±1 (M, C, KH, KW), set bit = -1
        bits = (w[..., np.arange(c) // 64] >> (np.arange(c) % 64).astype(np.uint64)) & np.uint64(1)
        return _prepack(torch.from_numpy((1 - 2 * bits.astype(np.int8)).transpose(0, 3, 1, 2).copy()),
                        (n, c, h, wd), geo)
    wp = ctx.cache(op, f"onednn-{n}x{h}x{wd}", weights)
    u = np.empty((n, h, wd, c // 8), np.uint64)
    bits_u8(np.ascontiguousarray(x), c, u, serial=True)
    with torch.no_grad():
        y = _qconv(torch.from_numpy(u.view(np.uint8)).permute(0, 3, 1, 2), wp, m, geo)
    if y.dtype != torch.float32 or tuple(y.shape) != (n, m, oh, ow):
        raise ValueError(f"onednn: the convolution returned {tuple(y.shape)} {y.dtype}, expected {(n, m, oh, ow)} float32")
    return np.ascontiguousarray(y.permute(0, 2, 3, 1).numpy())  # channel-last already: a view, no copy


def _macs(op: Op, x: np.ndarray) -> int:
    from stbin.deploy.geometry import conv_out_hw

    m, kh, kw, _ = op.arrays["weight"].shape
    oh, ow = conv_out_hw(x.shape[1], x.shape[2], kh, kw, op.attrs["stride"], op.attrs["padding"], op.attrs["dilation"])
    return len(x) * oh * ow * m * int(op.attrs["in_channels"]) * kh * kw


def _eligible(op: Op) -> bool:
    w = op.arrays["weight"]
    c = int(op.attrs["in_channels"])
    return c % 8 == 0 and c * w.shape[1] * w.shape[2] <= MAX_TAPS and available()


def _large(op: Op, x: np.ndarray) -> bool:
    """At least MIN_MACS multiply-adds, and not a compiled plan being recorded (a torch call is not a loop of the
    engine: the step then runs as a Python step of the plan)."""
    from stbin.deploy import kernels

    large = _macs(op, x) >= MIN_MACS
    if large and kernels.is_recording():
        from stbin.deploy.jit_plan import _Unplannable

        raise _Unplannable("oneDNN's convolution runs outside the engine's loops")
    return large


def _in_parts(op: Op, x: np.ndarray, part: Callable[[int, int], None]) -> None:
    """``part(lo, hi)`` on one part of the batch per engine thread, concurrently, each on one torch thread
    (:func:`stbin.deploy.row_parts.run_parts`: no OpenMP pool woken between the engine's kernels)."""
    from stbin.deploy.row_parts import run_parts

    run_parts(len(x), _macs(op, x), part, split_macs=0)


def _batch_part(a: np.ndarray, n: int, lo: int, hi: int) -> np.ndarray:
    """Rows lo:hi of a per-image operand (first axis ``n``), other operands (weights, absent ones) as they are."""
    return a[lo:hi] if isinstance(a, np.ndarray) and a.ndim == 4 and a.shape[0] == n and n else a


def bconv_step(ops: list[Op], net: Any) -> Callable[[np.ndarray, RunContext], np.ndarray] | None:
    """Plan step of a ``bconv2d`` op (packed bits out): oneDNN's dot products, then the integer thresholds."""
    from stbin.deploy.geometry import conv_out_hw

    op, run = ops[0], OPS.get("bconv2d").run
    if not _eligible(op):
        return None

    def step(x: np.ndarray, ctx: RunContext) -> np.ndarray:
        if not _large(op, x):
            return run(op, x, ctx)
        S, T = ctx.cache(op, "onednn-thresholds", lambda: float_thresholds(op.arrays["S"], op.arrays["T"]))
        m, kh, kw, _ = op.arrays["weight"].shape
        oh, ow = conv_out_hw(x.shape[1], x.shape[2], kh, kw, op.attrs["stride"], op.attrs["padding"],
                             op.attrs["dilation"])
        out = np.empty((len(x), oh, ow, n_words(m)), np.uint64)

        def part(lo: int, hi: int) -> None:
            dot_sign(conv_dots(op, x[lo:hi], ctx), S, T, out[lo:hi], serial=True)
        _in_parts(op, x, part)
        return out
    return step


def bconv_res_step(ops: list[Op], net: Any) -> Callable[[np.ndarray, RunContext], np.ndarray] | None:
    """Plan step of a ``bconv2d_res`` op: oneDNN's dot products, then the residual block's tail."""
    from stbin.deploy.ops.fused import res_operands

    op, run = ops[0], OPS.get("bconv2d_res").run
    if not _eligible(op):
        return None

    def step(x: np.ndarray, ctx: RunContext) -> np.ndarray:
        if not _large(op, x):
            return run(op, x, ctx)
        tail, pool, out = res_operands(op, x, ctx)

        def part(lo: int, hi: int) -> None:
            D = conv_dots(op, x[lo:hi], ctx)
            dot_res(D, *(_batch_part(a, len(x), lo, hi) for a in tail), out_f_nhwc="S" in op.arrays, pool=pool,
                    serial=True)
        _in_parts(op, x, part)
        return out
    return step
