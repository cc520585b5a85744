"""The compiler's state machine: the current tensor's representation and the ops emitted so far.

:class:`Compiler` walks a list of modules; each module's converter (registered in
:data:`stbin.deploy.compile.CONVERTERS`) calls the emission helpers here. The current tensor
is ``kind`` = ``"float"`` with per-sample ``shape`` (F,) or (C, H, W), or ``"bits"`` with
(F,), (H, W, C) NHWC, or ``("nhwc-flat", H, W, C)`` (a flattened binary map before a
binary dense layer).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from stbin.deploy.geometry import conv_out
from stbin.deploy.ops import Op
from stbin.deploy.packing import pack_bits
from stbin.deploy.thresholds import float_thresholds
from stbin.nn import BinaryWeightLayer, precision_of
from stbin.nn.modes import eval_mode

# the one place that names stbin.nn's layer and activation classes for the deploy side
BINARY_LAYERS: tuple[type, ...] = (BinaryWeightLayer,)  # every registered binary-weight layer


def is_sign(m: object) -> bool:
    """A registered module that declares ±1 outputs and has no weights (a sign activation)."""
    p = precision_of(m) if isinstance(m, nn.Module) else None
    return p is not None and p.is_sign and p.weight_bits is None
BN_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d)
SKIP_MODULES = (nn.Dropout, nn.Identity)


def is_core(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, nn.Conv2d) + BINARY_LAYERS)


def f32(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy())


def bn_affine(bn: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta) of an eval-mode batch norm, computed as PyTorch's CPU kernel does
    (``invstd = 1 / sqrt(var + eps)``, ``alpha = invstd * weight``, ``beta = bias - mean * alpha``)."""
    if not bn.track_running_stats or bn.running_var is None:
        raise ValueError("cannot export a batch norm without running statistics")
    with torch.no_grad():
        var = bn.running_var.to(torch.float32)
        invstd = 1 / torch.sqrt(var + torch.tensor(bn.eps, dtype=torch.float32))
        alpha = invstd * bn.weight.to(torch.float32) if bn.affine else invstd
        beta = (bn.bias.to(torch.float32) if bn.affine else 0) - bn.running_mean.to(torch.float32) * alpha
    return f32(alpha), f32(beta)  # type: ignore[return-value]


def pool_geometry(m: nn.MaxPool2d, h: int, w: int) -> tuple[dict[str, Any], tuple[int, int]]:
    if m.ceil_mode or m.return_indices:
        raise ValueError("cannot export MaxPool2d with ceil_mode or return_indices")
    ks, st, pd, dl = (tuple(v) if isinstance(v, (tuple, list)) else (v, v)
                      for v in (m.kernel_size, m.stride if m.stride is not None else m.kernel_size,
                                m.padding, m.dilation))
    geo = {"kernel_size": list(ks), "stride": list(st), "padding": list(pd), "dilation": list(dl)}
    return geo, (conv_out(h, ks[0], st[0], pd[0], dl[0]), conv_out(w, ks[1], st[1], pd[1], dl[1]))


def conv_geometry(m: nn.Module) -> dict[str, Any]:
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


