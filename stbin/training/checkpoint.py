"""Checkpoints: written atomically, loaded with ``weights_only=True``, validated.

A checkpoint is a dict saved with :func:`torch.save`::

    {
      "format": "stbin-checkpoint", "version": 1,
      "model": {"name": "<registered model name>", "kwargs": {...}},   # rebuilds the model
      "model_state": model.state_dict(),
      # optional, written by the trainer:
      "optimizer_state", "scheduler_state", "rng_state", "epoch", "config", "metrics", ...
      "digest": "<SHA-256 of everything above, see payload_digest>",
    }

Only tensors, numbers, strings, lists, tuples, dicts and None may appear, so that the file
loads with ``torch.load(weights_only=True)``: a checkpoint never runs code. Writing goes
to a temporary file in the same folder, is flushed and fsync'ed, then renamed over the
target (``os.replace``), so a run killed mid-write leaves the previous checkpoint intact.

Integrity: ``digest`` is the SHA-256 of the payload (:func:`payload_digest`: every tensor's
dtype, shape and bytes, every key and value, in a canonical order), recomputed on every
load; a file whose content differs from what was written (one flipped bit in a tensor)
raises :class:`CheckpointError`. It guards against accidents (bad disks, truncated copies,
edited files), not against an attacker, who can recompute it. Version-1 files (written
before digests) still load, with an :class:`UnverifiedCheckpointWarning`.
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from stbin._io import atomic_write

CHECKPOINT_GLOB = "checkpoint-epoch*.pt"
CHECKPOINT_FORMAT = "stbin-checkpoint"
CHECKPOINT_VERSION = 2
UNVERIFIED_VERSIONS = (1,)  # read without a digest check (written before digests), with a warning


class CheckpointError(ValueError):
    """A checkpoint file that is corrupted, truncated, foreign or of an unknown version."""


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint of a version without digest: loaded, but its content cannot be verified."""


def _feed(h: "hashlib._Hash", obj: Any) -> None:
    """Feed ``obj`` into ``h`` canonically (type tags, lengths, sorted dict keys)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(b"T" + str(t.dtype).encode() + repr(tuple(t.shape)).encode() + b";")
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        items = sorted(obj.items(), key=lambda kv: (type(kv[0]).__name__, repr(kv[0])))
        h.update(b"D" + struct.pack("<q", len(items)))
        for k, v in items:
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update((b"L" if isinstance(obj, list) else b"U") + struct.pack("<q", len(obj)))
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, str):
        b = obj.encode("utf-8", "surrogatepass")
        h.update(b"S" + struct.pack("<q", len(b)) + b)
    elif isinstance(obj, bool) or obj is None:
        h.update(b"B" + repr(obj).encode())
    elif isinstance(obj, int):
        h.update(b"I" + str(obj).encode() + b";")
    elif isinstance(obj, float):
        h.update(b"F" + obj.hex().encode() + b";")
    else:  # torch.dtype, torch.Size, ... (weights-only types): their repr is their value
        h.update(b"O" + type(obj).__name__.encode() + b":" + repr(obj).encode() + b";")


def payload_digest(payload: dict[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint payload without its ``digest`` key."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "digest"})
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (with ``format``/``version`` added) to ``path``."""
    path = Path(path)
    if "model" not in state or "model_state" not in state:
        raise ValueError("a checkpoint needs 'model' ({'name', 'kwargs'}) and 'model_state'")
    payload = {**{k: v for k, v in state.items() if k not in ("digest", "_path")},
               "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}
    payload["digest"] = payload_digest(payload)
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint (``weights_only=True``); bad files raise :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch's remarks on foreign pickles: the error below says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle/zip errors of truncated, corrupted or foreign files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable stbin checkpoint (corrupted, truncated or "
                              f"foreign file): {reason[:200]}") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an stbin checkpoint (no format marker '{CHECKPOINT_FORMAT}')")
    version = obj.get("version")
    if version in UNVERIFIED_VERSIONS:
        warnings.warn(f"{path} is a version-{version} checkpoint without digest: its content cannot be "
                      "verified (re-save it to add one)", UnverifiedCheckpointWarning, stacklevel=2)
    elif version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {version!r}; this stbin reads versions "
                              f"{', '.join(map(str, (*UNVERIFIED_VERSIONS, CHECKPOINT_VERSION)))}")
    elif obj.get("digest") != payload_digest(obj):
        raise CheckpointError(f"{path} is damaged: its content does not match its SHA-256 digest "
                              "(bit flip, partial copy or edit)")
    model = obj.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or \
            not isinstance(model.get("kwargs", {}), dict) or not isinstance(obj.get("model_state"), dict):
        raise CheckpointError(f"{path} lacks the model description or its state")
    return obj


