"""Fused ops: one pass over a layer's output instead of one per op (made by :mod:`stbin.deploy.fuse`).

``bconv2d_res`` (bits -> bits or float) — the tail of a residual block: ``bconv2d_f`` (binary conv,
``y = scale * dot + bias``), the batch norm after it (``alpha``, ``beta``), the shortcut added and,
with thresholds ``S``/``T``, the ``sign2d`` of the next binary layer (its RSign shift included):

* the shortcut is the tensor saved in slot ``residual_slot`` (``residual_channels`` channels), read at
  every ``residual_stride``-th position with ``residual_before`` zero channels before it (option A of
  He et al.'s CIFAR ResNets; (1, 1) and 0 for the identity): ±1 values of a bit map (H', W', C'), or real values (C', H', W');
* or, with ``proj_weight`` (OC, C'), the real 1x1 convolution of a bit map's ±1 values with stride
  ``residual_stride`` and its batch norm ``proj_alpha``/``proj_beta`` (the downsampling shortcut);
* or, with ``proj_weight`` and ``residual_pool`` (kh, kw), the same projection of the average pool of a real
  map (window ``residual_pool``, stride ``residual_stride``, no padding: Bi-Real Net's downsampling shortcut);
* the real sum is kept in slot ``save_slot`` (where a later shortcut reads it: Bi-Real Net) only if
  that attribute is given; with ``S``/``T`` the output is the packed bits, else the real sum.

``conv2d_sign`` (float -> bits) — the real first convolution with its bias, batch norm (``alpha``,
``beta``), sign and packing (``S``/``T`` as ``sign2d``), the real output kept in ``save_slot`` if given.

Shape inference checks every array and slot against the input (a crafted file is refused at load);
the kernels (:mod:`stbin.deploy.fused_kernels`) check their arguments again before running.
"""

from __future__ import annotations

import math

import numpy as np

from stbin.deploy.ops.base import (GraphState, Op, OpType, RunContext, TensorSpec, conv_geometry, int_attr, need_kind,
                                   pair_attr, register_op, spatial_out, vec)
from stbin.deploy.ops.binary_layers import binary_conv_out, check_binary_conv
from stbin.deploy.ops.residual import MAX_SLOTS
from stbin.deploy.packing import n_words

_F32 = (np.float32, 1, False)


def _slot_attr(op: Op, name: str) -> int | None:
    if name not in op.attrs:
        return None
    s = int_attr(op, name, 0)
    if s >= MAX_SLOTS:
        raise ValueError(f"attribute {name!r} must be below {MAX_SLOTS}, got {s}")
    return s


def _pair_vec(op: Op, a: str, b: str, m: int) -> None:
    """Arrays ``a`` and ``b`` are both absent or both present with ``m`` entries."""
    if (a in op.arrays) != (b in op.arrays):
        raise ValueError(f"arrays {a!r} and {b!r} go together")
    vec(op, a, m)
    vec(op, b, m)


def _buffer(ctx: RunContext, op: Op, shape: tuple[int, ...]) -> np.ndarray:
    """The op's float32 output kept in a slot, channel-last (N, H, W, C): one buffer per op, reallocated when the
    batch shape changes (the engine runs one batch at a time under its kernel lock); a compiled plan keeps the
    buffer of its shape. The slot holds its (N, C, H, W) view (what every other op reads); a fused op's
    shortcut reads the buffer itself (:func:`_channel_last`): one contiguous run of channels per pixel, where
    the planes of an NCHW map lie a power of two apart (cache-set conflicts, measured 2-4x slower)."""
    store, k = ctx.net._torch_cache, ("slot-buffer", id(op))
    a = store.get(k)
    if a is None or a.shape != shape:
        a = store[k] = np.empty(shape, np.float32)
    return a


def _keep(ctx: RunContext, slot: int, buf: np.ndarray) -> None:
    ctx.slots[slot] = buf.transpose(0, 3, 1, 2)


def _channel_last(r: np.ndarray) -> np.ndarray | None:
    """The C-contiguous (N, H, W, C) array of which the (N, C, H, W) map ``r`` is the view, or None."""
    b = r.base
    if (isinstance(b, np.ndarray) and b.ndim == 4 and b.flags.c_contiguous and b.dtype == r.dtype
            and b.shape == (r.shape[0], r.shape[2], r.shape[3], r.shape[1])
            and b.__array_interface__["data"][0] == r.__array_interface__["data"][0]
            and r.strides == tuple(b.strides[i] for i in (0, 3, 1, 2))):
        return b
    return None


def _empty(ctx: RunContext, op: Op, dtype: type, ndim: int) -> np.ndarray:
    """An absent operand of the fused kernels (an empty array of the op's run-time cache)."""
    return ctx.cache(op, f"empty-{np.dtype(dtype).str}-{ndim}", lambda: np.empty((0,) * ndim, dtype))


