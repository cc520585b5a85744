"""Converters of the plain layers: linear / conv (real or binary) with the batch norm, pooling and
sign after them, batch norm, sign, max pooling, flatten, dropout / identity."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stbin.deploy.compiler import (BINARY_LAYERS, BN_MODULES, SKIP_MODULES, Compiler, conv_geometry, f32, is_core,
                                   is_sign, pool_geometry)
from stbin.deploy.converters import CONVERTERS, register_converter
from stbin.deploy.geometry import conv_out_hw
from stbin.deploy.packing import n_words, pack_sign
from stbin.deploy.thresholds import integer_thresholds
from stbin.nn import BinaryLinear
from stbin.nn.modes import eval_mode


@register_converter(*SKIP_MODULES)
def _skip(c: Compiler, mods: list, i: int) -> int:
    return i + 1


@CONVERTERS.register_when(is_sign)
def _sign(c: Compiler, mods: list, i: int) -> int:
    if c.kind == "float":
        c.float_post(None, mods[i])
    return i + 1


@register_converter(nn.MaxPool2d)
def _maxpool(c: Compiler, mods: list, i: int) -> int:
    c.maxpool(mods[i])
    return i + 1


@register_converter(nn.Flatten)
def _flatten(c: Compiler, mods: list, i: int) -> int:
    if c.kind == "float":
        if len(c.shape) > 1:
            c.emit("flatten")
        c.shape = (c.features(),)
    elif len(c.shape) == 3:
        nxt = next((m for m in mods[i + 1:] if is_core(m)), None)
        if isinstance(nxt, BinaryLinear):
            h, w, ch = c.shape
            c.emit("flatten")
            c.shape = ("nhwc-flat", h, w, ch)
        else:
            c.to_float()
            c.emit("flatten")
            c.shape = (c.features(),)
    return i + 1


@register_converter(nn.Linear, nn.Conv2d, *BINARY_LAYERS, *BN_MODULES)
def _core_chain(c: Compiler, mods: list, i: int) -> int:
    """A layer (or a lone batch norm) with the max pooling, batch norm and sign that follow it."""
    m = mods[i]
    core = is_core(m)
    j = i + 1 if core else i
    pool = bn = sign = None
    if core and j < len(mods) and isinstance(mods[j], nn.MaxPool2d):
        pool, j = mods[j], j + 1  # pooling of real pre-activations, before BN and sign
    if j < len(mods) and isinstance(mods[j], BN_MODULES):
        bn, j = mods[j], j + 1
    while j < len(mods) and isinstance(mods[j], SKIP_MODULES):
        j += 1
    if j < len(mods) and is_sign(mods[j]):
        sign, j = mods[j], j + 1
    if core:
        layer(c, m, bn, sign, pool)
    else:
        c.float_post(bn, sign)
    return j


def layer(c: Compiler, m: nn.Module, bn: nn.Module | None, sign: nn.Module | None,
          pool: nn.MaxPool2d | None = None) -> None:
    """Emit a linear / conv layer (real or binary weights) and the batch norm / sign / pool after it."""
    if bn is not None and not bn.track_running_stats:
        raise ValueError("cannot export a batch norm without running statistics")
    is_conv = isinstance(m, nn.Conv2d) or (isinstance(m, BINARY_LAYERS) and not isinstance(m, BinaryLinear))
    binary = isinstance(m, BINARY_LAYERS)
    if binary:
        c.quantize_input(m)
    if is_conv and len(c.shape) != 3:
        raise ValueError(f"{type(m).__name__} needs an (C, H, W) input; give the input shape")
    if pool is not None and not is_conv:
        raise ValueError("cannot export MaxPool2d after a linear layer")
    if binary and c.kind == "bits":
        _binary_layer(c, m, bn, sign, is_conv, pool)
        return
    # float path: real weights, or binary weights on a real input
    c.to_float()
    with torch.no_grad():
        if binary:
            with eval_mode(m, "mode"):
                w = m.effective_weight()
        else:
            w = m.weight
    if is_conv:
        geo = conv_geometry(m)
        ch, h, wd = c.shape
        oc, _, kh, kw = w.shape
        oh, ow = conv_out_hw(h, wd, kh, kw, geo["stride"], geo["padding"], geo["dilation"])
        c.emit("conv2d", geo, weight=f32(w), bias=f32(m.bias))
        c.shape = (oc, oh, ow)
    else:
        if len(c.shape) != 1:
            c.emit("flatten")
        if binary:  # binary weights on a real input: stored packed, run as a float GEMM
            scale = m._channel_factor()
            c.emit("blinear", {"in_features": int(w.shape[1]), "out_features": int(w.shape[0])},
                   weight=pack_sign(m.binary_weight("mode").numpy()),
                   scale=None if scale is None else f32(scale.detach().flatten()), bias=f32(m.bias))
        else:
            c.emit("linear", weight=f32(w), bias=f32(m.bias))
        c.shape = (w.shape[0],)
    c.float_post(bn, sign, pool)


def _binary_layer(c: Compiler, m: nn.Module, bn: nn.Module | None, sign: nn.Module | None, is_conv: bool,
                  pool: nn.MaxPool2d | None = None) -> None:
    """XNOR-popcount layer on packed bits: thresholds (``bdense``/``bconv2d``) or real output (``*_f``)."""
    wpm = m.binary_weight("mode")  # ±1, (out, in) or (out, in, kh, kw)
    with torch.no_grad():
        ch = m._channel_factor()
    scale = None if ch is None else ch.detach().to(torch.float32).flatten()
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
        geo = conv_geometry(m)
        h, w, cin = c.shape
        _, _, kh, kw = wpm.shape
        oh, ow = conv_out_hw(h, w, kh, kw, geo["stride"], geo["padding"], geo["dilation"])
        packed = pack_sign(wpm.permute(0, 2, 3, 1).numpy())  # (OC, KH, KW, CW)
        attrs = {**geo, "in_channels": cin, "out_channels": oc}
        k_max, spatial = cin * kh * kw, (oh, ow)
        if pool is not None:
            spatial = pool_geometry(pool, oh, ow)[1]
    else:
        if c.shape and c.shape[0] == "nhwc-flat":
            _, h, w, cin = c.shape
            wn = wpm.view(oc, cin, h, w).permute(0, 2, 3, 1).numpy()  # NCHW flatten -> NHWC
            packed = pack_sign(wn).reshape(oc, h * w * n_words(cin))
        else:
            packed = pack_sign(wpm.numpy())
        k_max, spatial = wpm.shape[1], ()
        attrs = {"in_features": k_max, "out_features": oc}
    if sign is not None:
        chain = [bn] if bn is not None else []
        S, T = integer_thresholds(c.decision(chain, sign, oc, spatial, pre), oc, k_max)
        c.emit("bconv2d" if is_conv else "bdense", attrs, weight=packed, S=S, T=T)
        c.kind = "bits"
        c.shape = (oh, ow, oc) if is_conv else (oc,)
        if pool is not None:
            # the pre-activation y = c * dot + b increases with dot iff c >= 0 (no scale: c = 1)
            negative_c = np.zeros(oc, bool) if scale is None else (scale.numpy() < 0)
            c.pool_after_sign(pool, (S > 0) != negative_c)
        return
    if pool is not None:
        raise ValueError("cannot export MaxPool2d on real values unless batch norm and sign follow")
    c.emit("bconv2d_f" if is_conv else "bdense_f", attrs, weight=packed, scale=f32(scale), bias=f32(bias))
    c.kind = "float"
    c.shape = (oc, oh, ow) if is_conv else (oc,)
    c.float_post(bn, None)
