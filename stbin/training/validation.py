"""Validation of a training config, key by key, by what each value means.

:data:`RULES` maps every config key (``section.key`` or a top-level key) to a check that
returns the value (possibly normalised, e.g. a list to a tuple) or raises
:class:`ConfigError` with a message naming the key, the value and what is expected:

>>> from stbin.training.validation import check_key
>>> check_key("optim.betas", [0.9, 0.999])
(0.9, 0.999)
>>> check_key("train.threads", -1)
Traceback (most recent call last):
...
stbin.training.validation.ConfigError: train.threads must be an integer in [0, 4096] (0: torch's default), got -1

A new config key needs its rule here (a test checks that every key has one); the model's
arguments are checked against the model's signature (:mod:`stbin.training.model_args`).
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

from stbin._validation import MAX_THREADS

LR_MAX = 10.0  # a learning rate above this is a typo (1e308, inf), not an experiment
# Latent weights under SGD with mirror-descent gradients need far larger steps (the sbn-study recipe
# uses lr 0.01 x 30000 = 300); the latent learning rate lr x latent_lr_scale is bounded separately.
LATENT_LR_MAX = 1e4


class ConfigError(ValueError):
    """A config value that is of the wrong type or outside its meaningful range."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fail(key: str, expected: str, v: Any) -> ConfigError:
    return ConfigError(f"{key} must be {expected}, got {v!r}")


def integer(lo: int, hi: int | None = None, optional: bool = False, note: str = "") -> Callable[[str, Any], Any]:
    def check(key: str, v: Any) -> Any:
        if optional and v is None:
            return v
        if not _is_int(v) or v < lo or (hi is not None and v > hi):
            rng = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
            raise _fail(key, rng + (" or unset (none)" if optional else "") + note, v)
        return v
    return check


def real(lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = False,
         optional: bool = False) -> Callable[[str, Any], Any]:
    def check(key: str, v: Any) -> Any:
        if optional and v is None:
            return v
        ok = _is_real(v) and math.isfinite(v) and (v > lo if lo_open else v >= lo) and \
            (v < hi if hi_open else v <= hi)
        if not ok:
            rng = ("(" if lo_open else "[") + f"{lo:g}, {hi:g}" + (")" if hi_open or hi == math.inf else "]")
            raise _fail(key, f"a finite number in {rng}" + (" or unset (none)" if optional else ""), v)
        return float(v)
    return check


def boolean(optional: bool = False) -> Callable[[str, Any], Any]:
    def check(key: str, v: Any) -> Any:
        if (optional and v is None) or isinstance(v, bool):
            return v
        raise _fail(key, "true or false" + (" or unset (none)" if optional else ""), v)
    return check


def string(optional: bool = False, choices: tuple[str, ...] | None = None) -> Callable[[str, Any], Any]:
    def check(key: str, v: Any) -> Any:
        if optional and v is None:
            return v
        if not isinstance(v, str) or not v.strip():
            raise _fail(key, "a non-empty string" + (" or unset (none)" if optional else ""), v)
        if choices is not None and v not in choices:
            from stbin._registry import unknown_name_message
            raise ConfigError(f"{key}: " + unknown_name_message(key.rsplit(".", 1)[-1], v, choices))
        return v
    return check


def _betas(key: str, v: Any) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_is_real(b) and math.isfinite(b) and 0 <= b < 1
                                                                 for b in v):
        raise _fail(key, "a pair [beta1, beta2] of numbers in [0, 1)", v)
    return (float(v[0]), float(v[1]))


def _modes(key: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)):
        raise _fail(key, 'a list of evaluation modes such as ["mode", "mean"]', v)
    for m in v:
        string(choices=("mode", "mean", "sample"))(key, m)
    if len(set(v)) != len(v):
        raise _fail(key, "a list without repeated modes", v)
    return tuple(v)


