"""Checkpoints: written atomically, loaded with ``weights_only=True``, validated.

A checkpoint is a dict saved with :func:`torch.save`::

    {
      "format": "stbin-checkpoint", "version": 1,
      "model": {"name": "<registered model name>", "kwargs": {...}},   # rebuilds the model
      "model_state": model.state_dict(),
      # optional, written by the trainer:
      "optimizer_state", "scheduler_state", "rng_state", "epoch", "config", "metrics", ...
    }

Only tensors, numbers, strings, lists, tuples, dicts and None may appear, so that the file
loads with ``torch.load(weights_only=True)``: a checkpoint never runs code. Writing goes
to a temporary file in the same folder, is flushed and fsync'ed, then renamed over the
target (``os.replace``), so a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stbin._io import atomic_write

CHECKPOINT_FORMAT = "stbin-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is corrupted, truncated, foreign or of an unknown version."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (with ``format``/``version`` added) to ``path``."""
    path = Path(path)
    if "model" not in state or "model_state" not in state:
        raise ValueError("a checkpoint needs 'model' ({'name', 'kwargs'}) and 'model_state'")
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint (``weights_only=True``); bad files raise :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle/zip errors of truncated, corrupted or foreign files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable stbin checkpoint (corrupted, truncated or "
                              f"foreign file): {reason[:200]}") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an stbin checkpoint (no format marker '{CHECKPOINT_FORMAT}')")
    version = obj.get("version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {version!r}; this stbin reads version "
                              f"{CHECKPOINT_VERSION}")
    model = obj.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or "model_state" not in obj:
        raise CheckpointError(f"{path} lacks the model description or its state")
    return obj


def load_model(path_or_checkpoint: str | os.PathLike | dict[str, Any],
               map_location: str | torch.device | None = "cpu") -> nn.Module:
    """Rebuild the model of a checkpoint (by its registered name and kwargs), load its state, set eval()."""
    from stbin.models import build_model

    ckpt = path_or_checkpoint if isinstance(path_or_checkpoint, dict) else load_checkpoint(path_or_checkpoint,
                                                                                            map_location)
    spec = ckpt["model"]
    model = build_model(spec["name"], **dict(spec.get("kwargs", {})))
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as e:
        raise CheckpointError(f"the checkpoint's weights do not fit model {spec['name']!r}: "
                              f"{str(e).splitlines()[0]}") from None
    return model.eval()
