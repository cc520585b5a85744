"""Training configuration: dataclasses, TOML files, presets and ``section.key=value`` overrides.

A config is built in layers: a named preset (:mod:`stbin.training.presets`), then a TOML
file, then command-line overrides. Unknown sections or keys raise ValueError naming the
nearest valid key (``unknown key 'optim.lrr' (did you mean 'optim.lr'?)``). The ``[model]``
section holds ``name`` plus the model's keyword arguments (checked when it is built).

Example TOML::

    preset = "sbn_mnist"          # optional: start from a preset
    seed = 1
    out_dir = "runs/my-run"

    [data]
    name = "fashion_mnist"

    [model]
    name = "mlp"
    hidden = [1024, 1024]
    activation = "stochastic"
    noise = "logistic"
    weights = "bernoulli"

    [optim]
    name = "adam"
    lr = 0.01

    [train]
    epochs = 10
"""

from __future__ import annotations

import copy
import difflib
import json
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from stbin._registry import unknown_name_message
from stbin.training.preset_table import DEFAULT_PRESET, PRESETS


@dataclass
class DataConfig:
    name: str = "mnist"
    root: str | None = None          # folder of the data files (IDX, cifar-10-batches-py)
    val_size: int = 0                # training images held out for validation
    train_limit: int | None = None   # use only the first N training images
    test_limit: int | None = None
    crop_padding: int | None = None  # random crop with this padding (None: the dataset's default)
    hflip: bool | None = None        # random horizontal flips (None: the dataset's default)
    options: dict[str, Any] = field(default_factory=dict)  # extra loader arguments (synthetic sizes)
    # [streaming] read through a DataLoader (stbin.training.data_source)
    workers: int = 0                 # DataLoader worker processes (streamed datasets)
    pin_memory: bool | None = None   # pinned host memory (None: on CUDA)
    stream: bool = False             # stream an in-memory dataset item by item (comparisons)


@dataclass
class OptimConfig:
    name: str = "adam"               # adam, adamw, sgd, bop (Bop on binary weights + Adam on the rest)
    lr: float = 1e-3
    momentum: float = 0.9            # sgd
    nesterov: bool = False           # sgd
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0        # on real-valued parameters
    latent_weight_decay: float = 0.0  # on latent weights (pulls P(w=+1) toward 1/2)
    latent: str = "mirror"           # latent-weight gradient: mirror (dL/dw) or st (weight ST factor)
    projection: str | None = "auto"  # auto: clip uniform-noise latents to [-s_w, s_w]; None: never
    clip: float | None = None        # clip every latent weight to [-clip, clip] (BinaryNet)
    latent_lr_scale: float = 1.0     # learning-rate multiplier of the latent weights
    bop_threshold: float = 1e-8      # bop: flip threshold tau
    bop_gamma: float = 1e-4          # bop: adaptivity rate gamma


@dataclass
class ScheduleConfig:
    name: str = "cosine"             # constant, cosine, step, linear
    warmup_epochs: float = 0.0
    min_lr: float = 0.0              # cosine / linear floor (absolute)
    step_size: int = 30              # step: epochs between decays
    gamma: float = 0.1               # step: decay factor


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 100
    eval_batch_size: int = 1000
    amp: bool = False                # bfloat16 autocast on CUDA (ignored on CPU)
    progress: bool | None = None     # progress bar: None = only on a terminal
    keep_checkpoints: int = 2        # per-epoch checkpoints kept
    threads: int = 1                 # torch CPU threads (0: torch's default); 1 is fastest for small
                                     # nets and robust on busy cores
    deterministic: bool = False      # torch.use_deterministic_algorithms(True) during the run
    sync_batchnorm: bool = False     # DDP: batch norms use the statistics of the global batch


@dataclass
class EvalConfig:
    ensemble: int = 10               # K of the K-sample ensemble at the end (0: skip)
    modes: tuple[str, ...] = ("mode", "mean")


