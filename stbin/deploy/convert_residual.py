"""Converters of residual networks: the blocks of ``resnet20`` and ``bireal_resnet18``, average
pooling, the option-A shortcut and the learnable shift before a sign (RSign).

A block ``y = f(x) + g(x)`` becomes ``save`` x; ops of f; ``save`` f(x); ``load`` x; ops of g;
``add`` (see :mod:`stbin.deploy.ops.residual`). The real-valued path runs in float32 as
PyTorch does; every sign of it is folded into per-channel float thresholds (``sign2d``) by
evaluating PyTorch's own modules, and every binary convolution on packed bits.
"""

from __future__ import annotations

from torch import nn

from stbin.deploy.compiler import Compiler, is_sign
from stbin.deploy.convert_layers import layer
from stbin.deploy.converters import register_converter
from stbin.models.birealnet import BiRealBlock, ChannelShift, ZeroPadShortcut
from stbin.models.resnet import BasicBlock


def _residual(c: Compiler, main, shortcut: nn.Module) -> None:
    """Emit ``main() + shortcut(x)`` for the current tensor x; the sum is float."""
    x = c.save()
    main()
    c.to_float()
    if c.kind != "float":  # pragma: no cover - to_float always gives float
        raise ValueError("internal: residual branch is not real-valued")
    f = c.save()
    main_state = c.state()
    c.load(x)
    c.convert([shortcut])
    c.to_float()
    if c.state() != main_state:
        raise ValueError(f"cannot export a residual block whose shortcut gives {c.shape} and main path {main_state[1]}")
    c.emit("add", {"slot": f[0]})


@register_converter(BasicBlock)
def _basic_block(c: Compiler, mods: list, i: int) -> int:
    """``act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))`` (stbin's resnet20)."""
    b = mods[i]

    def main() -> None:
        layer(c, b.conv1, b.bn1, _sign_or_refuse(b.act1))
        layer(c, b.conv2, b.bn2, None)
    _residual(c, main, b.shortcut)
    c.float_post(None, _sign_or_refuse(b.act2))
    return i + 1


@register_converter(BiRealBlock)
def _bireal_block(c: Compiler, mods: list, i: int) -> int:
    """``bn(conv(act(shift(x)))) + shortcut(x)``: the shift and sign fold into one ``sign2d``."""
    b = mods[i]

    def main() -> None:
        if c.kind == "float":
            c.float_post(None, _sign_or_refuse(b.act), chain=[b.shift])
        layer(c, b.conv, b.bn, None)
    _residual(c, main, b.shortcut)
    return i + 1


@register_converter(ChannelShift)
def _shift(c: Compiler, mods: list, i: int) -> int:
    """A shift with a sign after it (RSign) folds into the sign's thresholds."""
    if i + 1 < len(mods) and is_sign(mods[i + 1]) and c.kind == "float":
        c.float_post(None, mods[i + 1], chain=[mods[i]])
        return i + 2
    raise ValueError("cannot export ChannelShift except right before a sign")


def _sign_or_refuse(m: nn.Module) -> nn.Module:
    if not is_sign(m):
        raise ValueError(f"cannot export a residual block with activation {type(m).__name__} (only sign "
                         "activations: registered modules with ±1 outputs and no weights)")
    return m


@register_converter(nn.Sequential)
def _sequential(c: Compiler, mods: list, i: int) -> int:
    c.convert(list(mods[i]))
    return i + 1


@register_converter(nn.AdaptiveAvgPool2d, nn.AvgPool2d)
def _avgpool(c: Compiler, mods: list, i: int) -> int:
    m = mods[i]
    c.to_float()
    if len(c.shape) != 3:
        raise ValueError(f"{type(m).__name__} needs a (C, H, W) input")
    ch, h, w = c.shape
    if isinstance(m, nn.AdaptiveAvgPool2d):
        size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size, m.output_size)
        if tuple(size) != (1, 1):
            raise ValueError(f"cannot export AdaptiveAvgPool2d with output size {m.output_size} (only 1)")
        ks, st = (h, w), (1, 1)
        c.emit("avgpool2d", {"kernel_size": [h, w], "stride": [1, 1]})
    else:
        pair = (lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v))
        ks, st = pair(m.kernel_size), pair(m.stride if m.stride is not None else m.kernel_size)
        if pair(m.padding) != (0, 0) or m.ceil_mode or m.divisor_override is not None:
            raise ValueError("cannot export AvgPool2d with padding, ceil_mode or divisor_override")
        c.emit("avgpool2d", {"kernel_size": list(ks), "stride": list(st)})
    c.shape = (ch, (h - ks[0]) // st[0] + 1, (w - ks[1]) // st[1] + 1)
    return i + 1


@register_converter(ZeroPadShortcut)
def _zero_pad(c: Compiler, mods: list, i: int) -> int:
    m = mods[i]
    c.to_float()
    ch, h, w = c.shape
    c.emit("zero_pad_shortcut", {"stride": [m.stride, m.stride], "channels_before": m.before,
                                 "channels_after": m.after})
    c.shape = (m.before + ch + m.after, -(-h // m.stride), -(-w // m.stride))
    return i + 1