class Compiler:
    """Emits ops for a list of modules; ``convert`` dispatches each module to its converter."""

    def __init__(self, input_shape: Sequence[int], find: Callable[[nn.Module], Any]) -> None:
        self.ops: list[Op] = []
        self.kind = "float"
        self.shape: tuple = tuple(int(s) for s in input_shape)
        self._find = find
        self._slots = 0

    # -- the walk ------------------------------------------------------------------------
    def convert(self, mods: list[nn.Module]) -> None:
        """Convert ``mods`` in order; each converter returns the index of the next module it did not take."""
        i = 0
        while i < len(mods):
            conv = self._find(mods[i])
            if conv is None:
                raise ValueError(f"cannot export module {type(mods[i]).__name__} (see docs/deploy.md for what "
                                 "can be exported)")
            i = max(i + 1, conv(self, mods, i))

    def emit(self, type_: str, attrs: dict[str, Any] | None = None, **arrays: np.ndarray | None) -> None:
        arr = {k: np.ascontiguousarray(v) for k, v in arrays.items() if v is not None}
        self.ops.append(Op(type_, dict(attrs or {}), arr))

    def state(self) -> tuple[str, tuple]:
        return self.kind, self.shape

    def new_slot(self) -> int:
        self._slots += 1
        return self._slots - 1

    def save(self) -> tuple[int, tuple[str, tuple]]:
        s = self.new_slot()
        self.emit("save", {"slot": s})
        return s, self.state()

    def load(self, saved: tuple[int, tuple[str, tuple]]) -> None:
        s, (self.kind, self.shape) = saved
        self.emit("load", {"slot": s})

    # -- representation changes ----------------------------------------------------------
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

    # -- batch norm, shifts and sign evaluated by PyTorch itself ---------------------------
    @staticmethod
    def _post(chain: Sequence[nn.Module], sign: nn.Module | None, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for m in chain:
                y = m(y)
            if sign is None:
                return y
            with eval_mode(sign, "mode"):  # the export is the mode network, whatever eval_mode says
                return sign(y) > 0

    def decision(self, chain: Sequence[nn.Module], sign: nn.Module, channels: int, spatial: tuple[int, ...],
                 pre: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """The unit's decision "+1?" per channel as a function of its pre-activation (via ``pre``)."""
        warned = [False]

        def decide(v: torch.Tensor) -> torch.Tensor:
            y = pre(v)
            y = y.view(1, channels) if not spatial else y.view(1, channels, 1, 1).expand(1, channels, *spatial)
            out = self._post(chain, sign, y.contiguous())
            if spatial:
                flat = out.flatten(2)
                if not warned[0] and not torch.equal(flat.all(2), flat.any(2)):
                    warnings.warn("PyTorch's per-channel ops round differently at different positions of a feature "
                                  "map; the folded thresholds follow position (0, 0)", RuntimeWarning, stacklevel=2)
                    warned[0] = True
                return flat[0, :, 0]
            return out[0]
        return decide

    def float_post(self, bn: nn.Module | None, sign: nn.Module | None, pool: nn.MaxPool2d | None = None,
                   chain: Sequence[nn.Module] = ()) -> None:
        """``chain`` (per-channel modules), batch norm and/or sign (after an optional max pooling) on the
        current float tensor: a ``sign``/``sign2d`` with folded float thresholds, or an ``affine``."""
        chain = [*chain, *([bn] if bn is not None else [])]
        for m in chain:
            if isinstance(m, BN_MODULES) and not m.track_running_stats:
                raise ValueError("cannot export a batch norm without running statistics")
        if pool is not None:
            if sign is None:
                raise ValueError("cannot export MaxPool2d on real values unless batch norm and sign follow")
            c, h, w = self.shape
            _, (oh, ow) = pool_geometry(pool, h, w)
            S, T = float_thresholds(self.decision(chain, sign, c, (oh, ow), lambda v: v), c)
            self.emit("sign2d", S=S, T=T)
            self.kind, self.shape = "bits", (h, w, c)
            self.pool_after_sign(pool, S > 0)  # y increasing: +1 if any tap is +1 when S > 0
            return
        if self.kind != "float":
            if chain:
                raise ValueError("cannot export a batch norm on binary values without a layer before it")
            return  # sign of ±1 values is the identity
        channels, spatial = self.shape[0], tuple(self.shape[1:])
        if sign is None:
            for m in chain:
                if not isinstance(m, BN_MODULES):
                    raise ValueError(f"cannot export {type(m).__name__} without a sign after it")
                alpha, beta = bn_affine(m)
                self.emit("affine", alpha=alpha, beta=beta)
            return
        S, T = float_thresholds(self.decision(chain, sign, channels, spatial, lambda v: v), channels)
        if spatial:
            self.emit("sign2d", S=S, T=T)
            self.kind, self.shape = "bits", (spatial[0], spatial[1], channels)
        else:
            self.emit("sign", S=S, T=T)
            self.kind, self.shape = "bits", (channels,)

    def pool_after_sign(self, pool: nn.MaxPool2d, any_plus: np.ndarray) -> None:
        """Max pooling of real pre-activations, moved after the folded sign (see kernels.bmaxpool2d)."""
        h, w, c = self.shape
        geo, (oh, ow) = pool_geometry(pool, h, w)
        self.emit("maxpool2d", geo, any_mask=pack_bits(any_plus))
        self.shape = (oh, ow, c)

    def maxpool(self, m: nn.MaxPool2d) -> None:
        if self.kind != "bits" or len(self.shape) != 3:
            raise ValueError("cannot export MaxPool2d except on binary (signed) feature maps or right after "
                             "a convolution followed by batch norm and sign")
        h, w, c = self.shape
        geo, (oh, ow) = pool_geometry(m, h, w)
        self.emit("maxpool2d", geo)
        self.shape = (oh, ow, c)

    def quantize_input(self, m: nn.Module) -> None:
        q = getattr(m, "input_quantizer", None)
        if q is None:
            return
        if not is_sign(q):
            raise ValueError(f"cannot export input_quantizer {type(q).__name__} (only sign quantizers)")
        if self.kind == "float":
            self.float_post(None, q)
