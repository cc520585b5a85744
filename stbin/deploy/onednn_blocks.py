"""Identity residual blocks of binary networks at large batches on oneDNN's int8 convolution (AMX tiles).

A block ``save(k) -> bconv2d -> bconv2d_res`` (shortcut: the ±1 block input of slot ``k``, same size and channels)
becomes two int8 convolutions on uint8 maps ``u = x + 1`` (0 or 2, zero point 1: zero padding is a real 0), each
ending in oneDNN's clamp to ±1, so that its uint8 output is again such a map, with no float32 map in between:

* every output bit of both ops is a predicate ``P(dot, s)`` of the integer dot product (``|dot| <= K = C KH KW``) and,
  for the block's tail, of the shortcut value ``s = ±1`` of that channel: ``S dot >= T`` for ``bconv2d``;
  ``S ((float32(dot) scale + bias) alpha + beta + s) >= T`` in float32 for ``bconv2d_res``, each operation rounded,
  as :func:`stbin.deploy._fused_loops.bconv2d_res` computes it. Every float32 operation here is monotone, so
  ``P(., s)`` is a threshold in ``e = sigma dot`` (sigma = ±1): ``P <=> e >= t_s``. With ``theta = t_+ + t_-`` and
  ``delta = t_- - t_+``, ``P <=> 2 e + delta s >= theta`` for both values of ``s``;
* that integer ``acc = 2 e + delta s`` is one int8 convolution over the channels of the map and of the shortcut
  (weights ``2 sigma w`` and ``delta`` on the shortcut's own channel at the centre tap of a 3x3, stride 1, padding 1
  convolution), and oneDNN computes ``v = 2 acc - (2 theta - 1)`` (weight scale 2, bias): an odd integer, so its
  clamp to [-1, 1] is exactly the output's ±1 and its uint8 form 0 or 2.

The thresholds are found, and the linear form **checked for every dot product in [-K, K] and both shortcut values**,
when the plan is built (:func:`block_form`); a block where that fails (e.g. ``|delta| > 127``) keeps the engine's
loops. The path runs only where torch has oneDNN's quantized convolution (``torch.ops.onednn``), the CPU has AMX
int8 tiles and a self-test of these semantics passes (:func:`available`), from :data:`MIN_MACS` multiply-adds a
block; ``STBIN_ONEDNN=0`` turns it off. Measured in docs/performance-deploy.md.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import numpy as np

from stbin.deploy.ops import OPS, Op, RunContext
from stbin.deploy.packing import n_words

#: multiply-adds of a block's two convolutions from which it runs on oneDNN (ResNet-20's blocks at batch 1: 4.7 M)
MIN_MACS = 32_000_000
_STATE: dict[str, Any] = {}
_LUT = np.array([sum((0 if b >> j & 1 else 2) << (8 * j) for j in range(8)) for b in range(256)], np.uint64)


def enabled() -> bool:
    """The path is on unless ``STBIN_ONEDNN=0``."""
    return os.environ.get("STBIN_ONEDNN", "1") != "0"


def _prepack(w: Any, in_shape: tuple[int, ...]) -> Any:
    import torch

    return torch.ops.onednn.qconv_prepack(w, torch.full((w.shape[0],), 2.0), 1.0, 1, [1, 1], [1, 1], [1, 1], 1,
                                          list(in_shape))


def _qconv(u: Any, wp: Any, bias: Any) -> Any:
    """uint8 map (N, C, H, W) channel-last, zero point 1 -> uint8 map 1 + clamp(2 acc + bias, -1, 1)."""
    import torch

    m = bias.shape[0]
    return torch.ops.onednn.qconv2d_pointwise(u, 1.0, 1, wp, torch.full((m,), 2.0), torch.zeros(m, dtype=torch.long),
                                              bias, [1, 1], [1, 1], [1, 1], 1, 1.0, 1, torch.uint8, "hardtanh",
                                              [-1.0, 1.0], "")


def _self_test() -> bool:
    """oneDNN gives ``1 + clamp(2 acc - (2 theta - 1), -1, 1)`` for random ±1 inputs (zero padding included),
    int8 weights over their whole range and random integer thresholds, with acc the exact convolution."""
    import torch

    g = torch.Generator().manual_seed(0)
    for n, c, h, m in ((2, 24, 5, 16), (3, 16, 4, 8)):
        x = torch.randint(0, 2, (n, c, h, h), generator=g) * 2 - 1
        w = torch.randint(-127, 128, (m, c, 3, 3), generator=g)
        acc = torch.nn.functional.conv2d(x.double(), w.double(), None, 1, 1)
        theta = torch.randint(-40, 41, (m,), generator=g)
        u = (x + 1).to(torch.uint8).contiguous(memory_format=torch.channels_last)
        got = _qconv(u, _prepack(w.to(torch.int8), (n, c, h, h)), -(2.0 * theta - 1).float())
        want = torch.where(acc >= theta.double()[None, :, None, None], 2, 0)
        if got.dtype != torch.uint8 or got.shape != want.shape or not torch.equal(got.long(), want):
            return False
    return True


def available() -> bool:
    """Enabled, torch's oneDNN int8 ops present, AMX int8 tiles, little endian, and the self-test passed (once)."""
    if not enabled():
        return False
    if "ok" not in _STATE:
        ok = False
        try:
            import torch

            if (sys.byteorder == "little" and hasattr(torch.ops.onednn, "qconv_prepack")
                    and hasattr(torch.ops.onednn, "qconv2d_pointwise")
                    and getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()):
                ok = _self_test()
        except (ImportError, RuntimeError, AttributeError, TypeError):
            ok = False
        _STATE["ok"] = ok
    return bool(_STATE["ok"])


