"""Model summary: parameters, memory and MACs by precision, per layer (Larq-style).

:func:`model_summary` runs one forward pass (evaluation, ``mode``) on a batch of two random
inputs of ``input_shape`` with hooks on the leaf modules and returns one row per layer plus totals:

* parameters split into **1-bit** (latent weights of binary layers: deployed as ±1) and
  **32-bit** (everything else that is trainable: real layers, biases, BN affine, scales);
* memory: 1 bit per binary parameter, 4 bytes per real one; the float32-equivalent size
  (4 bytes per parameter) and the compression ratio = float32 size / memory;
* MACs of linear / conv layers by precision: ``1x1`` (binary weights and ±1 inputs:
  XNOR-popcount), ``1x32`` (binary weights, real inputs) and ``32x32``. An input counts as
  binary when every value is in {-1, +1} (zero padding of a binary conv input included).

BatchNorm running statistics are buffers, not parameters, and are not counted (they fold
into thresholds at deployment).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from stbin.nn.binary import BinaryWeightLayer
from stbin.nn.modes import eval_mode


@dataclass
class LayerRow:
    """One layer of a :class:`Summary`: its parameters by precision and its MACs per image."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params_1bit: int = 0
    params_32bit: int = 0
    macs_1x1: int = 0
    macs_1x32: int = 0
    macs_32x32: int = 0

    @property
    def memory_bytes(self) -> float:
        return self.params_1bit / 8 + self.params_32bit * 4


@dataclass
class Summary:
    """The per-layer rows and the totals (parameters, memory, compression, MACs) of a model."""

    rows: list[LayerRow]
    totals: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": [asdict(r) | {"memory_bytes": r.memory_bytes} for r in self.rows], "totals": self.totals}


def _is_binary(x: torch.Tensor) -> bool:
    return bool(x.numel()) and bool(((x == 1) | (x == -1)).all())


def _macs(m: nn.Module, out: torch.Tensor) -> int:
    per_sample_out = out[0].numel() if out.dim() > 1 else out.numel()
    if isinstance(m, (nn.Linear, )) or (isinstance(m, BinaryWeightLayer) and m.latent_weight.dim() == 2):
        fan_in = m.in_features  # type: ignore[union-attr]
    elif isinstance(m, nn.Conv2d) or isinstance(m, BinaryWeightLayer):
        w = m.weight if isinstance(m, nn.Conv2d) else m.latent_weight  # type: ignore[union-attr]
        fan_in = w[0].numel()
    else:
        return 0
    return int(per_sample_out * fan_in)


