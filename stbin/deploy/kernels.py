"""XNOR-popcount kernels: checked entry points to the compiled loops of :mod:`stbin.deploy._loops`.

All binary kernels take bit-packed operands (see :mod:`stbin.deploy.packing`: bit set =
-1, tail bits 0) and compute, for ±1 vectors of length ``K``,

    dot(x, w) = K - 2 * popcount(x XOR w)

with one ``llvm.ctpop.i64`` per 64-bit word (``vpopcntq`` on CPUs with AVX-512 VPOPCNTDQ).

* :func:`bgemm` — packed (N, KW) x packed (M, KW) -> int32 dot products (N, M);
* :func:`bgemm_sign` — the same fused with a per-output threshold and packing: output bit
  j of row i is set (-1) unless ``S[j] * dot >= T[j]``;
* the dense ops' kernels on word-major weights (eight outputs per ``vpopcntq``) are in
  :mod:`stbin.deploy.dense_kernels`;
* :func:`bconv2d` / :func:`bconv2d_sign` — direct binary 2-D convolution on channel-packed
  NHWC bits (N, H, W, CW) with tap-major weights (KH, KW, CW, OC); zero padding contributes
  0 (only the valid taps are counted), as PyTorch's zero padding of a ±1 input does;
* :func:`bmaxpool2d` — max pooling on packed bits;
* :func:`float_sign_pack` / :func:`float_sign_pack_nchw` — threshold float values and pack them.

**Memory safety.** The compiled loops run without bounds checks and take their sizes from
their arguments. Every function here therefore checks, in Python and before any compiled
loop runs, that each array has the dtype, the number of axes and exactly the shape the
others imply (e.g. the input's word count equals the weights', the output's shape equals
the convolution geometry's), and that every integer is in range; a mismatch raises a
one-line ValueError naming the kernel and the argument. A crafted deploy file can thus
never make a kernel read or write out of bounds, even if it passed :func:`stbin.deploy.load`.

Every call must hold :data:`KERNEL_LOCK` (numba's workqueue threading layer must not be
entered by two threads at once); :class:`stbin.deploy.DeployedNet` takes it.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import numpy as np

from stbin.deploy import _loops  # noqa: I001  (first: the install hint if numba is missing)
from stbin.deploy import _conv_loops, _dense_loops, _float_loops, _fused_loops, _screen_loops
from stbin.deploy._loops import KERNEL_LOCK, numba, popcount64  # noqa: F401  (re-exported)
from stbin.deploy.geometry import conv_out
from stbin.deploy.packing import n_words

_MAX_INT = 2**31 - 1
#: below this many word operations (~1 ms of one core) a kernel runs its serial twin: a parallel launch costs tens
#: of microseconds (measured: benchmarks/bench_dispatch.py), the serial call ~0.3 us
SERIAL_WORK = 1 << 20
#: the modules holding the compiled loops (each loop and its serial twin in one of them)
LOOP_MODULES = (_loops, _conv_loops, _float_loops, _dense_loops, _fused_loops, _screen_loops)


def _pick(name: str, work: int) -> Any:
    """The parallel kernel, or its serial twin for small work or a single thread."""
    mod = next(m for m in LOOP_MODULES if hasattr(m, name))
    if work < SERIAL_WORK or numba.get_num_threads() == 1:
        return getattr(mod, name + "_serial")
    return getattr(mod, name)


_RECORD = threading.local()


def _launch(name: str, work: int, *args: Any) -> None:
    """Run the compiled loop ``name`` (or its serial twin, see :func:`_pick`) on checked arguments,
    or, inside :func:`recording`, append ``(loop, args)`` to the record instead of running it."""
    loop = _pick(name, work)
    calls = getattr(_RECORD, "calls", None)
    if calls is None:
        loop(*args)
        return
    calls.append((loop, args))
    for a in args:  # a numpy write to a kernel's array after the call would be lost: make it fail instead
        if isinstance(a, np.ndarray) and a.flags.writeable and a.flags.owndata:
            _RECORD.frozen.append(a)
            a.flags.writeable = False


def scratch(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """An uninitialised work array that a kernel writes before any kernel reads it (e.g. the int32 dot
    products before a real-valued output stage). A compiled plan keeps it as a reusable buffer."""
    a = np.empty(shape, dtype)
    if getattr(_RECORD, "calls", None) is not None:
        _RECORD.scratch[id(a)] = a
    return a


class Record:
    """What a :func:`recording` block saw: ``calls`` (compiled loop, arguments) and the ``scratch`` arrays by id."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...]]] = []
        self.scratch: dict[int, np.ndarray] = {}


