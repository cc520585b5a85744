"""The training state of a checkpoint: what the trainer stores at an epoch's end and restores
when a run is resumed (optimizer, schedule, random generators, epoch, step, metrics history).

A checkpoint's digest guards against accidents, not against a file written by hand or by
another program (:mod:`stbin.training.checkpoint`). :func:`check_training_state` therefore
checks the layout of everything a resumed run restores *before* the run starts, and
:func:`restore_training_state` turns any state that does not fit the run's model and
optimizer into a one-line :class:`~stbin.training.checkpoint.CheckpointError` naming the
file and the part, instead of a traceback (or, for optimizer moments of the wrong shape, a
crash at the first step; for NaN weights, a divergence after an epoch of work).

>>> check_training_state({"_path": "ck.pt", "epoch": -1, "step": 0})
Traceback (most recent call last):
...
stbin.training.checkpoint.CheckpointError: ck.pt: epoch must be an integer >= 0, got -1
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from stbin.training.checkpoint import CheckpointError, check_finite

__all__ = ["rng_state", "set_rng_state", "check_training_state", "restore_training_state"]


def rng_state(gens: dict[str, torch.Generator]) -> dict[str, Any]:
    """The states of torch's default generator, of ``gens`` and (if initialised) of CUDA's."""
    st: dict[str, Any] = {"torch": torch.get_rng_state(), **{k: g.get_state() for k, g in gens.items()}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any], gens: dict[str, torch.Generator]) -> None:
    """Restore the states of :func:`rng_state` (generators of ``gens`` not in ``st`` are left alone)."""
    torch.set_rng_state(st["torch"])
    for k, g in gens.items():
        if k in st:
            g.set_state(st[k])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _short(v: Any) -> str:
    r = repr(v) if not isinstance(v, torch.Tensor) else f"a {v.dtype} tensor of shape {tuple(v.shape)}"
    return r if len(r) <= 80 else r[:77] + "..."


def _optimizer_layout(v: Any) -> bool:
    return (isinstance(v, dict) and isinstance(v.get("state"), dict) and isinstance(v.get("param_groups"), list)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in v["param_groups"]))


def _byte_tensor(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.dim() == 1


def check_training_state(ckpt: dict[str, Any], bop: bool = False) -> None:
    """:class:`CheckpointError` unless ``ckpt`` holds a training state of the layout the trainer
    writes: ``epoch`` and ``step`` integers >= 0, ``optimizer_state`` (and ``bop_state`` if
    ``bop``) an optimizer state dict, ``scheduler_state`` a dict, ``rng_state`` (optional) a dict
    of byte tensors (``cuda``: a list of them), ``metrics`` (optional) a list of dicts of names to
    numbers or strings.

    Args:
        ckpt: a loaded checkpoint (:func:`stbin.training.checkpoint.load_checkpoint`).
        bop: whether the run uses the Bop optimizer (its state is then required).
    """
    where = ckpt.get("_path", "the checkpoint")

    def bad(key: str, expected: str) -> CheckpointError:
        return CheckpointError(f"{where}: {key} must be {expected}, got {_short(ckpt.get(key))}")

    for key in ("epoch", "step"):
        v = ckpt.get(key)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            raise bad(key, "an integer >= 0")
    for key in ("optimizer_state",) + (("bop_state",) if bop else ()):
        if key in ckpt and not _optimizer_layout(ckpt[key]):
            raise bad(key, "an optimizer state dict ({'state': {...}, 'param_groups': [...]})")
    if "scheduler_state" in ckpt and not isinstance(ckpt["scheduler_state"], dict):
        raise bad("scheduler_state", "a learning-rate scheduler state dict")
    rng = ckpt.get("rng_state")
    if rng is not None or "rng_state" in ckpt:
        ok = isinstance(rng, dict) and _byte_tensor(rng.get("torch")) and all(
            (isinstance(v, (list, tuple)) and all(_byte_tensor(t) for t in v)) if k == "cuda" else _byte_tensor(v)
            for k, v in rng.items())
        if not ok:
            raise bad("rng_state", "a dict of generator states (1-D uint8 tensors, 'torch' among them)")
    metrics = ckpt.get("metrics", [])
    scalar = (int, float, str, bool, type(None))  # what metrics.jsonl / metrics.csv can hold
    if not (isinstance(metrics, list) and all(isinstance(r, dict) and all(isinstance(k, str) and isinstance(v, scalar)
                                                                           for k, v in r.items())
                                              for r in metrics)):
        raise bad("metrics", "a list of per-epoch records (dicts of names to numbers or strings)")


def _check_moments(opt: torch.optim.Optimizer, where: str, key: str) -> None:
    """Every non-scalar tensor of the loaded optimizer state has its parameter's shape and is finite."""
    for i, (p, state) in enumerate(opt.state.items()):
        for name, t in state.items():
            if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape != p.shape:
                raise CheckpointError(f"{where}: {key} holds {name} of shape {tuple(t.shape)} for a parameter of "
                                      f"shape {tuple(p.shape)}")
        check_finite({f"{name} of parameter {i}": t for name, t in state.items()}, where, key)


def restore_training_state(ckpt: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer,
                           bop: torch.optim.Optimizer | None, sched: Any,
                           gens: dict[str, torch.Generator]) -> tuple[int, int, list[dict[str, Any]]]:
    """Load the model weights, the optimizer (and Bop) state, the schedule's position and the
    random generators of ``ckpt`` (checked by :func:`check_training_state` first); returns the
    epoch, the step and the metrics history. The schedule keeps this run's shape (e.g. more epochs).

    Raises:
        CheckpointError: a part that does not fit ``model`` / ``opt`` (names the file and the part).
    """
    check_training_state(ckpt, bop=bop is not None)
    where = ckpt.get("_path", "the checkpoint")
    check_finite(ckpt["model_state"], where, "model_state")
    parts: list[tuple[str, Any]] = [("model_state", lambda: model.load_state_dict(ckpt["model_state"])),
                                    ("optimizer_state", lambda: opt.load_state_dict(ckpt["optimizer_state"]))]
    if bop is not None:
        parts.append(("bop_state", lambda: bop.load_state_dict(ckpt["bop_state"])))
    fresh = dict(sched.lr_lambdas[0].__dict__)  # this config's schedule (e.g. more epochs)

    def schedule() -> None:
        sched.load_state_dict(ckpt["scheduler_state"])
        sched.lr_lambdas[0].__dict__.update(fresh)

    parts.append(("scheduler_state", schedule))
    if "rng_state" in ckpt:
        parts.append(("rng_state", lambda: set_rng_state(ckpt["rng_state"], gens)))
    for key, load in parts:
        if key not in ckpt:
            raise CheckpointError(f"{where} has no {key}; it cannot be resumed")
        try:
            load()
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            reason = " ".join(str(e).split())
            raise CheckpointError(f"{where}: its {key} does not fit this run: "
                                  f"{reason[:300] or type(e).__name__}") from None
    _check_moments(opt, where, "optimizer_state")
    if bop is not None:
        _check_moments(bop, where, "bop_state")
    return ckpt["epoch"], ckpt["step"], list(ckpt.get("metrics", []))