def _threshold(p: np.ndarray, k: int) -> tuple[int, int] | None:
    """(sigma, t) with ``p[d + k] == (sigma * d >= t)`` for every d in [-k, k], or None (not a threshold)."""
    d = np.arange(-k, k + 1)
    for sigma in (1, -1):
        e = sigma * d
        t = int(e[p].min()) if p.any() else k + 1
        if np.array_equal(p, e >= t):
            return sigma, t
    return None


def block_form(a: Op, b: Op) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(weights of the first convolution (M, C, 3, 3) int8, its biases (M,) float32, weights of the second over
    [its map, the shortcut] (M, M + C, 3, 3) int8, its biases (M,) float32) of the block ``a`` (``bconv2d``),
    ``b`` (``bconv2d_res``), each checked against the ops' predicates for every dot product and shortcut value;
    None where a predicate is not of that form or a weight leaves int8."""
    forms = []
    for op in (a, b):
        w = op.arrays["weight"]
        c, m = int(op.attrs["in_channels"]), w.shape[0]
        k = c * 9
        d = np.arange(-k, k + 1)
        sig, th, de = np.empty(m, np.int64), np.empty(m, np.int64), np.zeros(m, np.int64)
        for o in range(m):
            if op is a:
                ps = [np.int64(op.arrays["S"][o]) * d >= np.int64(op.arrays["T"][o])]
            else:
                A, f32 = op.arrays, np.float32
                y = ((d.astype(f32) * A.get("scale", np.ones(m, f32))[o] + A.get("bias", np.zeros(m, f32))[o])
                     * A.get("alpha", np.ones(m, f32))[o] + A.get("beta", np.zeros(m, f32))[o])
                ps = [A["S"][o] * (y + f32(s)) >= A["T"][o] for s in (1.0, -1.0)]
            found = [_threshold(p, k) for p in ps]
            if any(f is None for f in found):
                return None
            turning = {f[0] for f in found if f[1] not in (-k, k + 1)}  # directions of the non-constant predicates
            if len(turning) > 1:
                return None
            s_o = turning.pop() if turning else 1
            t = [int((s_o * d)[p].min()) if p.any() else k + 1 for p in ps]  # thresholds in direction s_o
            if not all(np.array_equal(p, s_o * d >= tt) for p, tt in zip(ps, t)):
                return None
            sig[o], th[o] = s_o, (2 * t[0] if op is a else t[0] + t[1])
            if op is b:
                de[o] = t[1] - t[0]
                for p, s in zip(ps, (1, -1)):  # the linear form, checked on the whole domain
                    if not np.array_equal(p, 2 * s_o * d + de[o] * s >= th[o]):
                        return None
            elif not np.array_equal(ps[0], 2 * s_o * d >= th[o]):
                return None
        if np.abs(de).max() > 127:
            return None
        bits = (w[..., np.arange(c) // 64] >> (np.arange(c) % 64).astype(np.uint64)) & np.uint64(1)
        wi = (2 * sig[:, None, None, None] * (1 - 2 * bits.astype(np.int64))).transpose(0, 3, 1, 2)
        if op is b:
            short = np.zeros((m, m, 3, 3), np.int64)
            short[np.arange(m), np.arange(m), 1, 1] = de
            wi = np.concatenate([wi, short], axis=1)
        forms += [np.ascontiguousarray(wi.astype(np.int8)), (-(2.0 * th - 1)).astype(np.float32)]
    return forms[0], forms[1], forms[2], forms[3]


def _u8(X: np.ndarray, c: int) -> np.ndarray:
    """The uint8 map (N, H, W, C) of the bits X (N, H, W, ceil(C/64)), checked as the engine's kernels are; serial
    (callable from several threads at once)."""
    from stbin.deploy import _u8_loops
    from stbin.deploy.kernels import _arr, _shape

    _arr("bits_u8", "X", X, np.uint64, 4)
    _shape("bits_u8", "X", X, (*X.shape[:3], n_words(c)))
    out = np.empty((*X.shape[:3], c // 8), np.uint64)
    _u8_loops.bits_u8_serial(np.ascontiguousarray(X), c, _LUT, out)
    return out.view(np.uint8)


def _bits(U: np.ndarray, out: np.ndarray) -> None:
    """out (N, H, W, ceil(C/64)) = the bits of the uint8 map U (N, H, W, C) of 0 / 2 values, serial."""
    from stbin.deploy import _u8_loops
    from stbin.deploy.kernels import _arr, _shape

    n, h, w, c = U.shape
    _arr("u8_bits", "U", U, np.uint8, 4)
    _arr("u8_bits", "out", out, np.uint64, 4)
    _shape("u8_bits", "out", out, (n, h, w, n_words(c)))
    _u8_loops.u8_bits_serial(np.ascontiguousarray(U).view(np.uint64), c, out)


def _concat(H: np.ndarray, X: np.ndarray, c: int) -> np.ndarray:
    """The uint8 map (N, H', W', M + C): H (N, H', W', M) then the uint8 map of the bits X, serial."""
    from stbin.deploy import _u8_loops
    from stbin.deploy.kernels import _arr, _shape

    n, h, w, m = H.shape
    _arr("concat_u8", "H", H, np.uint8, 4)
    _arr("concat_u8", "X", X, np.uint64, 4)
    _shape("concat_u8", "X", X, (n, h, w, n_words(c)))
    if m % 8 or c % 8:
        raise ValueError(f"concat_u8: channels must be multiples of 8, got {m} and {c}")
    out = np.empty((n, h, w, (m + c) // 8), np.uint64)
    _u8_loops.concat_u8_serial(np.ascontiguousarray(H).view(np.uint64), np.ascontiguousarray(X), c, _LUT, out)
    return out.view(np.uint8)


def _eligible(ops: list[Op]) -> bool:
    save, a, b = ops
    A = b.attrs
    c, m = int(a.attrs["in_channels"]), int(a.attrs["out_channels"])
    geo_ok = all(op.arrays["weight"].shape[1:3] == (3, 3) and list(op.attrs["stride"]) == [1, 1]
                 and list(op.attrs["padding"]) == [1, 1] and list(op.attrs["dilation"]) == [1, 1] for op in (a, b))
    return (geo_ok and A.get("residual_slot") == save.attrs.get("slot") and list(A["residual_stride"]) == [1, 1]
            and int(A["residual_before"]) == 0 and int(A["residual_channels"]) == c == m
            and int(b.attrs["in_channels"]) == m == int(b.attrs["out_channels"]) and c % 8 == 0
            and "proj_weight" not in b.arrays and "save_slot" not in A and "S" in b.arrays and available())


def block_step(ops: list[Op], net: Any) -> Callable[[np.ndarray, RunContext], np.ndarray] | None:
    """Plan step of ``save -> bconv2d -> bconv2d_res`` (an identity residual block, see the module docstring)."""
    if not _eligible(ops):
        return None
    form = block_form(ops[1], ops[2])
    if form is None:
        return None
    save, a, b = ops
    m, slot = int(a.attrs["out_channels"]), int(save.attrs["slot"])

    def small(x: np.ndarray, ctx: RunContext) -> np.ndarray:
        """The engine's own loops, as the three ops' steps call them (a compiled plan records this)."""
        from stbin.deploy import kernels
        from stbin.deploy.geometry import conv_out_hw

        ctx.slots[slot] = x
        oh, ow = conv_out_hw(x.shape[1], x.shape[2], 3, 3, (1, 1), (1, 1), (1, 1))
        h = kernels.scratch((len(x), oh, ow, n_words(m)), np.uint64)
        wt = ctx.cache(a, "tap-major", lambda: np.ascontiguousarray(a.arrays["weight"].transpose(1, 2, 3, 0)))
        kernels.bconv2d_sign(x, wt, int(a.attrs["in_channels"]), 1, 1, 1, 1, 1, 1, a.arrays["S"], a.arrays["T"], h)
        return OPS.get("bconv2d_res").run(b, h, ctx)

    def step(x: np.ndarray, ctx: RunContext) -> np.ndarray:
        from stbin.deploy import kernels

        macs = 2 * x.shape[0] * x.shape[1] * x.shape[2] * m * m * 9
        if macs < MIN_MACS or kernels.is_recording() or x.ndim != 4:
            return small(x, ctx)
        import torch

        from stbin.deploy.row_parts import run_parts

        ctx.slots[slot] = x
        n, hh, ww = x.shape[:3]
        out = np.empty((n, hh, ww, n_words(m)), np.uint64)
        bias_a, bias_b = ctx.cache(b, "onednn-bias", lambda: (torch.from_numpy(form[1]), torch.from_numpy(form[3])))

        def packed(lo: int, hi: int) -> tuple[Any, Any]:
            shape = (hi - lo, m, hh, ww)
            return ctx.cache(b, f"onednn-{shape}", lambda: (_prepack(torch.from_numpy(form[0]), shape),
                                                           _prepack(torch.from_numpy(form[2]), (shape[0], 2 * m, hh, ww))))

        def part(lo: int, hi: int) -> None:
            wa, wb = packed(lo, hi)
            u = _u8(x[lo:hi], m)
            h = _qconv(torch.from_numpy(u).permute(0, 3, 1, 2), wa, bias_a).permute(0, 2, 3, 1).numpy()
            cat = _concat(h, x[lo:hi], m)
            y = _qconv(torch.from_numpy(cat).permute(0, 3, 1, 2), wb, bias_b).permute(0, 2, 3, 1)
            if tuple(y.shape) != (hi - lo, hh, ww, m):
                raise ValueError(f"onednn block: the convolution returned {tuple(y.shape)}, expected {(hi - lo, hh, ww, m)}")
            _bits(y.numpy(), out[lo:hi])
        run_parts(n, macs, part, split_macs=0)
        return out
    return step