@contextlib.contextmanager
def recording() -> Iterator[Record]:
    """Check arguments as usual but record ``(compiled loop, arguments)`` instead of running the loops
    (used by :mod:`stbin.deploy.jit_plan` to build one compiled function per network). Arrays passed
    to a recorded call are read-only until the end of the block, so that code computing on them
    after the call fails."""
    before = getattr(_RECORD, "calls", None), getattr(_RECORD, "frozen", None), getattr(_RECORD, "scratch", None)
    rec = Record()
    _RECORD.calls, _RECORD.frozen, _RECORD.scratch = rec.calls, [], rec.scratch
    try:
        yield rec
    finally:
        for a in _RECORD.frozen:
            a.flags.writeable = True
        _RECORD.calls, _RECORD.frozen, _RECORD.scratch = before


def _arr(kernel: str, name: str, a: Any, dtype: type, ndim: int) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim:
        got = f"{a.dtype} with {a.ndim} axes" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{kernel}: {name} must be a {np.dtype(dtype).name} array with {ndim} axes, got {got}")
    return a


def _shape(kernel: str, name: str, a: np.ndarray, want: tuple[int, ...]) -> None:
    if tuple(a.shape) != tuple(want):
        raise ValueError(f"{kernel}: {name} has shape {tuple(a.shape)}, expected {tuple(want)}")


def _int(kernel: str, name: str, v: Any, lo: int, hi: int = _MAX_INT) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not lo <= int(v) <= hi:
        raise ValueError(f"{kernel}: {name} must be an integer in [{lo}, {hi}], got {v!r}")
    return int(v)


def _geometry(kernel: str, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w) -> tuple[int, ...]:
    return (_int(kernel, "stride_h", stride_h, 1), _int(kernel, "stride_w", stride_w, 1),
            _int(kernel, "pad_h", pad_h, 0), _int(kernel, "pad_w", pad_w, 0),
            _int(kernel, "dil_h", dil_h, 1), _int(kernel, "dil_w", dil_w, 1))


def _gemm_checks(kernel: str, X: np.ndarray, W: np.ndarray, k_bits: int, out: np.ndarray, out_dtype: type) -> int:
    """The checks shared by the binary GEMMs: X (N, KW), W (M, KW) u64, out of ``out_dtype``; returns ``k_bits``."""
    _arr(kernel, "X", X, np.uint64, 2)
    _arr(kernel, "W", W, np.uint64, 2)
    _arr(kernel, "out", out, out_dtype, 2)
    if W.shape[1] != X.shape[1]:
        raise ValueError(f"{kernel}: W has {W.shape[1]} words per row, X has {X.shape[1]}")
    return _int(kernel, "k_bits", k_bits, 0, 64 * X.shape[1])


def bgemm(X: np.ndarray, W: np.ndarray, k_bits: int, out: np.ndarray) -> None:
    """out[i, j] = ``K - 2 popcount(X[i] ^ W[j])``: X (N, KW) u64, W (M, KW) u64, out (N, M) int32."""
    k = _gemm_checks("bgemm", X, W, k_bits, out, np.int32)
    _shape("bgemm", "out", out, (X.shape[0], W.shape[0]))
    _launch("bgemm", X.shape[0] * W.shape[0] * X.shape[1], X, W, k, out)


def _thresholds(kernel: str, S: np.ndarray, T: np.ndarray, dtype: type, m: int, names: str = "ST") -> None:
    for name, a in zip(names if names != "ST" else ("S", "T"), (S, T)):
        _arr(kernel, name, a, dtype, 1)
        _shape(kernel, name, a, (m,))


def bgemm_sign(X: np.ndarray, W: np.ndarray, k_bits: int, S: np.ndarray, T: np.ndarray, out: np.ndarray) -> None:
    """Fused binary GEMM + threshold + packing: bit j of out[i] = not (S[j] * dot_ij >= T[j])."""
    k = _gemm_checks("bgemm_sign", X, W, k_bits, out, np.uint64)
    _thresholds("bgemm_sign", S, T, np.int32, W.shape[0])
    _shape("bgemm_sign", "out", out, (X.shape[0], n_words(W.shape[0])))
    _launch("bgemm_sign", X.shape[0] * W.shape[0] * X.shape[1], X, W, k, S, T, out)