def model_summary(model: nn.Module, input_shape: Sequence[int], device: str | torch.device | None = None) -> Summary:
    """Per-layer rows and totals for ``model`` on inputs of shape ``input_shape`` (without batch).

    The forward uses a batch of two random inputs in evaluation mode (``mode``); the model's
    train/eval state is restored afterwards.

    Args:
        model: the model; every trainable parameter is counted once, also of modules the
            forward does not reach (as "(other parameters)").
        input_shape: the shape of one input, without the batch dimension.
        device: where to run the forward (default: the device of the model's parameters).

    >>> from torch import nn
    >>> from stbin.nn import BinaryLinear, Sign
    >>> model = nn.Sequential(nn.Linear(4, 8), Sign(), BinaryLinear(8, 2, bias=False))
    >>> s = model_summary(model, (4,))
    >>> [(r.name, r.params_1bit, r.params_32bit, r.macs_1x1, r.macs_32x32) for r in s.rows]
    [('0', 0, 40, 0, 32), ('2', 16, 0, 16, 0)]
    >>> s.totals["memory_bytes"], s.totals["compression"]
    (162.0, 1.382716049382716)
    """
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else "cpu"
    rows: list[LayerRow] = []
    handles = []
    names = {m: n for n, m in model.named_modules()}

    def hook(m: nn.Module, inp: tuple, out: Any) -> None:
        if not isinstance(out, torch.Tensor):
            return
        x = inp[0] if inp and isinstance(inp[0], torch.Tensor) else None
        own = list(m.parameters(recurse=False))
        binary_ids = ({id(m.latent_weight)} if isinstance(m, BinaryWeightLayer) and m.precision.weight_bits == 1
                      else set())
        p1 = sum(p.numel() for p in own if id(p) in binary_ids)
        p32 = sum(p.numel() for p in own if id(p) not in binary_ids and p.requires_grad)
        row = LayerRow(names.get(m, "?") or type(m).__name__, type(m).__name__, tuple(out.shape[1:]), p1, p32)
        macs = _macs(m, out)
        if macs:
            if isinstance(m, BinaryWeightLayer):
                xin = m.input_quantizer(x) if (m.input_quantizer is not None and x is not None) else x
                if xin is not None and _is_binary(xin):
                    row.macs_1x1 = macs
                else:
                    row.macs_1x32 = macs
            else:
                row.macs_32x32 = macs
        if p1 or p32 or macs:
            rows.append(row)

    for m in model.modules():
        if not list(m.children()) or isinstance(m, BinaryWeightLayer):
            if isinstance(m, BinaryWeightLayer) or not any(isinstance(a, BinaryWeightLayer) for a in m.modules()):
                handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad(), eval_mode(model, "mode"):
            model(torch.randn(2, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    # parameters not seen in the forward (unused modules) still count
    seen = sum(r.params_1bit + r.params_32bit for r in rows)
    total_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if total_trainable != seen:
        rows.append(LayerRow("(other parameters)", "-", (), 0, total_trainable - seen))
    t: dict[str, float] = {}
    for k in ("params_1bit", "params_32bit", "macs_1x1", "macs_1x32", "macs_32x32"):
        t[k] = sum(getattr(r, k) for r in rows)
    t["params"] = t["params_1bit"] + t["params_32bit"]
    t["memory_bytes"] = t["params_1bit"] / 8 + t["params_32bit"] * 4
    t["float32_bytes"] = t["params"] * 4
    t["compression"] = t["float32_bytes"] / t["memory_bytes"] if t["memory_bytes"] else 1.0
    t["macs"] = t["macs_1x1"] + t["macs_1x32"] + t["macs_32x32"]
    return Summary(rows, t)


def _size(b: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024 or unit == "GiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.2f} {unit}"
        b /= 1024
    return f"{b}"


def format_summary(summary: Summary, title: str | None = None) -> str:
    """A Markdown table of the rows plus a totals block.

    Args:
        summary: the result of :func:`model_summary`.
        title: an optional heading above the table.

    >>> from stbin.nn import BinaryLinear
    >>> print(format_summary(model_summary(BinaryLinear(8, 2, bias=False), (8,))).splitlines()[-3])
    - parameters: 16 (16 binary, 0 real-valued)
    """
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines += ["| layer | type | output | 1-bit params | 32-bit params | memory | 1x1 MACs | 1x32 MACs | 32x32 MACs |",
              "|---|---|---|--:|--:|--:|--:|--:|--:|"]
    for r in summary.rows:
        shape = "x".join(str(s) for s in r.output_shape) or "-"
        lines.append(f"| {r.name} | {r.kind} | {shape} | {r.params_1bit:,} | {r.params_32bit:,} | "
                     f"{_size(r.memory_bytes)} | {r.macs_1x1:,} | {r.macs_1x32:,} | {r.macs_32x32:,} |")
    t = summary.totals
    lines.append(f"| **total** | | | {int(t['params_1bit']):,} | {int(t['params_32bit']):,} | "
                 f"{_size(t['memory_bytes'])} | {int(t['macs_1x1']):,} | {int(t['macs_1x32']):,} | "
                 f"{int(t['macs_32x32']):,} |")
    lines += ["", f"- parameters: {int(t['params']):,} ({int(t['params_1bit']):,} binary, "
              f"{int(t['params_32bit']):,} real-valued)",
              f"- memory: {_size(t['memory_bytes'])} (float32 equivalent {_size(t['float32_bytes'])}; "
              f"compression {t['compression']:.2f}x)",
              f"- MACs per image: {int(t['macs']):,} ({int(t['macs_1x1']):,} binary x binary, "
              f"{int(t['macs_1x32']):,} binary weight x real input, {int(t['macs_32x32']):,} real)"]
    return "\n".join(lines) + "\n"