def check_finite(tensors: dict[str, Any], where: str, key: str) -> None:
    """:class:`CheckpointError` unless every floating-point tensor of ``tensors`` is finite (the
    trainer never writes a NaN or infinite weight: such a file was damaged or crafted).

    >>> check_finite({"w": torch.tensor([1.0, float("nan")])}, "ck.pt", "model_state")
    Traceback (most recent call last):
    ...
    stbin.training.checkpoint.CheckpointError: ck.pt: model_state holds non-finite values (NaN or inf) in w
    """
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{where}: {key} holds non-finite values (NaN or inf) in {name}")


def load_model(path_or_checkpoint: str | os.PathLike | dict[str, Any],
               map_location: str | torch.device | None = "cpu") -> nn.Module:
    """Rebuild the model of a checkpoint (by its registered name and kwargs), load its state, set eval()."""
    from stbin.models import build_model, canonical_model_kwargs

    ckpt = path_or_checkpoint if isinstance(path_or_checkpoint, dict) else load_checkpoint(path_or_checkpoint,
                                                                                            map_location)
    spec = ckpt["model"]
    try:
        model = build_model(spec["name"], **canonical_model_kwargs(spec["name"], spec.get("kwargs", {})))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint's model {spec['name']!r} cannot be built: {e}") from None
    check_finite(ckpt["model_state"], ckpt.get("_path", "the checkpoint"), "model_state")
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as e:  # the details (which tensor, which shapes) follow torch's first line
        reason = " ".join(str(e).split())
        raise CheckpointError(f"the checkpoint's weights do not fit model {spec['name']!r}: "
                              f"{reason[:300]}") from None
    return model.eval()


def check_same_model(ckpt: dict[str, Any], name: str, kwargs: dict[str, Any]) -> None:
    """:class:`CheckpointError` unless the checkpoint's model is ``name`` built with ``kwargs``, both
    compared in their canonical form (:func:`stbin.models.canonical_model_kwargs`: renamed options
    under their current names, builder defaults left out); the message names every differing
    argument with its value in the checkpoint and here.

    >>> ck = {"model": {"name": "mlp", "kwargs": {"hidden": [16], "weight_scale": 0.5}}}
    >>> check_same_model(ck, "mlp", {"hidden": [16], "weight_noise_scale": 0.5})  # the same model
    >>> check_same_model(ck, "mlp", {"hidden": [8], "weight_noise_scale": 0.5})
    Traceback (most recent call last):
    ...
    stbin.training.checkpoint.CheckpointError: the checkpoint holds model 'mlp' with other arguments than this configuration: hidden: [16] in the checkpoint, [8] in this configuration
    """
    from stbin.models.registry import canonical_model_kwargs, same_argument

    spec = ckpt["model"]
    if spec["name"] != name:
        raise CheckpointError(f"the checkpoint holds model {spec['name']!r}, this configuration {name!r}")
    try:
        theirs = canonical_model_kwargs(name, spec.get("kwargs", {}))
    except ValueError as e:
        raise CheckpointError(f"the checkpoint's model arguments: {e}") from None
    ours = canonical_model_kwargs(name, kwargs)
    def shown(d: dict[str, Any], k: str) -> str:
        return repr(d[k]) if k in d else "(not set)"

    diffs = [f"{k}: {shown(theirs, k)} in the checkpoint, {shown(ours, k)} in this configuration"
             for k in sorted(set(theirs) | set(ours))
             if k not in theirs or k not in ours or not same_argument(theirs[k], ours[k])]
    if diffs:
        raise CheckpointError(f"the checkpoint holds model {name!r} with other arguments than this configuration: "
                              + "; ".join(diffs))


def checkpoint_path(out_dir: str | Path, epoch: int) -> Path:
    return Path(out_dir) / f"checkpoint-epoch{epoch:04d}.pt"


def find_checkpoints(path: str | Path) -> list[Path]:
    """Checkpoint files of a run folder, newest first (or ``[path]`` if it is a file)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"nothing to resume at {p} (no such file or folder)")
    return sorted(p.glob(CHECKPOINT_GLOB), reverse=True)


def latest_checkpoint(path: str | Path, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The newest checkpoint of a run folder that loads and validates; damaged newer ones are skipped."""
    cands = find_checkpoints(path)
    errors = []
    for c in cands:
        try:
            ckpt = load_checkpoint(c)
        except CheckpointError as e:
            if Path(path).is_file():
                raise
            errors.append(str(e))
            if warn:
                warn(f"skipping {c.name}: {e}")
            continue
        ckpt["_path"] = str(c)
        return ckpt
    raise FileNotFoundError(f"no complete checkpoint to resume in {path}" + (f" ({len(errors)} damaged)" if errors else ""))
