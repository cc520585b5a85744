r"""Load a float checkpoint into a binarized model: :func:`load_float_state_dict`.

A float model's ``state_dict`` names its layer weights ``<layer>.weight``; a binary-weight
layer stores ``<layer>.latent_weight`` instead. :func:`load_float_state_dict` maps each
float weight onto the latent weight of the binary layer at the same name through the
transfer of :mod:`stbin.nn.transfer` (Bernoulli: :math:`\theta = s_w F^{-1}((1+W/c)/2)`;
sign: :math:`\theta = W`), and copies every other tensor whose name and shape match
(real layers, biases, batch-norm parameters and statistics, tensors of an already binary
checkpoint). It returns a :class:`FloatLoadReport` of what it did.

>>> import torch
>>> from torch import nn
>>> from stbin.nn import binarize
>>> float_net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
>>> net = binarize(float_net, torch.zeros(1, 4), weights="sign", transfer=False)
>>> report = load_float_state_dict(net, float_net.state_dict())
>>> report.transferred
['2.weight -> 2.latent_weight']
>>> torch.equal(net[2].latent_weight, float_net[2].weight)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from stbin.nn.binary import BinaryWeightLayer
from stbin.nn.transfer import DEFAULT_QUANTILE


@dataclass
class FloatLoadReport:
    """What :func:`load_float_state_dict` did (lists of state-dict keys).

    Attributes:
        transferred: float weights mapped onto latent weights (``"a.weight -> a.latent_weight"``).
        copied: tensors copied as they are (same name and shape).
        missing: tensors of the model the state dict does not provide (left as they were).
        unexpected: entries of the state dict the model has no place for.
        mismatched: entries whose shape differs from the model's (``"key: (shape) vs (shape)"``).
    """

    transferred: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def n_loaded(self) -> int:
        return len(self.transferred) + len(self.copied)

    def __str__(self) -> str:
        parts = [f"{len(self.transferred)} float weights transferred to latent weights",
                 f"{len(self.copied)} tensors copied"]
        for what in ("missing", "unexpected", "mismatched"):
            keys = getattr(self, what)
            if keys:
                parts.append(f"{len(keys)} {what}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
        return "; ".join(parts)


@torch.no_grad()
def load_float_state_dict(model: nn.Module, state_dict: Mapping[str, object], *, strict: bool = False,
                          quantile: float = DEFAULT_QUANTILE) -> FloatLoadReport:
    """Map ``state_dict`` (of a float or binary model) onto ``model``; return the report.

    Args:
        model: a model containing :class:`stbin.nn.BinaryWeightLayer` s (e.g. from
            :func:`stbin.nn.binarize`).
        state_dict: a float model's (or a binary model's) state dict.
        strict: raise ValueError if anything is missing, unexpected or mismatched.
        quantile: the per-channel quantile of |W| of the Bernoulli transfer.
    """
    own = model.state_dict()
    report = FloatLoadReport()
    used: set[str] = set()
    binary = {name: m for name, m in model.named_modules() if isinstance(m, BinaryWeightLayer)}
    for name, layer in binary.items():
        p = f"{name}." if name else ""
        src, dst = p + "weight", p + "latent_weight"
        if dst in state_dict or src not in state_dict:
            continue
        w = state_dict[src]
        used.add(src)
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != tuple(layer.latent_weight.shape):
            shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            report.mismatched.append(f"{src}: {shape} vs {tuple(layer.latent_weight.shape)}")
            continue
        layer.load_float_weight(w.to(layer.latent_weight.device), quantile)
        report.transferred.append(f"{src} -> {dst}")
    loaded = {dst.split(" -> ")[1] for dst in report.transferred}
    # learned channel scales are set by the transfer when their layer's weight was transferred
    loaded |= {(f"{n}." if n else "") + "learned_channel_scale" for n, m in binary.items()
               if m.learned_channel_scale is not None and (f"{n}." if n else "") + "latent_weight" in loaded}
    take = {}
    for k, v in state_dict.items():
        if k in used:
            continue
        target = k
        if k not in own and k.endswith("weight_scale"):  # checkpoints from before the rename
            target = k[: -len("weight_scale")] + "learned_channel_scale"
        if target not in own:
            report.unexpected.append(k)
            continue
        if k.endswith("_extra_state"):
            continue  # module settings (bits, STE) stay this model's
        if not isinstance(v, torch.Tensor) or v.shape != own[target].shape:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            report.mismatched.append(f"{k}: {shape} vs {tuple(own[target].shape)}")
            continue
        take[target] = v
        report.copied.append(k)
    model.load_state_dict(take, strict=False)
    report.missing = [k for k in own if k not in take and k not in loaded and not k.endswith("_extra_state")]
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise ValueError(f"load_float_state_dict: {report}")
    return report
