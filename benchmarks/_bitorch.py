"""The bitorch baseline of ``bench_layers.py``: bitorch's binary layers with sign input and weight quantization.

bitorch (https://github.com/hpi-xnor/bitorch) is optional: ``load_bitorch`` says why it could not be imported.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def load_bitorch() -> tuple[object | None, str]:
    """The ``bitorch.layers`` module, or None and the reason it could not be imported."""
    try:
        import bitorch.layers as bl  # noqa: PLC0415
        from bitorch.layers import QConv2d, QLinear  # noqa: F401, PLC0415
    except Exception as e:  # ImportError, or anything bitorch's package scan raises
        return None, f"{type(e).__name__}: {e}"
    import bitorch  # noqa: PLC0415
    return bl, getattr(bitorch, "__version__", "") or _dist_version("bitorch")


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version  # noqa: PLC0415
        return version(name)
    except Exception:
        return "?"


def bitorch_layer(bl: Any, s: Any) -> nn.Module:
    """bitorch's QLinear / QConv2d for the shape ``s`` (a ``bench_layers.Shape``), sign input and weights."""
    if s.kind == "linear":
        return bl.QLinear(s.c_in, s.c_out, bias=True,
                          input_quantization="sign", weight_quantization="sign")
    return bl.QConv2d(s.c_in, s.c_out, s.kernel, padding=s.kernel // 2,
                      bias=False, input_quantization="sign", weight_quantization="sign")
