r"""Compile a PyTorch stbin model (evaluated in mode) into a :class:`~stbin.deploy.engine.DeployedNet`.

Folding batch norm and sign into thresholds
-------------------------------------------
In mode evaluation a hidden unit computes ``x' = sign(BN(y))`` with ``sign(0) = +1``, where
``y`` is the pre-activation of a linear/conv layer. For a binary layer with ±1 inputs and
weights, ``y = c * dot + b`` with an **integer** ``dot`` in [-K, K] (K = fan-in), so

    x' = +1  <=>  gamma * (c * dot + b - mu) / sqrt(var + eps) + beta >= 0.

In exact arithmetic this is ``dot >= t`` when ``gamma * c > 0``, ``dot <= t`` when
``gamma * c < 0`` and a constant when ``gamma * c = 0``. Float rounding can move the
boundary by one integer, so the threshold is not taken from the formula: it is found by
**evaluating PyTorch's own modules** (the batch norm and the sign module of the model, in
eval mode) on candidate integers, by a bisection over [-K, K] per channel. The decision is
a monotone function of ``dot`` (each float operation rounds monotonically), so the
bisection finds the exact switching point and the stored rule

    x' = +1  <=>  S * dot >= T        (S = +1 or -1, T an integer; constants use T = ±(K+1))

reproduces PyTorch's decision for **every** integer ``dot``. Float pre-activations (the
first layer) are folded the same way over float32 values (bisection on their ordered bit
patterns): ``x' = +1 <=> S * y >= T`` with a float32 ``T`` (``-inf``: always +1, NaN: always -1).

Layers and what they become: ``nn.Linear``/``nn.Conv2d`` (real weights; first and last
layers) stay float32; ``BinaryLinear``/``BinaryConv2d`` with ±1 inputs become bit-packed
XNOR-popcount ops (weights ``sign(theta)``, the mode, whatever ``eval_mode`` says), fused
with the following batch norm and sign; a channel scale (``mean_abs``/``learned``) is
folded into the threshold (``y = c * dot + b``). ``Flatten``, ``Dropout``, ``Identity`` and
``MaxPool2d`` (on signed maps, or between a convolution and its batch norm + sign: the max of
real pre-activations is moved after the folded threshold, per channel an OR or an AND of the
bits depending on the direction of the rule) are supported; anything else is refused with a
ValueError.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from stbin.deploy.engine import DeployedNet, Op, _conv_out
from stbin.deploy.packing import n_words, pack_bits, pack_sign
from stbin.nn import BinaryConv2d, BinaryLinear, BinaryWeightLayer, precision_of
from stbin.nn.modes import eval_mode


def _is_sign(m: object) -> bool:
    """A registered module declaring ±1 outputs (a sign activation: StochasticSign, Sign, ...)."""
    p = precision_of(m) if isinstance(m, nn.Module) else None
    return p is not None and p.is_sign and p.weight_bits is None

BN_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d)
SKIP_MODULES = (nn.Dropout, nn.Identity)
_BIG = 1e30


# -- threshold search ----------------------------------------------------------------------
def integer_thresholds(decide: Callable[[torch.Tensor], torch.Tensor], channels: int,
                       k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, T) int32 with ``plus <=> S * d >= T`` for every integer d in [-k_max, k_max].

    ``decide(d)`` takes an int64 tensor (channels,) of candidate dot products and returns
    the bool tensor "the unit outputs +1", computed by the PyTorch model itself.
    """
    lo = torch.full((channels,), -k_max, dtype=torch.int64)
    hi = torch.full((channels,), k_max, dtype=torch.int64)
    p_lo, p_hi = decide(lo), decide(hi)
    inc = p_hi & ~p_lo
    dec = p_lo & ~p_hi
    a, b = lo.clone(), hi.clone()  # invariant: decision(a) = p_lo, decision(b) = p_hi
    while bool(((b - a) > 1).any()):
        mid = torch.div(a + b, 2, rounding_mode="floor")
        pm = decide(mid)
        same_as_lo = pm == p_lo
        a = torch.where(same_as_lo, mid, a)
        b = torch.where(same_as_lo, b, mid)
    S = torch.ones(channels, dtype=torch.int64)
    T = torch.where(p_lo, torch.tensor(-(k_max + 1)), torch.tensor(k_max + 1))  # constants
    T = torch.where(inc, b, T)               # first +1 at b
    S = torch.where(dec, -S, S)
    T = torch.where(dec, -a, T)              # last +1 at a:  d <= a  <=>  -d >= -a
    _check_int(decide, S, T, k_max)
    return S.numpy().astype(np.int32), T.numpy().astype(np.int32)