def _ones_zeros(op: Op, ctx: RunContext, a: str, b: str, m: int) -> tuple[np.ndarray, np.ndarray]:
    return ctx.cache(op, f"{a}-{b}", lambda: (op.arrays.get(a, np.ones(m, np.float32)),
                                               op.arrays.get(b, np.zeros(m, np.float32))))


@register_op("bconv2d_res", weight=(np.uint64, 4, True), scale=_F32, bias=_F32, alpha=_F32, beta=_F32,
             proj_weight=(np.float32, 2, False), proj_alpha=_F32, proj_beta=_F32, S=_F32, T=_F32)
class BConv2dRes(OpType):
    """Binary conv + real output stage + batch norm + shortcut (+ sign of the next layer), one pass."""

    def check(self, op: Op) -> None:
        m = check_binary_conv(op)
        for a, b in (("scale", "bias"), ("alpha", "beta"), ("S", "T")):
            vec(op, a, m)
            vec(op, b, m)
        _pair_vec(op, "alpha", "beta", m)
        _pair_vec(op, "S", "T", m)
        _pair_vec(op, "proj_alpha", "proj_beta", m)
        if _slot_attr(op, "residual_slot") is None:
            raise ValueError("missing attribute 'residual_slot'")
        pair_attr(op, "residual_stride", 1)
        int_attr(op, "residual_channels")
        before = int_attr(op, "residual_before", 0)
        p = op.arrays.get("proj_weight")
        if "residual_pool" in op.attrs:
            pair_attr(op, "residual_pool", 1)
            if p is None:
                raise ValueError("attribute 'residual_pool' needs the array 'proj_weight' (a pooled projection)")
        if p is not None and (p.shape[0] != m or p.shape[1] < 1 or before):
            raise ValueError(f"array 'proj_weight' has shape {p.shape}, expected ({m}, C') and residual_before 0")
        if p is None and "proj_alpha" in op.arrays:
            raise ValueError("arrays 'proj_alpha' / 'proj_beta' need 'proj_weight'")
        if _slot_attr(op, "save_slot") is not None and "S" not in op.arrays:
            raise ValueError("attribute 'save_slot' needs the thresholds S and T (else save the output)")

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        m, oh, ow = binary_conv_out(op, x)
        s = op.attrs["residual_slot"]
        if s not in state.slots:
            raise ValueError(f"slot {s} is read before anything is saved in it")
        r = state.slots[s]
        if len(r.shape) != 3:
            raise ValueError(f"the shortcut (slot {s}) is {r}, not a feature map")
        rh, rw, rc = r.shape if r.kind == "bits" else (r.shape[1], r.shape[2], r.shape[0])
        if rc != op.attrs["residual_channels"]:
            raise ValueError(f"the shortcut (slot {s}) is {r}, residual_channels is {op.attrs['residual_channels']}")
        p = op.arrays.get("proj_weight")
        pool = op.attrs.get("residual_pool")
        if p is not None and (r.kind != ("float" if pool else "bits") or rc != p.shape[1]):
            raise ValueError(f"the projection takes {p.shape[1]} {'real' if pool else 'binary'} channels, the shortcut "
                             f"(slot {s}) is {r}")
        if p is None and op.attrs["residual_before"] + rc > m:
            raise ValueError(f"the shortcut (slot {s}) has {rc} channels after {op.attrs['residual_before']}, "
                             f"more than the {m} outputs")
        sh, sw = op.attrs["residual_stride"]
        if pool:
            ph, pw = pool
            if ph > rh or pw > rw or ((rh - ph) // sh + 1, (rw - pw) // sw + 1) != (oh, ow):
                raise ValueError(f"the shortcut (slot {s}) is {r}: a {ph}x{pw} pool with stride {sh}x{sw} does not "
                                 f"give the {oh}x{ow} output")
        elif (-(-rh // sh), -(-rw // sw)) != (oh, ow):
            raise ValueError(f"the shortcut (slot {s}) is {r}: stride {sh}x{sw} does not give the {oh}x{ow} output")
        if "save_slot" in op.attrs:
            state.slots[op.attrs["save_slot"]] = TensorSpec("float", (m, oh, ow))
        return TensorSpec.bits((oh, ow, m)) if "S" in op.arrays else TensorSpec("float", (m, oh, ow))

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        from stbin.deploy import fused_kernels as fk
        from stbin.deploy.geometry import conv_out_hw

        A, a = op.arrays, op.attrs
        m, kh, kw, _ = A["weight"].shape
        oh, ow = conv_out_hw(x.shape[1], x.shape[2], kh, kw, a["stride"], a["padding"], a["dilation"])
        wt = ctx.cache(op, "tap-major", lambda: np.ascontiguousarray(A["weight"].transpose(1, 2, 3, 0)))
        r = ctx.slots[a["residual_slot"]]
        kind = fk.RES_PROJECT if "proj_weight" in A else fk.RES_BITS if r.dtype == np.uint64 else fk.RES_FLOAT
        rf = _empty(ctx, op, np.float32, 4)
        if kind == fk.RES_FLOAT:
            last = _channel_last(r)
            kind, rf = (fk.RES_FLOAT, np.ascontiguousarray(r)) if last is None else (fk.RES_FLOAT_NHWC, last)
        if kind == fk.RES_PROJECT and r.dtype == np.float32:  # the pooled projection reads channel-last values
            kind, rf = fk.RES_POOL_PROJECT, _channel_last(r)
            if rf is None:
                rf = np.ascontiguousarray(r.transpose(0, 2, 3, 1))
        rb = r if r.dtype == np.uint64 else _empty(ctx, op, np.uint64, 4)
        rc = int(a["residual_channels"])
        if kind in (fk.RES_PROJECT, fk.RES_POOL_PROJECT):
            pw = ctx.cache(op, "proj-t", lambda: np.ascontiguousarray(A["proj_weight"].T))
            pa, pb = _ones_zeros(op, ctx, "proj_alpha", "proj_beta", m)
        else:
            pw, pa, pb = _empty(ctx, op, np.float32, 2), _empty(ctx, op, np.float32, 1), _empty(ctx, op, np.float32, 1)
        threshold = "S" in A
        out_b = np.empty((len(x), oh, ow, n_words(m)), np.uint64) if threshold else _empty(ctx, op, np.uint64, 4)
        if not threshold:
            out_f = np.empty((len(x), m, oh, ow), np.float32)
        elif "save_slot" in a:
            out_f = _buffer(ctx, op, (len(x), oh, ow, m))
            _keep(ctx, a["save_slot"], out_f)
        else:
            out_f = _empty(ctx, op, np.float32, 4)
        S, T = (A["S"], A["T"]) if threshold else (_empty(ctx, op, np.float32, 1), _empty(ctx, op, np.float32, 1))
        fk.bconv2d_res(x, wt, int(a["in_channels"]), (*a["stride"], *a["padding"], *a["dilation"]),
                       *_ones_zeros(op, ctx, "scale", "bias", m), *_ones_zeros(op, ctx, "alpha", "beta", m),
                       kind, rb, rf, pw, pa, pb, rc, a["residual_stride"], a["residual_before"], S, T, out_b, out_f,
                       out_f_nhwc=threshold, pool=tuple(a.get("residual_pool", (1, 1))))
        return out_b if threshold else out_f


@register_op("conv2d_sign", weight=(np.float32, 4, True), bias=_F32, alpha=_F32, beta=_F32, S=(np.float32, 1, True),
             T=(np.float32, 1, True))
class Conv2dSign(OpType):
    """Real convolution + bias + batch norm + sign + packing, one pass: float NCHW -> NHWC bits."""

    def check(self, op: Op) -> None:
        conv_geometry(op)
        w = op.arrays["weight"]
        if min(w.shape) < 1 or math.prod(w.shape[1:]) > 2**24:
            raise ValueError(f"array 'weight' has shape {w.shape} (an empty axis or too many taps)")
        m = w.shape[0]
        vec(op, "bias", m)
        _pair_vec(op, "alpha", "beta", m)
        _pair_vec(op, "S", "T", m)
        _slot_attr(op, "save_slot")

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        need_kind(x, "float", 3)
        m, c, kh, kw = op.arrays["weight"].shape
        if x.shape[0] != c:
            raise ValueError(f"input has {x.shape[0]} channels, weight expects {c}")
        oh, ow = spatial_out(x.shape[1], x.shape[2], (kh, kw), op)
        if "save_slot" in op.attrs:
            state.slots[op.attrs["save_slot"]] = TensorSpec("float", (m, oh, ow))
        return TensorSpec.bits((oh, ow, m))

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        from stbin.deploy import fused_kernels as fk
        from stbin.deploy.geometry import conv_out_hw

        A, a = op.arrays, op.attrs
        m, _, kh, kw = A["weight"].shape
        oh, ow = conv_out_hw(x.shape[2], x.shape[3], kh, kw, a["stride"], a["padding"], a["dilation"])
        wk = ctx.cache(op, "tap-major", lambda: np.ascontiguousarray(A["weight"].reshape(m, -1).T))
        bias = ctx.cache(op, "bias", lambda: A.get("bias", np.zeros(m, np.float32)))
        out_b = np.empty((len(x), oh, ow, n_words(m)), np.uint64)
        out_f = (_buffer(ctx, op, (len(x), oh, ow, m)) if "save_slot" in a else _empty(ctx, op, np.float32, 4))
        if "save_slot" in a:
            _keep(ctx, a["save_slot"], out_f)
        fk.conv2d_sign(np.ascontiguousarray(x), wk, kh, kw, (*a["stride"], *a["padding"], *a["dilation"]), bias,
                       *_ones_zeros(op, ctx, "alpha", "beta", m), A["S"], A["T"], out_b, out_f, out_f_nhwc=True)
        return out_b
