r"""ONNX export of the deterministic (mode) network: :func:`to_onnx`.

This is **float emulation for interoperability**: every binary module is replaced by its
plain-op equivalent (``mode_module()``, see :mod:`stbin.nn.plain`) — binary weights become
±1 float constants (times the channel scale), sign activations ``where(x >= 0, 1, -1)``
(ONNX ``GreaterOrEqual`` + ``Where``, keeping sign(0) = +1), batch norms become explicit
``Sub``, ``Mul`` and ``Add`` nodes (:class:`ExplicitBatchNorm`: onnxruntime folds a
``BatchNormalization`` into the ``MatMul`` or ``Conv`` before it, which turns the exact integer
sums of binary layers into inexact ones) — and the result is exported with standard ONNX
operators only (opset 17), so that any ONNX runtime runs it with the same predictions as
PyTorch in ``mode``. It is not faster or
smaller than the float model; the true-binary path (bit-packed weights, XNOR-popcount,
folded thresholds) is the ``.stbn`` format of :mod:`stbin.deploy`.

Before writing, the plain copy is checked against the model in ``mode`` on
``example_input`` (identical outputs up to float rounding, identical argmax); the file is
written atomically. Requires the ``onnx`` package (``pip install 'stbin[onnx]'``).
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stbin._extras import require_extra
from stbin._io import atomic_write
from stbin.nn import BinaryModule, eval_mode
from stbin.nn.convert import set_submodule

OPSET = 17


class ExplicitBatchNorm(nn.Module):
    r"""An eval-mode batch norm computed as ``(x - mean) * alpha + bias``, ``alpha = weight / sqrt(var + eps)``.

    Exported as ``Sub``, ``Mul`` and ``Add`` nodes rather than ONNX ``BatchNormalization``, which
    onnxruntime's graph optimiser folds into the ``MatMul`` or ``Conv`` before it (weights times
    ``alpha``, shift as bias). The products of a binary layer are exact integer sums; folded, they are
    not: a sum equal to the running mean (0 for a channel whose mean came out 0) gave PyTorch exactly
    ``bias`` (a sign activation: +1) and onnxruntime a rounding residue of either sign (found by
    ``stbin export --format onnx --verify`` on a LeNet-5: 95 of 10000 MNIST predictions differed).
    Here the sum stays exact and ``x - mean`` is exactly 0 there; elsewhere the two forms agree within
    float rounding.

    >>> bn = nn.BatchNorm1d(2).eval()
    >>> ExplicitBatchNorm(bn)(torch.zeros(1, 2)).tolist()
    [[0.0, 0.0]]
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        var, mean = bn.running_var.detach().float(), bn.running_mean.detach().float()
        w = bn.weight.detach().float() if bn.weight is not None else torch.ones_like(var)
        b = bn.bias.detach().float() if bn.bias is not None else torch.zeros_like(var)
        self.register_buffer("mean", mean.clone())
        self.register_buffer("alpha", w / torch.sqrt(var + bn.eps))
        self.register_buffer("shift", b.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) * self.alpha.view(shape) + self.shift.view(shape)


def _explicit_batch_norms(net: nn.Module) -> nn.Module:
    """``net`` with every batch norm that uses running statistics replaced by :class:`ExplicitBatchNorm`."""
    def usable(m: nn.Module) -> bool:
        return isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None

    if usable(net):
        return ExplicitBatchNorm(net)
    for name, m in list(net.named_modules()):
        if name and usable(m):
            set_submodule(net, name, ExplicitBatchNorm(m))
    return net


def mode_network(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval) with every binary module replaced by its ``mode_module()`` and every batch
    norm by :class:`ExplicitBatchNorm`."""
    net = copy.deepcopy(model).eval()
    if isinstance(net, BinaryModule):
        return _explicit_batch_norms(net.mode_module().eval())
    replaced: list[str] = []
    for name, m in list(net.named_modules()):
        if not name or not isinstance(m, BinaryModule):
            continue
        if any(name.startswith(r + ".") for r in replaced):
            continue  # inside a replaced module (an input quantizer): its parent's mode_module covers it
        set_submodule(net, name, m.mode_module().eval())
        replaced.append(name)
    return _explicit_batch_norms(net)


def check_onnx_available() -> None:
    """ValueError with the install command when the ``onnx`` package is missing."""
    require_extra("onnx", extra="onnx", purpose="ONNX export")


def to_onnx(model: nn.Module, example_input: torch.Tensor, path: str | os.PathLike,
            input_name: str = "input", output_name: str = "logits") -> Path:
    """Export the mode network of ``model`` to the ONNX file ``path`` (batch dimension dynamic).

    Args:
        model: a model with stbin binary modules (any ``nn.Module`` of supported ops).
        example_input: one input batch (shape and dtype of the exported input).
        path: output file (written atomically).
        input_name, output_name: names of the graph's input and output.

    Returns:
        The path written.
    """
    check_onnx_available()
    if not isinstance(example_input, torch.Tensor) or not torch.is_floating_point(example_input):
        raise ValueError("example_input must be a floating-point tensor (one input batch)")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; give a file name such as model.onnx")
    plain = mode_network(model)
    with torch.no_grad(), eval_mode(model, "mode"):
        ref = model(example_input)
        got = plain(example_input)
    _check_same(ref, got)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notices (legacy exporter, constant folding)
        torch.onnx.export(plain, (example_input,), buf, dynamo=False, opset_version=OPSET,
                          input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
    data = buf.getvalue()
    _check_model(data)
    return atomic_write(path, lambda f: f.write(data))


def _check_same(ref: Any, got: Any) -> None:
    if not isinstance(ref, torch.Tensor) or not isinstance(got, torch.Tensor) or ref.shape != got.shape:
        raise ValueError("the model must return one tensor")  # pragma: no cover - model specific
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    if not torch.allclose(ref, got, rtol=1e-4, atol=1e-4 * max(1.0, scale)):  # pragma: no cover - a bug
        raise RuntimeError("internal: the plain-op mode network differs from the model in mode")


def _check_model(data: bytes) -> None:
    import onnx

    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto)
    domains = {n.domain for n in proto.graph.node} - {"", "ai.onnx"}
    if domains:  # pragma: no cover - torch emitted a custom op
        raise ValueError(f"the exported graph uses non-standard operator domains: {sorted(domains)}")