@dataclass
class LogConfig:
    tensorboard: bool = False        # TensorBoard event files in OUT/tensorboard (extra 'tensorboard')
    gradient_quality_every: int = 0      # every N epochs: per-layer gradient quality into the metrics (0: off)
    gradient_quality_samples: int = 200  # its budget of reference samples (stbin.training.gradient_quality)


@dataclass
class Config:
    seed: int = 0
    device: str = "auto"             # auto, cpu, cuda, cuda:N
    out_dir: str = "runs/train"
    preset: str | None = None
    init_from: str | None = None     # initial weights: a run folder or checkpoint (matching tensors only)
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"name": "sbn_mlp"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples), storable in a weights-only checkpoint and as TOML."""
        return _plain(asdict(self))

    def validate(self) -> "Config":
        """Check every value by its meaning (:mod:`stbin.training.validation`); returns ``self``."""
        from stbin.training.validation import validate_config

        validate_config(self)
        return self


SECTIONS = {"data": DataConfig, "optim": OptimConfig, "schedule": ScheduleConfig, "train": TrainConfig,
            "eval": EvalConfig, "log": LogConfig}
TOP_LEVEL = ("seed", "device", "out_dir", "preset", "init_from")


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _did_you_mean(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown config key {key!r}{hint}; valid: {', '.join(sorted(valid))}"


def all_keys() -> list[str]:
    keys = list(TOP_LEVEL) + ["model.name"]
    for sec, cls in SECTIONS.items():
        keys += [f"{sec}.{f.name}" for f in fields(cls)]
    return keys


def _field_default(cls: type, name: str) -> Any:
    """The declared default of field ``name`` of the dataclass ``cls`` (its type is the field's)."""
    f = next(f for f in fields(cls) if f.name == name)
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Light type checking of a value against the field's declared default (never against a value
    set by an earlier layer, which may itself be wrong and is checked by :meth:`Config.validate`)."""
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) and value.is_integer():
        return int(value)
    if value == "none" or value == "None":
        return None
    return value


def merge(cfg: Config, updates: dict[str, Any], source: str = "config") -> Config:
    """Apply a nested dict (as read from TOML) to ``cfg``; unknown keys raise with a suggestion."""
    cfg = copy.deepcopy(cfg)
    for key, value in updates.items():
        if key in TOP_LEVEL:
            setattr(cfg, key, _coerce(key, value, _field_default(Config, key)))
        elif key == "model":
            if not isinstance(value, dict):
                raise ValueError(f"{source}: [model] must be a table")
            if "name" in value and value["name"] != cfg.model.get("name"):
                # a different model: keep only the quantization arguments every model shares
                from stbin.models.common import QUANT_OPTIONS
                from stbin.plugins import is_plugin
                # [plugins] a factory gets only its own options
                keep = set() if is_plugin(value["name"]) else set(QUANT_OPTIONS)
                cfg.model = {k: v for k, v in cfg.model.items() if k in keep}
            cfg.model.update(copy.deepcopy(value))
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"{source}: [{key}] must be a table")
            sec = getattr(cfg, key)
            if key == "data" and "name" in value and value["name"] != sec.name and "options" not in value:
                sec.options = {}  # loader options belong to the previous dataset
            names = {f.name for f in fields(sec)}
            for k, v in value.items():
                if k not in names:
                    raise ValueError(f"{source}: " + _did_you_mean(f"{key}.{k}", all_keys()))
                setattr(sec, k, _coerce(f"{key}.{k}", v, _field_default(SECTIONS[key], k)))
        elif isinstance(value, dict) and value:
            first = next(iter(value))
            raise ValueError(f"{source}: " + _did_you_mean(f"{key}.{first}", all_keys()))
        else:
            raise ValueError(f"{source}: " + _did_you_mean(key, all_keys()))
    return cfg


def parse_value(text: str) -> Any:
    """A command-line value: TOML syntax (numbers, true/false, [lists], "strings"), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_override(item: str) -> dict[str, Any]:
    """``"optim.lr=0.01"`` -> ``{"optim": {"lr": 0.01}}``; ``"seed=3"`` -> ``{"seed": 3}``."""
    if "=" not in item:
        raise ValueError(f"override {item!r} is not of the form section.key=value")
    key, text = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not all(parts) or len(parts) > 2:
        raise ValueError(f"override key {key!r} must be 'key' or 'section.key'")
    value = parse_value(text.strip())
    return {parts[0]: value} if len(parts) == 1 else {parts[0]: {parts[1]: value}}


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file {path}")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"config file {path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path}: invalid TOML: {e}") from None


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` from :meth:`Config.to_dict` output (e.g. from a checkpoint); the
    deprecated names of model options become their current names (without a warning: the names
    are those of a stored file)."""
    from stbin.models.common import current_option_names
    from stbin.plugins import is_plugin

    model = d.get("model", {})
    if not isinstance(model, dict):
        raise ValueError(f"checkpoint config: [model] must be a table, got {model!r:.80}")
    model = dict(model)
    if not is_plugin(model.get("name")):
        model = current_option_names(model, "the checkpoint's [model]")
    return merge(Config(model=model), {k: v for k, v in d.items() if k != "model"}, "checkpoint config")


def normalised_config(d: dict[str, Any]) -> dict[str, Any]:
    """A configuration dict (:meth:`Config.to_dict`, e.g. a checkpoint's) in the form in which two
    configurations are compared: rebuilt through :func:`from_dict`, so that keys added with their
    default values since it was written are filled in, with the ``[model]`` arguments in the form
    of :func:`stbin.models.canonical_model_kwargs` (renamed options under their current names,
    arguments equal to the builder's default left out). A dict that does not rebuild (an older
    layout, a disagreeing alias) is compared as stored.

    >>> a = normalised_config({"model": {"name": "mlp", "weight_scale": 0.1}})
    >>> a == normalised_config({"model": {"name": "mlp", "weight_noise_scale": 0.1, "batch_norm": True}})
    True
    """
    from stbin.models import canonical_model_kwargs

    out = json.loads(json.dumps(d))
    try:
        out = from_dict(out).to_dict()
        model = out["model"]
        name = model.get("name")
        if isinstance(name, str):
            out["model"] = {"name": name, **canonical_model_kwargs(name, {k: v for k, v in model.items() if k != "name"})}
    except (ValueError, TypeError):  # a configuration of an older layout: compare it as stored
        pass
    return json.loads(json.dumps(out))


def get_preset(name: str) -> Config:
    """The :class:`Config` of preset ``name`` (ValueError with the nearest names if unknown)."""
    if name not in PRESETS:
        raise ValueError(unknown_name_message("preset", name, PRESETS))
    cfg = merge(Config(model={"name": PRESETS[name]["model"]["name"]}), PRESETS[name], f"preset {name}")
    cfg.preset = name
    return cfg


def build_config(preset: str | None = None, path: str | Path | None = None,
                 overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Preset (default: the default preset), then TOML file, then overrides; validated."""
    file_data = read_toml(path) if path is not None else {}
    name = preset or file_data.get("preset") or DEFAULT_PRESET
    cfg = get_preset(name)
    if path is not None:
        cfg = merge(cfg, {k: v for k, v in file_data.items() if k != "preset"}, str(path))
    for item in overrides:
        cfg = merge(cfg, parse_override(item), "override")
    return cfg.validate()


def dumps_toml(d: dict[str, Any]) -> str:
    """A small TOML writer for configs (scalars, lists, one level of tables)."""
    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {val(x)}" for k, x in v.items() if x is not None) + "}"
        raise TypeError(type(v))
    lines = [f"{k} = {val(v)}" for k, v in d.items() if not isinstance(v, dict) and v is not None]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {val(vv)}" for kk, vv in v.items() if vv is not None]
    return "\n".join(lines) + "\n"


__all__ = ["get_preset", "Config", "DataConfig", "OptimConfig", "ScheduleConfig", "TrainConfig", "EvalConfig", "LogConfig",
           "build_config",
           "merge", "parse_override", "read_toml", "from_dict", "normalised_config", "dumps_toml", "all_keys"]