def _check_int(decide: Callable[[torch.Tensor], torch.Tensor], S: torch.Tensor, T: torch.Tensor,
               k_max: int) -> None:
    """Verify the rule on a window of integers around each threshold (and the ends)."""
    centre = torch.clamp(S * T, -k_max, k_max)
    checks = [centre + off for off in (-2, -1, 0, 1, 2)]
    checks += [torch.full_like(centre, -k_max), torch.full_like(centre, k_max)]
    for d in checks:
        d = torch.clamp(d, -k_max, k_max)
        if not torch.equal(decide(d), S * d >= T):  # pragma: no cover - a non-monotone decision
            raise RuntimeError("threshold folding failed: the unit's decision is not monotone in the dot product")


def _f2key(v: np.ndarray) -> np.ndarray:
    i = np.asarray(v, np.float32).view(np.int32).astype(np.int64)
    return np.where(i >= 0, i, -(i & 0x7FFFFFFF))


def _key2f(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, np.int64)
    i = np.where(k >= 0, k, (-k) | 0x80000000).astype(np.uint32)
    return i.view(np.float32)


def float_thresholds(decide: Callable[[torch.Tensor], torch.Tensor], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, T) float32 with ``plus <=> S * y >= T`` for float32 pre-activations y in [-1e30, 1e30]."""
    def dec(keys: np.ndarray) -> np.ndarray:
        return decide(torch.from_numpy(_key2f(keys).copy())).numpy()

    lo = np.full(channels, _f2key(np.float32(-_BIG)), np.int64)
    hi = np.full(channels, _f2key(np.float32(_BIG)), np.int64)
    p_lo, p_hi = dec(lo), dec(hi)
    a, b = lo.copy(), hi.copy()
    while np.any(b - a > 1):
        mid = (a + b) // 2
        pm = dec(mid)
        same = pm == p_lo
        a = np.where(same, mid, a)
        b = np.where(same, b, mid)
    inc, dcr = p_hi & ~p_lo, p_lo & ~p_hi
    S = np.where(dcr, -1.0, 1.0).astype(np.float32)
    T = np.where(p_lo, -np.inf, np.nan).astype(np.float32)
    T = np.where(inc, _key2f(b), T)
    T = np.where(dcr, -_key2f(a), T).astype(np.float32)
    return S, T


# -- the compiler --------------------------------------------------------------------------
def _flat_modules(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        out: list[nn.Module] = []
        for m in model:
            out += _flat_modules(m)
        return out
    return [model]


def _is_core(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, BinaryLinear, nn.Conv2d, BinaryConv2d))


def _f32(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy())


def _conv_geometry(m: nn.Module) -> dict[str, Any]:
    if m.groups != 1:
        raise ValueError(f"cannot export {type(m).__name__} with groups={m.groups} (only groups=1)")
    if getattr(m, "padding_mode", "zeros") != "zeros":
        raise ValueError(f"cannot export {type(m).__name__} with padding_mode={m.padding_mode!r}")
    kh, kw = m.kernel_size
    pad = m.padding
    if isinstance(pad, str):
        if pad == "valid":
            pad = (0, 0)
        else:
            tot = [m.dilation[0] * (kh - 1), m.dilation[1] * (kw - 1)]
            if any(t % 2 for t in tot) or tuple(m.stride) != (1, 1):
                raise ValueError("cannot export padding='same' with an even kernel or a stride")
            pad = (tot[0] // 2, tot[1] // 2)
    return {"stride": list(m.stride), "padding": list(pad), "dilation": list(m.dilation)}


class _Compiler:
    def __init__(self, mods: list[nn.Module], input_shape: Sequence[int]) -> None:
        self.mods = mods
        self.ops: list[Op] = []
        # representation of the current tensor: ("float", shape) or ("bits", shape), shape per sample:
        # float: (F,) or (C, H, W); bits: (F,) flat, (H, W, C) NHWC, or ("nhwc-flat", H, W, C)
        self.kind = "float"
        self.shape: tuple = tuple(int(s) for s in input_shape)

    def emit(self, type_: str, attrs: dict[str, Any] | None = None, **arrays: np.ndarray | None) -> None:
        arr = {k: np.ascontiguousarray(v) for k, v in arrays.items() if v is not None}
        self.ops.append(Op(type_, dict(attrs or {}), arr))

    # helpers on the current representation
    def to_float(self) -> None:
        if self.kind == "bits":
            if self.shape and self.shape[0] == "nhwc-flat":
                raise ValueError("internal: float layer after a flattened binary feature map")  # pragma: no cover
            if len(self.shape) == 3:
                h, w, c = self.shape
                self.emit("bits_float", {"features": c})
                self.shape = (c, h, w)
            else:
                self.emit("bits_float", {"features": self.shape[0]})
            self.kind = "float"

    def features(self) -> int:
        return int(np.prod([s for s in self.shape if not isinstance(s, str)]))

    def run(self) -> list[Op]:
        i = 0
        mods = self.mods
        while i < len(mods):
            m = mods[i]
            if isinstance(m, SKIP_MODULES):
                i += 1
            elif isinstance(m, nn.Flatten):
                self.flatten(mods[i + 1:])
                i += 1
            elif _is_core(m) or isinstance(m, BN_MODULES):
                j = i + 1 if _is_core(m) else i
                pool = None
                if _is_core(m) and j < len(mods) and isinstance(mods[j], nn.MaxPool2d):
                    pool = mods[j]  # pooling of real pre-activations, before BN and sign
                    j += 1
                bn = None
                if j < len(mods) and isinstance(mods[j], BN_MODULES):
                    bn = mods[j]
                    j += 1
                sign = None
                while j < len(mods) and isinstance(mods[j], SKIP_MODULES):
                    j += 1
                if j < len(mods) and _is_sign(mods[j]):
                    sign = mods[j]
                    j += 1
                if _is_core(m):
                    self.core(m, bn, sign, pool)
                else:
                    self.float_post(None, bn, sign)
                i = max(j, i + 1)
            elif _is_sign(m):
                if self.kind == "float":
                    self.float_post(None, None, m)
                i += 1
            elif isinstance(m, nn.MaxPool2d):
                self.maxpool(m)
                i += 1
            else:
                raise ValueError(f"cannot export module {type(m).__name__} (supported: Linear, Conv2d, BinaryLinear, "
                                 "BinaryConv2d, BatchNorm1d/2d, StochasticSign, Sign, Flatten, MaxPool2d after "
                                 "a sign, Dropout, Identity)")
        if self.kind != "float":
            raise ValueError("the network must end in a real-valued layer (e.g. nn.Linear)")
        return self.ops

    def flatten(self, rest: list[nn.Module]) -> None:
        if self.kind == "float":
            if len(self.shape) > 1:
                self.emit("flatten")
            self.shape = (self.features(),)
            return
        if len(self.shape) == 3:
            nxt = next((m for m in rest if _is_core(m)), None)
            if isinstance(nxt, BinaryLinear):
                h, w, c = self.shape
                self.emit("flatten")
                self.shape = ("nhwc-flat", h, w, c)
            else:
                self.to_float()
                self.emit("flatten")
                self.shape = (self.features(),)

    @staticmethod
    def _pool_geometry(m: nn.MaxPool2d, h: int, w: int) -> tuple[dict[str, Any], tuple[int, int]]:
        if m.ceil_mode or m.return_indices:
            raise ValueError("cannot export MaxPool2d with ceil_mode or return_indices")
        ks, st, pd, dl = (tuple(v) if isinstance(v, (tuple, list)) else (v, v)
                          for v in (m.kernel_size, m.stride if m.stride is not None else m.kernel_size,
                                    m.padding, m.dilation))
        geo = {"kernel_size": list(ks), "stride": list(st), "padding": list(pd), "dilation": list(dl)}
        return geo, (_conv_out(h, ks[0], st[0], pd[0], dl[0]), _conv_out(w, ks[1], st[1], pd[1], dl[1]))

    def maxpool(self, m: nn.MaxPool2d) -> None:
        if self.kind != "bits" or len(self.shape) != 3:
            raise ValueError("cannot export MaxPool2d except on binary (signed) feature maps or right after "
                             "a convolution followed by batch norm and sign")
        h, w, c = self.shape
        geo, (oh, ow) = self._pool_geometry(m, h, w)
        self.emit("maxpool2d", geo)
        self.shape = (oh, ow, c)

    def _emit_pool_after_sign(self, pool: nn.MaxPool2d, any_plus: np.ndarray) -> None:
        """Max pooling of real pre-activations, moved after the folded sign (see kernels.bmaxpool2d)."""
        h, w, c = self.shape
        geo, (oh, ow) = self._pool_geometry(pool, h, w)
        self.emit("maxpool2d", geo, any_mask=pack_bits(any_plus))
        self.shape = (oh, ow, c)

    # post chain: batch norm and/or sign evaluated by PyTorch itself
    @staticmethod
    def _post(bn: nn.Module | None, sign: nn.Module | None, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if bn is not None:
                y = bn(y)
            if sign is None:
                return y
            with eval_mode(sign, "mode"):  # the export is the mode network, whatever eval_mode says
                return sign(y) > 0

    def _layout(self, channels: int, spatial: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
        def shape_up(v: torch.Tensor) -> torch.Tensor:
            if not spatial:
                return v.view(1, channels)
            return v.view(1, channels, 1, 1).expand(1, channels, *spatial).contiguous()
        return shape_up

    def _decision(self, bn, sign, channels: int, spatial: tuple[int, ...], pre: Callable[[torch.Tensor], torch.Tensor]):
        shape_up = self._layout(channels, spatial)
        warned = [False]

        def decide(v: torch.Tensor) -> torch.Tensor:
            out = self._post(bn, sign, shape_up(pre(v)))
            if spatial:
                flat = out.flatten(2)
                if not warned[0] and not torch.equal(flat.all(2), flat.any(2)):
                    warnings.warn("PyTorch's batch norm rounds differently at different positions of a feature "
                                  "map; the folded thresholds follow position (0, 0)", RuntimeWarning, stacklevel=2)
                    warned[0] = True
                return flat[0, :, 0]
            return out[0]
        return decide

    def float_post(self, channels_spatial: tuple[int, tuple[int, ...]] | None, bn: nn.Module | None,
                   sign: nn.Module | None, pool: nn.MaxPool2d | None = None) -> None:
        """Batch norm and/or sign (after an optional max pooling) on the current float tensor."""
        if pool is not None:
            if sign is None:
                raise ValueError("cannot export MaxPool2d on real values unless batch norm and sign follow")
            c, h, w = self.shape
            _, (oh, ow) = self._pool_geometry(pool, h, w)
            S, T = float_thresholds(self._decision(bn, sign, c, (oh, ow), lambda v: v), c)
            self.emit("sign2d", S=S, T=T)
            self.kind, self.shape = "bits", (h, w, c)
            self._emit_pool_after_sign(pool, S > 0)  # y increasing: +1 if any tap is +1 when S > 0
            return
        if self.kind != "float":
            if bn is not None:
                raise ValueError("cannot export a batch norm on binary values without a layer before it")
            return  # sign of ±1 values is the identity
        if channels_spatial is None:
            channels = self.shape[0]
            spatial = tuple(self.shape[1:])
        else:
            channels, spatial = channels_spatial
        if sign is None:
            if bn is None:
                return
            with torch.no_grad():
                alpha = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var + bn.eps)
                beta = (bn.bias if bn.affine else 0) - bn.running_mean * alpha
            self.emit("affine", alpha=_f32(alpha), beta=_f32(beta))
            return
        if bn is not None and not bn.track_running_stats:
            raise ValueError("cannot export a batch norm without running statistics")
        S, T = float_thresholds(self._decision(bn, sign, channels, spatial, lambda v: v), channels)
        if spatial:
            self.emit("sign2d", S=S, T=T)
            self.kind, self.shape = "bits", (spatial[0], spatial[1], channels)
        else:
            self.emit("sign", S=S, T=T)
            self.kind, self.shape = "bits", (channels,)

    def _quantize_input(self, m: nn.Module) -> None:
        q = getattr(m, "input_quantizer", None)
        if q is None:
            return
        if not _is_sign(q):
            raise ValueError(f"cannot export input_quantizer {type(q).__name__} (only sign quantizers)")
        if self.kind == "float":
            self.float_post(None, None, q)

    def core(self, m: nn.Module, bn: nn.Module | None, sign: nn.Module | None,
             pool: nn.MaxPool2d | None = None) -> None:
        if bn is not None and not bn.track_running_stats:
            raise ValueError("cannot export a batch norm without running statistics")
        is_conv = isinstance(m, (nn.Conv2d, BinaryConv2d))
        binary = isinstance(m, BinaryWeightLayer)
        if binary:
            self._quantize_input(m)
        if is_conv and (self.kind == "float" and len(self.shape) != 3 or self.kind == "bits" and len(self.shape) != 3):
            raise ValueError(f"{type(m).__name__} needs an (C, H, W) input; give the input shape")
        if pool is not None and not is_conv:
            raise ValueError("cannot export MaxPool2d after a linear layer")
        if binary and self.kind == "bits":
            self.binary_core(m, bn, sign, is_conv, pool)
            return
        # float path: real weights, or binary weights on a real input
        self.to_float()
        with torch.no_grad():
            if binary:
                with eval_mode(m, "mode"):
                    w = m.effective_weight()
            else:
                w = m.weight
        if is_conv:
            geo = _conv_geometry(m)
            c, h, wd = self.shape
            oc, _, kh, kw = w.shape
            oh = _conv_out(h, kh, geo["stride"][0], geo["padding"][0], geo["dilation"][0])
            ow = _conv_out(wd, kw, geo["stride"][1], geo["padding"][1], geo["dilation"][1])
            self.emit("conv2d", geo, weight=_f32(w), bias=_f32(m.bias))
            self.shape = (oc, oh, ow)
        else:
            if len(self.shape) != 1:
                self.emit("flatten")
            if binary:  # binary weights on a real input: stored packed, run as a float GEMM
                scale = m._channel_factor()
                self.emit("blinear", {"in_features": int(w.shape[1]), "out_features": int(w.shape[0])},
                          weight=pack_sign(m.binary_weight("mode").numpy()),
                          scale=None if scale is None else _f32(scale.detach().flatten()), bias=_f32(m.bias))
            else:
                self.emit("linear", weight=_f32(w), bias=_f32(m.bias))
            self.shape = (w.shape[0],)
        self.float_post(None, bn, sign, pool)

    def binary_core(self, m: nn.Module, bn: nn.Module | None, sign: nn.Module | None, is_conv: bool,
                    pool: nn.MaxPool2d | None = None) -> None:
        wpm = m.binary_weight("mode")  # ±1, (out, in) or (out, in, kh, kw)
        with torch.no_grad():
            c = m._channel_factor()
        scale = None if c is None else c.detach().to(torch.float32).flatten()
        bias = None if m.bias is None else m.bias.detach().to(torch.float32)
        oc = wpm.shape[0]

        def pre(d: torch.Tensor) -> torch.Tensor:  # PyTorch's pre-activation for an integer dot
            y = d.to(torch.float32)
            if scale is not None:
                y = y * scale
            if bias is not None:
                y = y + bias
            return y

        if is_conv:
            geo = _conv_geometry(m)
            h, w, cin = self.shape
            _, _, kh, kw = wpm.shape
            oh = _conv_out(h, kh, geo["stride"][0], geo["padding"][0], geo["dilation"][0])
            ow = _conv_out(w, kw, geo["stride"][1], geo["padding"][1], geo["dilation"][1])
            packed = pack_sign(wpm.permute(0, 2, 3, 1).numpy())  # (OC, KH, KW, CW)
            attrs = {**geo, "in_channels": cin, "out_channels": oc}
            k_max, spatial = cin * kh * kw, (oh, ow)
            if pool is not None:
                spatial = self._pool_geometry(pool, oh, ow)[1]
        else:
            if self.shape and self.shape[0] == "nhwc-flat":
                _, h, w, cin = self.shape
                wn = wpm.view(oc, cin, h, w).permute(0, 2, 3, 1).numpy()  # NCHW flatten -> NHWC
                packed = pack_sign(wn).reshape(oc, h * w * n_words(cin))
            else:
                packed = pack_sign(wpm.numpy())
            k_max, spatial = wpm.shape[1], ()
            attrs = {"in_features": k_max, "out_features": oc}
        if sign is not None:
            S, T = integer_thresholds(self._decision(bn, sign, oc, spatial, pre), oc, k_max)
            self.emit("bconv2d" if is_conv else "bdense", attrs, weight=packed, S=S, T=T)
            self.kind = "bits"
            self.shape = (oh, ow, oc) if is_conv else (oc,)
            if pool is not None:
                # the pre-activation y = c * dot + b increases with dot iff c >= 0 (no scale: c = 1)
                negative_c = np.zeros(oc, bool) if scale is None else (scale.numpy() < 0)
                self._emit_pool_after_sign(pool, (S > 0) != negative_c)
            return
        if pool is not None:
            raise ValueError("cannot export MaxPool2d on real values unless batch norm and sign follow")
        self.emit("bconv2d_f" if is_conv else "bdense_f", attrs, weight=packed, scale=_f32(scale), bias=_f32(bias))
        self.kind = "float"
        self.shape = (oc, oh, ow) if is_conv else (oc,)
        self.float_post(None, bn, None)


def compile_model(model: nn.Module, input_shape: Sequence[int] | None = None,
                  meta: dict[str, Any] | None = None) -> DeployedNet:
    """Compile ``model`` (an ``nn.Sequential`` of supported modules) for bit-packed inference.

    ``input_shape`` is the shape of one input sample (e.g. ``(1, 28, 28)``); it is needed
    for convolutional models and inferred from the first ``Linear`` otherwise.
    """
    mods = _flat_modules(model)
    if input_shape is None:
        first = next((m for m in mods if _is_core(m)), None)
        if isinstance(first, (nn.Linear, BinaryLinear)):
            input_shape = (first.in_features,)
        else:
            raise ValueError("give input_shape (C, H, W) to export a convolutional model")
    was_training = model.training
    model.eval()
    try:
        ops = _Compiler(mods, input_shape).run()
    finally:
        model.train(was_training)
    info = {"input_shape": [int(s) for s in input_shape], **(meta or {})}
    return DeployedNet(ops, info)


def float32_bytes(model: nn.Module) -> int:
    """Bytes of the model's floating-point state (parameters and buffers) stored as float32."""
    return 4 * sum(int(t.numel()) for t in model.state_dict().values() if torch.is_floating_point(t))


def binary_weight_bytes(model: nn.Module) -> tuple[int, int]:
    """(float32 bytes, bit-packed bytes) of the binary layers' weights."""
    f, p = 0, 0
    for m in model.modules():
        if isinstance(m, BinaryWeightLayer):
            w = m.latent_weight
            f += 4 * w.numel()
            taps = int(np.prod(w.shape[2:])) if w.dim() > 2 else 1
            p += 8 * w.shape[0] * taps * n_words(w.shape[1])
    return f, p

