"""Gradient quality of a training run: checkpoints and a fixed batch in, per-layer figures out.

The computation is :func:`stbin.analysis.gradient_quality`; this module supplies what it
needs from training: the model of a checkpoint, a fixed batch (the first ``batch`` test
images of the run's dataset, normalised as in training), the cross-entropy loss, and
the flat records the ``log.gradient_quality_every`` hook adds to ``metrics.jsonl``.

>>> sorted(flat_record_keys(["st"], ["0.weight"]))[:2]
['gq/st/0.weight/cosine', 'gq/st/0.weight/cosine_hw']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: what the training hook measures (a budget that keeps an epoch's overhead bounded)
HOOK_METHODS = ("st", "htanh", "tanh", "identity")
HOOK_TOLERANCE = 0.05
HOOK_MAX_SAMPLES = 200


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy, the training loss."""
    return F.cross_entropy(output.float(), target, reduction="none")


def load_model(ckpt: dict[str, Any]) -> nn.Module:
    """The model of a loaded checkpoint, with its weights (CPU, evaluation mode):
    :func:`stbin.training.checkpoint.load_model`."""
    from stbin.training.checkpoint import load_model as load
    return load(ckpt)


def fixed_batch(ckpt: dict[str, Any], batch: int, data_root: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``batch`` test images of the checkpoint's dataset, normalised as in training."""
    from stbin.data.datasets import load_dataset
    data_cfg = (ckpt.get("config") or {}).get("data") or {}
    name = data_cfg.get("name")
    if not isinstance(name, str):
        raise ValueError("the checkpoint has no data.name in its config; it was not written by stbin train")
    root = data_root if data_root is not None else data_cfg.get("root")
    data = load_dataset(name, root=root, **(data_cfg.get("options") or {}))
    if batch > len(data.x_test):
        raise ValueError(f"--batch {batch} is larger than the {len(data.x_test)} test images of {name}")
    return data.prepare(data.x_test[:batch]), data.y_test[:batch]


def load_model_and_batch(path: str | Path, batch: int = 100, data_root: str | None = None
                         ) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Model and fixed batch of a checkpoint file."""
    from stbin.training.checkpoint import load_checkpoint
    ckpt = load_checkpoint(path)
    x, y = fixed_batch(ckpt, batch, data_root)
    return load_model(ckpt), x, y


def flat_record_keys(methods: Sequence[str], tensors: Sequence[str]) -> list[str]:
    keys = []
    for m in methods:
        for t in tensors:
            for k in ("cosine", "rel_bias"):
                keys += [f"gq/{m}/{t}/{k}", f"gq/{m}/{t}/{k}_hw"]
    return keys


def flat_record(result: Any) -> dict[str, float]:
    """``gq/<method>/<tensor>/<metric>`` -> value for the cosine and relative bias (and their half-widths)."""
    out: dict[str, float] = {"gq/n_samples": result.n_samples, "gq/converged": bool(result.converged)}
    for r in result.rows:
        for k in ("cosine", "rel_bias"):
            out[f"gq/{r['method']}/{r['tensor']}/{k}"] = r[k]
            out[f"gq/{r['method']}/{r['tensor']}/{k}_hw"] = r[k + "_hw"]
    return out


def log_gradient_quality(model: nn.Module, data: Any, batch: int = 100, seed: int = 0,
                         max_samples: int = HOOK_MAX_SAMPLES) -> dict[str, float]:
    """The ``log.gradient_quality_every`` hook: gradient quality of ``model`` on the first ``batch``
    test images of ``data`` (a data source of :mod:`stbin.training.data_source`) (ST and the deterministic proxies, tolerance 0.05, at most ``max_samples``
    reference samples), as flat metrics (``gq/...``) for the epoch's record in ``metrics.jsonl``.
    Runs on a CPU copy; the model is untouched. (The trainer has no TensorBoard writer; the
    figures go wherever the epoch's metrics go.)"""
    import copy

    from stbin.analysis import gradient_quality
    xb, yb = next(iter(data.eval_batches("test", batch)))  # the first test images, prepared (any data source)
    x, y = xb.cpu(), yb.cpu()
    m = copy.deepcopy(model).cpu().float()
    res = gradient_quality(m, cross_entropy, x, y, methods=HOOK_METHODS, tolerance=HOOK_TOLERANCE,
                           generator=torch.Generator().manual_seed(seed), max_samples=max_samples,
                           min_samples=min(20, max_samples), groups=min(10, max_samples))
    return flat_record(res)