def _device(key: str, v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", v):
        raise _fail(key, "auto, cpu, cuda or cuda:N", v)
    return v


def _options(key: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _fail(key, "a table of loader options, e.g. {n_train=512}", v)
    return v


def _preset(key: str, v: Any) -> Any:
    from stbin.training.preset_table import PRESETS

    if v is not None and v not in PRESETS:
        from stbin._registry import unknown_name_message
        raise ConfigError(f"{key}: " + unknown_name_message("preset", v, sorted(PRESETS)))
    return v


def _dataset(key: str, v: Any) -> str:
    from stbin.data.datasets import DATASETS

    if not isinstance(v, str):
        raise _fail(key, "a dataset name", v)
    from stbin.plugins import is_plugin

    if is_plugin(v):  # "package.module:factory", checked when it is imported (stbin.plugins)
        return v
    from stbin.data.streaming import STREAMING

    if v not in DATASETS and v not in STREAMING:
        from stbin._registry import unknown_name_message
        raise ConfigError(f"{key}: " + unknown_name_message("dataset", v, sorted(DATASETS.names() + STREAMING.names())))
    return v


# Every key of the config, with its check (tested to cover all of stbin.training.config.all_keys()).
RULES: dict[str, Callable[[str, Any], Any]] = {
    "seed": integer(0, 2**63 - 1),
    "device": _device,
    "out_dir": string(),
    "preset": _preset,
    "init_from": string(optional=True),
    "data.name": _dataset,
    "data.root": string(optional=True),
    "data.val_size": integer(0),
    "data.train_limit": integer(1, optional=True),
    "data.test_limit": integer(1, optional=True),
    "data.crop_padding": integer(0, 64, optional=True),
    "data.hflip": boolean(optional=True),
    "data.options": _options,
    "data.workers": integer(0, 256),
    "data.pin_memory": boolean(optional=True),
    "data.stream": boolean(),
    "optim.name": string(choices=("adam", "adamw", "sgd", "bop")),
    "optim.lr": real(0, LR_MAX, lo_open=True),
    "optim.momentum": real(0, 1, hi_open=True),
    "optim.nesterov": boolean(),
    "optim.betas": _betas,
    "optim.weight_decay": real(0, 1),
    "optim.latent_weight_decay": real(0, 1),
    "optim.latent": string(choices=("mirror", "st")),
    "optim.projection": string(optional=True, choices=("auto",)),
    "optim.clip": real(0, lo_open=True, optional=True),
    "optim.latent_lr_scale": real(0, 1e6, lo_open=True),
    "optim.bop_threshold": real(0, 1),
    "optim.bop_gamma": real(0, 1, lo_open=True),
    "schedule.name": string(choices=("constant", "cosine", "step", "linear")),
    "schedule.warmup_epochs": real(0),
    "schedule.min_lr": real(0),
    "schedule.step_size": integer(1),
    "schedule.gamma": real(0, 1, lo_open=True),
    "train.epochs": integer(1),
    "train.batch_size": integer(1),
    "train.eval_batch_size": integer(1),
    "train.amp": boolean(),
    "train.progress": boolean(optional=True),
    "train.keep_checkpoints": integer(1),
    "train.threads": integer(0, MAX_THREADS, note=" (0: torch's default)"),
    "train.deterministic": boolean(),
    "train.sync_batchnorm": boolean(),
    "log.tensorboard": boolean(),
    "log.gradient_quality_every": integer(0, note=" (0: off)"),
    "log.gradient_quality_samples": integer(10, 10_000_000),
    "eval.ensemble": integer(0, 10_000),
    "eval.modes": _modes,
}


def check_key(key: str, value: Any) -> Any:
    """The checked (normalised) ``value`` of config key ``key``; :class:`ConfigError` if it is not valid."""
    return RULES[key](key, value)


def validate_config(cfg: Any) -> None:
    """Check every key of ``cfg`` (a :class:`~stbin.training.config.Config`) and the combinations."""
    for key, rule in RULES.items():
        sec, _, name = key.rpartition(".")
        holder = getattr(cfg, sec) if sec else cfg
        setattr(holder, name, rule(key, getattr(holder, name)))
    if not isinstance(cfg.model, dict) or not isinstance(cfg.model.get("name"), str):
        raise ConfigError(f"model.name must be a model name, got {cfg.model.get('name') if isinstance(cfg.model, dict) else cfg.model!r}")
    o, s = cfg.optim, cfg.schedule
    if s.min_lr > o.lr:
        raise ConfigError(f"schedule.min_lr must be <= optim.lr ({o.lr!r}), got {s.min_lr!r}")
    if s.warmup_epochs > cfg.train.epochs:
        raise ConfigError(f"schedule.warmup_epochs must be <= train.epochs ({cfg.train.epochs}), "
                          f"got {s.warmup_epochs!r}")
    if o.lr * o.latent_lr_scale > LATENT_LR_MAX:
        raise ConfigError(f"optim.latent_lr_scale: the latent learning rate optim.lr x optim.latent_lr_scale "
                          f"must be <= {LATENT_LR_MAX:g}, got {o.lr!r} x {o.latent_lr_scale!r}")
    if o.name == "sgd" and o.nesterov and o.momentum <= 0:
        raise ConfigError("optim.nesterov = true needs optim.momentum > 0, got 0")
    if not cfg.eval.modes and not cfg.eval.ensemble:
        raise ConfigError("eval.modes is empty and eval.ensemble is 0: nothing would be evaluated")


__all__ = ["ConfigError", "RULES", "check_key", "validate_config", "LR_MAX", "LATENT_LR_MAX"]
