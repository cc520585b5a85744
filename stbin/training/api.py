"""The public training API: ``stbin.train(config)`` -> :class:`TrainResult`.

``config`` is a :class:`~stbin.training.config.Config` (built and checked in Python), a dict
read like a TOML config file (``{"preset": ..., "data": {...}, "model": {...}, ...}``), or the
path of a TOML file. ``stbin train`` is a thin layer over this function.

>>> import stbin, tempfile
>>> from pathlib import Path
>>> out = tempfile.mkdtemp()
>>> r = stbin.train({"preset": "tiny", "out_dir": out, "device": "cpu",
...                  "data": {"options": {"n_train": 64, "n_test": 32}},
...                  "train": {"epochs": 1, "batch_size": 32}, "eval": {"ensemble": 0}}, log=None)
>>> sorted(r.test), r.out_dir == Path(out), r.model.training, r.metrics["epoch"]
(['mean', 'mode'], True, False, 1)
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from stbin.training.config import Config, build_config, from_dict, merge, parse_override


@dataclass
class TrainResult:
    """What a run produced (files are written by rank 0 only; other ranks get no report)."""

    out_dir: Path
    model: nn.Module                       # the trained model, in eval() mode, on the training device
    test: dict[str, float]                 # final test accuracy (%) by evaluation mode (+ "ensemble")
    metrics: dict[str, Any]                # the last epoch's record (losses, accuracies, lr, times)
    history: list[dict[str, Any]]          # every epoch's record (= metrics.jsonl)
    config: Config
    checkpoint: Path | None = None
    report: Path | None = None
    time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        """The run folder (= ``out_dir``)."""
        return self.out_dir


def to_config(config: Config | dict[str, Any] | str | os.PathLike | None = None,
              overrides: Sequence[str] | dict[str, Any] = ()) -> Config:
    """A validated :class:`Config` from a Config, a dict (read like a TOML file: an optional
    ``preset`` first, default ``sbn_mnist``), a TOML path or None (the default preset), then
    ``overrides`` (``"section.key=value"`` strings, or a nested dict)."""
    if config is None or isinstance(config, (str, os.PathLike)):
        cfg = build_config(path=config)
    elif isinstance(config, Config):
        cfg = copy.deepcopy(config)
    elif isinstance(config, dict):
        from stbin.training.presets import DEFAULT_PRESET, get_preset

        preset = config.get("preset") or DEFAULT_PRESET
        if not isinstance(preset, str):
            raise ValueError(f"preset must be a preset name, got {preset!r}")
        cfg = merge(get_preset(preset), {k: v for k, v in config.items() if k != "preset"}, "config dict")
    else:
        raise ValueError(f"config must be a stbin Config, a dict or the path of a TOML file, got "
                         f"{type(config).__name__}")
    return _apply(cfg, overrides).validate()


def _apply(cfg: Config, overrides: Sequence[str] | dict[str, Any]) -> Config:
    if isinstance(overrides, dict):
        return merge(cfg, overrides, "overrides")
    if isinstance(overrides, str):
        overrides = [overrides]
    for item in overrides:
        cfg = merge(cfg, parse_override(item), "override")
    return cfg


def resume_point(target: str | os.PathLike, overrides: Sequence[str] | dict[str, Any] = (),
                 warn: Callable[[str], None] | None = None,
                 check: Callable[[dict[str, Any]], None] | None = None) -> tuple[Config, dict[str, Any]]:
    """The configuration stored in the newest complete checkpoint of ``target`` with ``overrides``
    applied, and that checkpoint.

    Args:
        target: a run folder (its newest checkpoint that loads; the run's ``out_dir`` becomes this
            folder) or a checkpoint file.
        overrides: ``"section.key=value"`` strings (or a nested dict) applied over the stored configuration.
        warn: called with a line for each damaged newer checkpoint that is skipped.
        check: called with the checkpoint before the overrides are applied (e.g. to refuse
            overrides that would change the run; ``stbin train --resume`` does).

    Raises:
        ValueError: the checkpoint has no training configuration, or the result is not valid.
        FileNotFoundError: nothing to resume at ``target``.
    """
    from stbin.training.trainer import latest_checkpoint

    ckpt = latest_checkpoint(target, warn=warn)
    if not isinstance(ckpt.get("config"), dict):
        raise ValueError(f"{ckpt['_path']} has no training configuration; it cannot be resumed")
    if check is not None:
        check(ckpt)
    cfg = _apply(from_dict(ckpt["config"]), overrides)
    if Path(target).is_dir():
        cfg.out_dir = str(target)
    return cfg.validate(), ckpt


#: the switches this layer acts on itself (before the trainer runs), checked by their rules in
#: :data:`stbin.training.validation.RULES`
OPTION_KEYS = ("train.deterministic", "train.sync_batchnorm", "log.tensorboard")


def check_options(cfg: Config) -> None:
    """Check the switches of :data:`OPTION_KEYS` by their :data:`~stbin.training.validation.RULES`
    and the data source's options (one ValueError naming key and value), also for a
    :class:`Config` changed after it was validated.

    >>> cfg = to_config({"preset": "tiny"})
    >>> cfg.train.deterministic = "yes"
    >>> check_options(cfg)
    Traceback (most recent call last):
    ...
    stbin.training.validation.ConfigError: train.deterministic must be true or false, got 'yes'
    """
    from stbin.training.data_source import check_data_options
    from stbin.training.validation import check_key

    for key in OPTION_KEYS:
        section, name = key.split(".")
        check_key(key, getattr(getattr(cfg, section), name))
    check_data_options(cfg)


@contextlib.contextmanager
def deterministic_algorithms(on: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` (and deterministic cuDNN) inside, restored after."""
    if not on:
        yield
        return
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev_cudnn


