"""The inference graph: a list of ops run on numpy arrays with the XNOR-popcount kernels.

A :class:`DeployedNet` is an ordered list of :class:`Op` (type, JSON attributes, named
arrays). Tensors flowing between ops are either **float** (float32, shape (N, F) or NCHW)
or **bits** (uint64 words, shape (N, FW) or channel-packed NHWC (N, H, W, CW); see
:mod:`stbin.deploy.packing`). Op types (version 1 of the format):

============== ======== ======== ==============================================================
type           in       out      what
============== ======== ======== ==============================================================
``flatten``    any      same     (N, ...) -> (N, F); bits NHWC -> (N, H*W*CW) words
``linear``     float    float    ``y = x W^T + b`` in float32 (first/last layers)
``blinear``    float    float    the same with bit-packed ±1 weights (times ``scale``) on a real input
``bits_float`` bits     float    unpack ±1 values (NHWC bits -> NCHW floats) for a float layer
``sign``       float    bits     folded BN + sign on float pre-activations: bit = not (S*y >= T)
``bdense``     bits     bits     binary GEMM fused with integer thresholds (BN + sign folded)
``bdense_f``   bits     float    binary GEMM, ``y = c * dot + b`` (no sign after it)
``conv2d``     float    float    float convolution NCHW (first layer)
``sign2d``     float    bits     as ``sign`` per channel, NCHW float -> NHWC bits
``bconv2d``    bits     bits     binary conv fused with integer thresholds
``bconv2d_f``  bits     float    binary conv, ``y = c * dot + b`` -> NCHW float
``maxpool2d``  bits     bits     max pooling on packed bits (``any_mask``: see kernels.bmaxpool2d)
``affine``     float    float    per-channel ``y * alpha + beta`` (a batch norm with no sign after)
============== ======== ======== ==============================================================
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from stbin.deploy.packing import n_words, unpack_bits

OP_TYPES = ("flatten", "linear", "blinear", "bits_float", "sign", "bdense", "bdense_f", "conv2d", "sign2d", "bconv2d",
            "bconv2d_f", "maxpool2d", "affine")


def _kernels():  # imported lazily: numba is an optional dependency
    from stbin.deploy import kernels

    return kernels


@dataclasses.dataclass
class Op:
    """One step of the graph: ``type``, JSON-serialisable ``attrs`` and named numpy ``arrays``."""

    type: str
    attrs: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))


_FLOAT_POOL: dict[str, Any] = {}


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in float32 for the float layers, split by rows over the engine's threads.

    Each part runs single-threaded BLAS (via threadpoolctl, when installed): the binary
    kernels and BLAS then never wake two thread pools against each other, which on a busy
    machine cost up to tens of milliseconds per call (see docs/deploy.md).
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is optional
        return a @ b
    from concurrent.futures import ThreadPoolExecutor

    threads = _kernels().get_threads()
    if "ctl" not in _FLOAT_POOL:
        _FLOAT_POOL["ctl"] = ThreadpoolController()
    n = a.shape[0]
    out = np.empty((n, b.shape[1]), dtype=np.result_type(a, b))
    parts = min(threads, max(1, (n * a.shape[1] * b.shape[1]) // 2_000_000), n)
    with _FLOAT_POOL["ctl"].limit(limits=1, user_api="blas"):
        if parts <= 1:
            np.matmul(a, b, out=out)
            return out
        if _FLOAT_POOL.get("threads") != parts:
            _FLOAT_POOL["pool"] = ThreadPoolExecutor(parts - 1, thread_name_prefix="stbin-deploy")
            _FLOAT_POOL["threads"] = parts
        bounds = np.linspace(0, n, parts + 1).astype(int)
        futures = [_FLOAT_POOL["pool"].submit(np.matmul, a[lo:hi], b, out=out[lo:hi])
                   for lo, hi in zip(bounds[1:-1], bounds[2:])]
        np.matmul(a[: bounds[1]], b, out=out[: bounds[1]])
        for f in futures:
            f.result()
    return out


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _float_conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride, padding, dilation) -> np.ndarray:
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    oh, ow = _conv_out(h, kh, sh, ph, dh), _conv_out(wd, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, oh, ow, c, kh, kw), dtype=np.float32)
    for u in range(kh):
        for v in range(kw):
            patch = xp[:, :, u * dh: u * dh + sh * (oh - 1) + 1: sh, v * dw: v * dw + sw * (ow - 1) + 1: sw]
            cols[:, :, :, :, u, v] = patch.transpose(0, 2, 3, 1)
    y = _matmul(cols.reshape(n * oh * ow, c * kh * kw), w.reshape(oc, -1).T)
    if b is not None:
        y += b
    return np.ascontiguousarray(y.reshape(n, oh, ow, oc).transpose(0, 3, 1, 2))


class DeployedNet:
    """A bit-packed network; ``net(x)`` / :meth:`predict` returns float32 outputs (logits).

    ``x`` is what the PyTorch model takes (float, e.g. normalised images (N, 1, 28, 28)).
    """

    FLOAT_BACKENDS = ("auto", "torch", "numpy")

    def __init__(self, ops: list[Op], meta: dict[str, Any] | None = None, float_backend: str = "auto") -> None:
        for op in ops:
            if op.type not in OP_TYPES:
                raise ValueError(f"unknown op type {op.type!r}")
        self.ops = ops
        self.meta = dict(meta or {})
        self.float_backend = float_backend

    @property
    def float_backend(self) -> str:
        """Who runs the float32 (first/last) layers.

        ``"torch"``: PyTorch's own kernels, so those layers compute bit for bit what the PyTorch
        model computes on the same batch (the logits then equal PyTorch's exactly); ``"numpy"``:
        BLAS, single-threaded per part and split over the engine's threads (robust on a busy
        machine, where waking torch's OpenMP pool between the binary kernels cost milliseconds);
        ``"auto"`` (default): numpy for linear layers, torch for convolutions (numpy's im2col
        is slow).
        """
        return self._float_backend

    @float_backend.setter
    def float_backend(self, value: str) -> None:
        if value not in self.FLOAT_BACKENDS:
            raise ValueError(f"float_backend must be one of {self.FLOAT_BACKENDS}, got {value!r}")
        self._float_backend = value
        self._torch_cache: dict[Any, Any] = {}  # per-op run-time forms of the arrays

    def _torch_arrays(self, op: Op) -> dict[str, Any]:
        import torch

        key = id(op)
        if key not in self._torch_cache:
            self._torch_cache[key] = {k: torch.from_numpy(v) for k, v in op.arrays.items()}
        return self._torch_cache[key]

    # -- info -------------------------------------------------------------------------
    def nbytes(self) -> int:
        """Bytes of all weights, thresholds and biases of the packed model."""
        return sum(op.nbytes() for op in self.ops)

    def __repr__(self) -> str:
        lines = [f"DeployedNet({len(self.ops)} ops, {self.nbytes()} bytes)"]
        for op in self.ops:
            shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in op.arrays.items())
            lines.append(f"  {op.type:10s} {shapes}")
        return "\n".join(lines)

    # -- run --------------------------------------------------------------------------
    def predict(self, x: Any, batch_size: int | None = None) -> np.ndarray:
        """Outputs of the network for input ``x`` (numpy array or torch tensor), float32."""
        x = self._input(x)
        if batch_size is None or len(x) <= batch_size:
            return self._run(x)
        return np.concatenate([self._run(x[i: i + batch_size]) for i in range(0, len(x), batch_size)])

    __call__ = predict

    def profile(self, x: Any) -> list[tuple[str, float]]:
        """Run once and return (op type, seconds) for each op."""
        x = self._input(x)
        out = []
        with _kernels().KERNEL_LOCK:
            for op in self.ops:
                t = time.perf_counter()
                x = self._op(op, x)
                out.append((op.type, time.perf_counter() - t))
        return out

    def _input(self, x: Any) -> np.ndarray:
        """float32 C-contiguous (N, *input_shape) array, or a ValueError naming the expected shape."""
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, dtype=np.float32)
        shape = tuple(int(s) for s in self.meta.get("input_shape", ()))
        if shape:
            if x.ndim < 2 or int(np.prod(x.shape[1:])) != int(np.prod(shape)):
                raise ValueError(f"the network expects inputs of shape (N, {', '.join(map(str, shape))}), "
                                 f"got {tuple(x.shape)}")
            x = x.reshape((len(x),) + shape)
        return np.ascontiguousarray(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        with _kernels().KERNEL_LOCK:
            for op in self.ops:
                x = self._op(op, x)
        if x.dtype != np.float32:
            raise ValueError("the network ends in binary units; add a float output layer")
        return x

    def _op(self, op: Op, x: np.ndarray) -> np.ndarray:  # noqa: C901 - one branch per op type
        a, A = op.attrs, op.arrays
        t = op.type
        if t == "flatten":
            return x.reshape(len(x), -1)
        if t == "blinear":  # unpack the ±1 weights once (exactly PyTorch's w * c), then as "linear"
            key = ("dense", id(op))
            if key not in self._torch_cache:
                w = unpack_bits(A["weight"], int(a["in_features"]), np.float32)
                if "scale" in A:
                    w = w * A["scale"][:, None]
                self._torch_cache[key] = Op("linear", {}, {"weight": np.ascontiguousarray(w),
                                                           **({"bias": A["bias"]} if "bias" in A else {})})
            return self._op(self._torch_cache[key], x)
        if t == "linear" and self._float_backend == "torch":  # "auto": numpy
            import torch

            T_ = self._torch_arrays(op)
            with torch.no_grad():
                return torch.nn.functional.linear(torch.from_numpy(x.reshape(len(x), -1)), T_["weight"],
                                                  T_.get("bias")).numpy()
        if t == "conv2d" and self._float_backend in ("torch", "auto"):
            import torch

            T_ = self._torch_arrays(op)
            with torch.no_grad():
                return torch.nn.functional.conv2d(torch.from_numpy(x), T_["weight"], T_.get("bias"),
                                                  tuple(a["stride"]), tuple(a["padding"]),
                                                  tuple(a["dilation"])).contiguous().numpy()
        if t == "linear":
            y = _matmul(x.reshape(len(x), -1), A["weight"].T)
            if "bias" in A:
                y += A["bias"]
            return y
        if t == "bits_float":
            y = unpack_bits(x, int(a["features"]), np.float32)
            return np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if y.ndim == 4 else y
        if t == "affine":
            shape = (1, -1) + (1,) * (x.ndim - 2)
            return x * A["alpha"].reshape(shape) + A["beta"].reshape(shape)
        if t == "sign":
            out = np.empty((len(x), n_words(x.shape[1])), dtype=np.uint64)
            _kernels().float_sign_pack(np.ascontiguousarray(x), A["S"], A["T"], out)
            return out
        if t == "sign2d":
            n, c, h, w = x.shape
            out = np.empty((n, h, w, n_words(c)), dtype=np.uint64)
            _kernels().float_sign_pack_nchw(np.ascontiguousarray(x), A["S"], A["T"], out)
            return out
        if t in ("bdense", "bdense_f"):
            k = _kernels()
            wts = A["weight"]
            if t == "bdense":
                out = np.empty((len(x), n_words(wts.shape[0])), dtype=np.uint64)
                k.bgemm_sign(x, wts, int(a["in_features"]), A["S"], A["T"], out)
                return out
            dot = np.empty((len(x), wts.shape[0]), dtype=np.int32)
            k.bgemm(x, wts, int(a["in_features"]), dot)
            y = dot.astype(np.float32)
            if "scale" in A:
                y *= A["scale"]
            if "bias" in A:
                y += A["bias"]
            return y
        if t == "conv2d":
            return _float_conv2d(x, A["weight"], A.get("bias"), a["stride"], a["padding"], a["dilation"])
        if t in ("bconv2d", "bconv2d_f"):
            k = _kernels()
            wts = A["weight"]  # (OC, KH, KW, CW) in the file; the kernels take it tap-major
            key = ("tap-major", id(op))
            if key not in self._torch_cache:
                self._torch_cache[key] = np.ascontiguousarray(wts.transpose(1, 2, 3, 0))
            wt = self._torch_cache[key]
            n, h, w, _ = x.shape
            (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
            oc, kh, kw = wts.shape[0], wts.shape[1], wts.shape[2]
            oh, ow = _conv_out(h, kh, sh, ph, dh), _conv_out(w, kw, sw, pw, dw)
            c_bits = int(a["in_channels"])
            if t == "bconv2d":
                out = np.empty((n, oh, ow, n_words(oc)), dtype=np.uint64)
                k.bconv2d_sign(x, wt, c_bits, sh, sw, ph, pw, dh, dw, A["S"], A["T"], out)
                return out
            dot = np.empty((n, oh, ow, oc), dtype=np.int32)
            k.bconv2d(x, wt, c_bits, sh, sw, ph, pw, dh, dw, dot)
            y = dot.astype(np.float32)
            if "scale" in A:
                y *= A["scale"]
            if "bias" in A:
                y += A["bias"]
            return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
        if t == "maxpool2d":
            n, h, w, cw = x.shape
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel_size"], a["stride"], a["padding"], a["dilation"]
            oh, ow = _conv_out(h, kh, sh, ph, dh), _conv_out(w, kw, sw, pw, dw)
            out = np.empty((n, oh, ow, cw), dtype=np.uint64)
            mask = A["any_mask"] if "any_mask" in A else np.full(cw, ~np.uint64(0), dtype=np.uint64)
            _kernels().bmaxpool2d(x, mask, kh, kw, sh, sw, ph, pw, dh, dw, out)
            return out
        raise ValueError(f"unknown op type {t!r}")  # pragma: no cover