def _conv_checks(kernel: str, X: np.ndarray, Wt: np.ndarray, c_bits: int, geo: tuple[int, ...]) -> tuple[int, int]:
    _arr(kernel, "X", X, np.uint64, 4)
    _arr(kernel, "Wt", Wt, np.uint64, 4)
    if Wt.shape[2] != X.shape[3]:
        raise ValueError(f"{kernel}: Wt has {Wt.shape[2]} words per tap, X has {X.shape[3]} per pixel")
    _int(kernel, "c_bits", c_bits, 0, 64 * X.shape[3])
    if not (X.flags.c_contiguous and Wt.flags.c_contiguous):  # the loops index both by flat offsets
        raise ValueError(f"{kernel}: X and Wt must be C-contiguous (np.ascontiguousarray)")
    sh, sw, ph, pw, dh, dw = geo
    return (conv_out(X.shape[1], Wt.shape[0], sh, ph, dh), conv_out(X.shape[2], Wt.shape[1], sw, pw, dw))


def bconv2d(X, Wt, c_bits, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, out) -> None:  # type: ignore[no-untyped-def]
    """Binary conv on packed NHWC bits X (N, H, W, CW), tap-major weights Wt (KH, KW, CW, OC):
    out (N, OH, OW, OC) int32 dot products, zero padding contributing 0."""
    geo = _geometry("bconv2d", stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    oh, ow = _conv_checks("bconv2d", X, Wt, c_bits, geo)
    _arr("bconv2d", "out", out, np.int32, 4)
    _shape("bconv2d", "out", out, (X.shape[0], oh, ow, Wt.shape[3]))
    _launch("bconv2d", out.size * Wt.shape[0] * Wt.shape[1] * Wt.shape[2], X, Wt, int(c_bits), *geo, out)


def bconv2d_sign(X, Wt, c_bits, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, S, T, out) -> None:  # type: ignore[no-untyped-def]
    """Binary conv fused with the threshold: out (N, OH, OW, ceil(OC/64)) packed bits."""
    geo = _geometry("bconv2d_sign", stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    oh, ow = _conv_checks("bconv2d_sign", X, Wt, c_bits, geo)
    _thresholds("bconv2d_sign", S, T, np.int32, Wt.shape[3])
    _arr("bconv2d_sign", "out", out, np.uint64, 4)
    _shape("bconv2d_sign", "out", out, (X.shape[0], oh, ow, n_words(Wt.shape[3])))
    _launch("bconv2d_sign", X.shape[0] * oh * ow * Wt.size, X, Wt, int(c_bits), *geo, S, T, out)


def bconv2d_float(X, Wt, c_bits, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, scale, bias, out) -> None:  # type: ignore[no-untyped-def]
    """Binary conv with real output straight to NCHW: out (N, OC, OH, OW) = float32(dot) * scale + bias."""
    k = "bconv2d_float"
    geo = _geometry(k, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    oh, ow = _conv_checks(k, X, Wt, c_bits, geo)
    _thresholds(k, scale, bias, np.float32, Wt.shape[3], ("scale", "bias"))
    _arr(k, "out", out, np.float32, 4)
    _shape(k, "out", out, (X.shape[0], Wt.shape[3], oh, ow))
    _launch(k, out.size * Wt.shape[0] * Wt.shape[1] * Wt.shape[2], X, Wt, int(c_bits), *geo, scale, bias, out)


def bmaxpool2d(X, any_mask, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, out) -> None:  # type: ignore[no-untyped-def]
    """Max pooling on packed NHWC bits (see :func:`stbin.deploy._loops.bmaxpool2d`)."""
    k = "bmaxpool2d"
    _arr(k, "X", X, np.uint64, 4)
    _arr(k, "any_mask", any_mask, np.uint64, 1)
    _shape(k, "any_mask", any_mask, (X.shape[3],))
    kh, kw = _int(k, "kh", kh, 1), _int(k, "kw", kw, 1)
    geo = _geometry(k, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    sh, sw, ph, pw, dh, dw = geo
    _arr(k, "out", out, np.uint64, 4)
    _shape(k, "out", out, (X.shape[0], conv_out(X.shape[1], kh, sh, ph, dh), conv_out(X.shape[2], kw, sw, pw, dw),
                           X.shape[3]))
    _launch("bmaxpool2d", out.size * kh * kw, X, any_mask, kh, kw, *geo, out)


def float_sign_pack(Y: np.ndarray, S: np.ndarray, T: np.ndarray, out: np.ndarray) -> None:
    """Threshold float rows Y (N, M) and pack them: bit j of out[i] = not (S[j] * Y[i, j] >= T[j])."""
    _arr("float_sign_pack", "Y", Y, np.float32, 2)
    _thresholds("float_sign_pack", S, T, np.float32, Y.shape[1])
    _arr("float_sign_pack", "out", out, np.uint64, 2)
    _shape("float_sign_pack", "out", out, (Y.shape[0], n_words(Y.shape[1])))
    _launch("float_sign_pack", Y.size // 4, Y, S, T, out)


def float_sign_pack_nchw(Y: np.ndarray, S: np.ndarray, T: np.ndarray, out: np.ndarray) -> None:
    """Threshold an NCHW float map per channel and pack it to NHWC bits (N, H, W, ceil(C/64))."""
    _arr("float_sign_pack_nchw", "Y", Y, np.float32, 4)
    n, c, h, w = Y.shape
    _thresholds("float_sign_pack_nchw", S, T, np.float32, c)
    _arr("float_sign_pack_nchw", "out", out, np.uint64, 4)
    _shape("float_sign_pack_nchw", "out", out, (n, h, w, n_words(c)))
    _launch("float_sign_pack_nchw", Y.size // 4, Y, S, T, out)


def _dense_checks(k: str, X: np.ndarray, Wt: np.ndarray, b: np.ndarray, out: np.ndarray, out_dtype: type) -> int:
    """The checks shared by the float GEMMs: X (N, K), Wt (K, M), b (M,) float32, out of ``out_dtype``; returns M."""
    _arr(k, "X", X, np.float32, 2)
    _arr(k, "Wt", Wt, np.float32, 2)
    _arr(k, "b", b, np.float32, 1)
    _arr(k, "out", out, out_dtype, 2)
    if Wt.shape[0] != X.shape[1]:
        raise ValueError(f"{k}: Wt has {Wt.shape[0]} input rows, X has {X.shape[1]} columns")
    m = Wt.shape[1]
    _shape(k, "b", b, (m,))
    return int(m)


def float_dense(X: np.ndarray, Wt: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = X @ Wt + b in float32 (the latency path of float layers): X (N, K), Wt (K, M), b (M,)."""
    k = "float_dense"
    m = _dense_checks(k, X, Wt, b, out, np.float32)
    _shape(k, "out", out, (X.shape[0], m))
    _launch(k, X.size * m // 64, X, Wt, b, out)


def float_dense_sign(X: np.ndarray, Wt: np.ndarray, b: np.ndarray, S: np.ndarray, T: np.ndarray,
                     out: np.ndarray) -> None:
    """First float layer fused with its folded threshold and packing: out (N, ceil(M/64)) bits."""
    k = "float_dense_sign"
    m = _dense_checks(k, X, Wt, b, out, np.uint64)
    _thresholds(k, S, T, np.float32, m)
    _shape(k, "out", out, (X.shape[0], n_words(m)))
    acc = scratch((X.shape[0], m), np.float32)
    _launch(k, X.size * m // 64, X, Wt, b, S, T, acc, out)


def unpack_float(X: np.ndarray, k_bits: int, out: np.ndarray) -> None:
    """±1 float32 values of the first ``k_bits`` bits of each packed row X (N, ceil(k_bits/64))."""
    _arr("unpack_float", "X", X, np.uint64, 2)
    k = _int("unpack_float", "k_bits", k_bits, 0)
    _shape("unpack_float", "X", X, (X.shape[0], n_words(k)))
    _arr("unpack_float", "out", out, np.float32, 2)
    _shape("unpack_float", "out", out, (X.shape[0], k))
    _launch("unpack_float", out.size // 16, X, k, out)


def unpack_float_nchw(X: np.ndarray, c_bits: int, out: np.ndarray) -> None:
    """±1 float32 NCHW map of channel-packed NHWC bits X (N, H, W, ceil(C/64)); out (N, C, H, W)."""
    k = "unpack_float_nchw"
    _arr(k, "X", X, np.uint64, 4)
    c = _int(k, "c_bits", c_bits, 0)
    _shape(k, "X", X, (*X.shape[:3], n_words(c)))
    _arr(k, "out", out, np.float32, 4)
    _shape(k, "out", out, (X.shape[0], c, X.shape[1], X.shape[2]))
    _launch(k, out.size // 16, X, c, out)


def real_out(dot: np.ndarray, scale: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    """out = float32(dot) * scale + bias per column: dot (N, M) int32, scale / bias (M,) float32."""
    k = "real_out"
    _arr(k, "dot", dot, np.int32, 2)
    _thresholds(k, scale, bias, np.float32, dot.shape[1], ("scale", "bias"))
    _arr(k, "out", out, np.float32, 2)
    _shape(k, "out", out, dot.shape)
    _launch(k, out.size // 16, dot, scale, bias, out)


def affine(X: np.ndarray, alpha: np.ndarray, beta: np.ndarray, out: np.ndarray) -> None:
    """out = X * alpha + beta per channel (axis 1) of X (N, C, ...) float32, rounded after each operation."""
    k = "affine"
    _arr(k, "X", X, np.float32, X.ndim if isinstance(X, np.ndarray) and X.ndim >= 2 else 2)
    _thresholds(k, alpha, beta, np.float32, X.shape[1], ("alpha", "beta"))
    _arr(k, "out", out, np.float32, X.ndim)
    _shape(k, "out", out, X.shape)
    n, c = X.shape[:2]
    _launch(k, out.size // 16, X.reshape(n, c, -1), alpha, beta, out.reshape(n, c, -1))


def add(A: np.ndarray, B: np.ndarray, out: np.ndarray) -> None:
    """out = A + B element-wise, float32 arrays of one shape."""
    for name, a in (("A", A), ("B", B), ("out", out)):
        _arr("add", name, a, np.float32, a.ndim if isinstance(a, np.ndarray) else 1)
        _shape("add", name, a, A.shape)
    _launch("add", out.size // 16, A.reshape(-1), B.reshape(-1), out.reshape(-1))


def zero_pad_shortcut(X: np.ndarray, stride_h: int, stride_w: int, before: int, out: np.ndarray) -> None:
    """out[:, before + c] = X[:, c, ::stride_h, ::stride_w], other channels 0: X (N, C, H, W) float32."""
    k = "zero_pad_shortcut"
    _arr(k, "X", X, np.float32, 4)
    sh, sw, b = _int(k, "stride_h", stride_h, 1), _int(k, "stride_w", stride_w, 1), _int(k, "before", before, 0)
    n, c, h, w = X.shape
    _arr(k, "out", out, np.float32, 4)
    if out.shape[0] != n or out.shape[1] < b + c or out.shape[2:] != (-(-h // sh), -(-w // sw)):
        raise ValueError(f"{k}: out has shape {tuple(out.shape)}, expected ({n}, >= {b + c}, {-(-h // sh)}, "
                         f"{-(-w // sw)})")
    _launch(k, out.size // 16, X, sh, sw, b, out)


def avgpool2d(X: np.ndarray, kh: int, kw: int, stride_h: int, stride_w: int, out: np.ndarray) -> None:
    """Average pooling without padding of X (N, C, H, W) float32: taps summed row by row, then divided."""
    k = "avgpool2d"
    _arr(k, "X", X, np.float32, 4)
    n, c, h, w = X.shape
    kh, kw = _int(k, "kh", kh, 1, h), _int(k, "kw", kw, 1, w)
    sh, sw = _int(k, "stride_h", stride_h, 1), _int(k, "stride_w", stride_w, 1)
    _arr(k, "out", out, np.float32, 4)
    _shape(k, "out", out, (n, c, (h - kh) // sh + 1, (w - kw) // sw + 1))
    _launch(k, out.size * kh * kw // 16, X, kh, kw, sh, sw, out)


def popcount_peak(X: np.ndarray, reps: int) -> int:
    """The XOR-popcount roofline (see :func:`stbin.deploy._loops.popcount_peak`); X (threads, 5, KW)."""
    _arr("popcount_peak", "X", X, np.uint64, 3)
    if X.shape[1] != 5:
        raise ValueError(f"popcount_peak: X must have shape (threads, 5, KW), got {X.shape}")
    return int(_loops.popcount_peak(X, _int("popcount_peak", "reps", reps, 0)))


def set_threads(n: int) -> None:
    """Number of threads of the parallel kernels (numba's thread pool)."""
    numba.set_num_threads(int(n))


def get_threads() -> int:
    return int(numba.get_num_threads())
