"""True-binary deployment: bit-packed export and a CPU XNOR-popcount inference engine.

* :func:`compile_model` — a trained stbin ``nn.Sequential`` (evaluated in mode) ->
  :class:`DeployedNet`: binary layers bit-packed (one bit per weight), batch norm + sign
  folded into exact integer thresholds, first and last layers kept in float32;
* :func:`save` / :func:`load` — the versioned ``.stbn`` file (header, shapes, SHA-256);
* :func:`export_checkpoint` — checkpoint (``stbin.training``) -> deploy file;
* :mod:`stbin.deploy.kernels` — numba XNOR-popcount GEMM / conv kernels (needs the
  ``deploy`` extra: ``pip install 'stbin[deploy]'``);
* :mod:`stbin.deploy.packing` — the bit order;
* :func:`to_onnx` — the mode network as a standard ONNX graph (float emulation for
  interoperability; needs ``onnx``).

See docs/deploy.md for the file format, the folding and the measured speed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from stbin.deploy.compile import binary_weight_bytes, compile_model, float32_bytes
from stbin.deploy.engine import DeployedNet
from stbin.deploy.ops import OPS, Op, OpType, TensorSpec, register_op
from stbin.deploy.converters import CONVERTERS, register_converter
from stbin.deploy.format import FORMAT_VERSION, DeployFormatError, from_bytes, load, save, to_bytes
from stbin.deploy.onnx import to_onnx
from stbin.deploy.packing import n_words, pack_bits, pack_sign, unpack_bits


def require_kernels() -> None:
    """Import the numba kernels now (ImportError with the install hint if numba is missing)."""
    from stbin.deploy import kernels  # noqa: F401


def export_checkpoint(checkpoint: str | os.PathLike | dict[str, Any], out: str | os.PathLike,
                      input_shape: Sequence[int] | None = None,
                      input_grid: dict[str, float] | None = None) -> DeployedNet:
    """Export a training checkpoint to a deploy file at ``out``; returns the compiled net.

    ``input_grid`` (:func:`stbin.deploy.input_grid.input_grid_for`) declares 8-bit inputs: a binary-weight
    first layer then runs bit-serially, and every input is checked to lie on the grid.

    The file's metadata names the model's options by their current names (a checkpoint written
    before an option was renamed keeps the old name; the deploy file does not)."""
    from stbin import __version__
    from stbin.models import MODELS
    from stbin.models.common import current_option_names
    from stbin.training import load_checkpoint, load_model

    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    model = load_model(ckpt)
    spec = ckpt["model"]
    kwargs = dict(spec.get("kwargs", {}))
    if spec["name"] in MODELS:  # a plugin's options are its own
        kwargs = current_option_names(kwargs, f"model {spec['name']!r}")
    meta = {"model": {"name": spec["name"], "kwargs": kwargs}, "stbin_version": __version__,
            "float32_bytes": float32_bytes(model)}
    if input_grid is not None:
        meta["input_grid"] = dict(input_grid)
    net = compile_model(model, input_shape, meta)
    save(net, Path(out))
    return net


__all__ = ["compile_model", "DeployedNet", "Op", "save", "load", "to_bytes", "from_bytes", "export_checkpoint",
           "DeployFormatError", "FORMAT_VERSION", "pack_bits", "pack_sign", "unpack_bits", "n_words",
           "float32_bytes", "binary_weight_bytes", "require_kernels", "OPS", "OpType", "TensorSpec", "register_op",
           "CONVERTERS", "register_converter", "to_onnx"]