def train(config: Config | dict[str, Any] | str | os.PathLike | None = None, *,
          overrides: Sequence[str] | dict[str, Any] = (),
          resume: bool | str | os.PathLike | dict[str, Any] | None = None,
          log: Callable[[str], None] | None = print, progress: bool | None = False,
          loggers: Sequence[Any] = (), plots: bool | None = None) -> TrainResult:
    """Train ``config`` and return a :class:`TrainResult`.

    Args:
        config: a :class:`Config`, a dict read like a TOML config, a TOML path, or None (default preset).
        overrides: ``"section.key=value"`` strings (or a nested dict) applied over ``config``.
        resume: continue the newest complete checkpoint of a run folder or checkpoint file
            (``True``: the config's ``out_dir``); the run then has the checkpoint's configuration
            plus ``overrides`` (e.g. ``{"train": {"epochs": 6}}`` to extend it). A checkpoint dict
            from :func:`resume_point` continues with ``config`` as given.
        log: where progress lines go (None: nowhere).
        progress: show a progress bar (None: only on a terminal).
        loggers: extra :class:`stbin.training.loggers.Logger` objects (W&B, MLflow, ...).
        plots: curves in the report (True: matplotlib required, checked before training;
            False: text only; None: drawn if matplotlib is installed).

    Errors in the user's input (values, files, plugins, missing extras) raise ``ValueError`` or
    ``OSError`` with a one-line message before training starts.
    """
    from stbin.training import trainer

    ckpt = None
    if isinstance(resume, dict):  # a checkpoint already loaded (by resume_point): config as given
        cfg, ckpt = to_config(config, overrides), resume
    elif resume is not None and resume is not False:
        target = to_config(config).out_dir if resume is True else resume
        cfg, ckpt = resume_point(target, overrides)
    else:
        cfg = to_config(config, overrides)
    check_options(cfg)
    if plots:
        from stbin.reporting import require_matplotlib
        require_matplotlib("the curves of the training report")
    if cfg.log.tensorboard:
        from stbin.training.loggers import require_tensorboard
        require_tensorboard()  # a missing extra is reported before any work
    say = log if log is not None else (lambda s: None)
    kw: dict[str, Any] = {"loggers": list(loggers)} if loggers else {}
    if plots is not None:
        kw["plots"] = plots
    with deterministic_algorithms(cfg.train.deterministic):
        r = trainer.train(cfg, resume=ckpt, log=say, progress=progress, **kw)
    model = r.get("model")
    if model is not None:
        model.eval()
    history = list(r.get("history", []))
    return TrainResult(out_dir=Path(r["out_dir"]), model=model, test=dict(r.get("test", {})),
                       metrics=dict(history[-1]) if history else {}, history=history, config=cfg,
                       checkpoint=Path(r["checkpoint"]) if r.get("checkpoint") else None,
                       report=Path(r["report"]) if r.get("report") else None, time_s=float(r.get("time_s", 0.0)),
                       extra={k: v for k, v in r.items() if k not in ("model", "history", "test", "out_dir",
                                                                        "checkpoint", "report", "time_s")})


__all__ = ["train", "TrainResult", "to_config", "resume_point", "deterministic_algorithms", "check_options"]
