r"""Compile a PyTorch stbin model (evaluated in mode) into a :class:`~stbin.deploy.engine.DeployedNet`.

The folding of batch norm + sign into exact thresholds is in :mod:`stbin.deploy.thresholds`; each
module type is turned into ops by its converter, registered in :data:`CONVERTERS`
(:mod:`stbin.deploy.converters`; the plain layers in :mod:`stbin.deploy.convert_layers`, residual
blocks in :mod:`stbin.deploy.convert_residual`).

Layers and what they become: ``nn.Linear``/``nn.Conv2d`` (real weights; first and last
layers) stay float32; ``BinaryLinear``/``BinaryConv2d`` with ±1 inputs become bit-packed
XNOR-popcount ops (weights ``sign(theta)``, the mode, whatever ``eval_mode`` says), fused
with the following batch norm and sign; a channel scale (``mean_abs``/``learned``) is
folded into the threshold (``y = c * dot + b``). ``Flatten``, ``Dropout``, ``Identity`` and
``MaxPool2d`` (on signed maps, or between a convolution and its batch norm + sign: the max of
real pre-activations is moved after the folded threshold, per channel an OR or an AND of the
bits depending on the direction of the rule), ``AvgPool2d`` / ``AdaptiveAvgPool2d(1)`` and the
residual blocks of ``resnet20`` and ``bireal_resnet18`` are supported; anything else is
refused with a ValueError.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from stbin.deploy import convert_layers as _convert_layers  # noqa: F401  (registers its converters)
from stbin.deploy import convert_residual as _convert_residual  # noqa: F401
from stbin.deploy.compiler import BINARY_LAYERS, Compiler, is_core
from stbin.deploy.converters import CONVERTERS, register_converter
from stbin.deploy.engine import DeployedNet
from stbin.deploy.fuse import fuse as fuse_ops
from stbin.deploy.packing import n_words
from stbin.deploy.thresholds import float_thresholds, integer_thresholds
from stbin.nn import BinaryLinear

__all__ = ["compile_model", "CONVERTERS", "register_converter", "float32_bytes", "binary_weight_bytes",
           "float_thresholds", "integer_thresholds"]


def _flat_modules(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        out: list[nn.Module] = []
        for m in model:
            out += _flat_modules(m)
        return out
    return [model]


def compile_model(model: nn.Module, input_shape: Sequence[int] | None = None,
                  meta: dict[str, Any] | None = None, fuse: bool = True) -> DeployedNet:
    """Compile ``model`` (an ``nn.Sequential`` of supported modules) for bit-packed inference.

    ``input_shape`` is the shape of one input sample (e.g. ``(1, 28, 28)``); it is needed
    for convolutional models and inferred from the first ``Linear`` otherwise. The result
    is checked like a loaded file (every op's shapes, from the input shape on). ``fuse``: replace
    op sequences by fused ops (:mod:`stbin.deploy.fuse`; ``False`` keeps one op per step).
    """
    mods = _flat_modules(model)
    if input_shape is None:
        first = next((m for m in mods if is_core(m)), None)
        if isinstance(first, (nn.Linear, BinaryLinear)):
            input_shape = (first.in_features,)
        else:
            raise ValueError("give input_shape (C, H, W) to export a convolutional model")
    was_training = model.training
    model.eval()
    try:
        c = Compiler(input_shape, CONVERTERS.find)
        c.convert(mods)
        if c.kind != "float":
            raise ValueError("the network must end in a real-valued layer (e.g. nn.Linear)")
    finally:
        model.train(was_training)
    info = {"input_shape": [int(s) for s in input_shape], **(meta or {})}
    return DeployedNet(fuse_ops(c.ops, input_shape) if fuse else c.ops, info)


def float32_bytes(model: nn.Module) -> int:
    """Bytes of the model's floating-point state (parameters and buffers) stored as float32."""
    return 4 * sum(int(t.numel()) for t in model.state_dict().values() if torch.is_floating_point(t))


def binary_weight_bytes(model: nn.Module) -> tuple[int, int]:
    """(float32 bytes, bit-packed bytes) of the binary layers' weights."""
    f, p = 0, 0
    for m in model.modules():
        if isinstance(m, BINARY_LAYERS):
            w = m.latent_weight
            f += 4 * w.numel()
            taps = int(np.prod(w.shape[2:])) if w.dim() > 2 else 1
            p += 8 * w.shape[0] * taps * n_words(w.shape[1])
    return f, p
