"""Run loggers: a small interface for trackers, TensorBoard built in, and the binary-network
diagnostics they receive.

A :class:`Logger` gets ``start(info)`` once, ``log(scalars, step)`` with a dict of named
floats at every optimizer step and at every epoch end, and ``finish(results)``. Plug any
tracker in from user code::

    class WandbLogger(stbin.training.loggers.Logger):
        def start(self, info): import wandb; self.run = wandb.init(config=info["config"])
        def log(self, scalars, step): self.run.log(scalars, step=step)
        def finish(self, results): self.run.finish()

    stbin.train(config, loggers=[WandbLogger()])

``log.tensorboard = true`` adds :class:`TensorBoardLogger` (event files in
``OUT/tensorboard/``; needs the ``tensorboard`` extra, checked before training). The
``metrics.jsonl`` / ``metrics.csv`` files are written as before, whatever the loggers.

Scalars (``step`` is the global optimizer step):

* every step: ``train/loss`` (batch mean), ``train/lr/group<i>`` (each parameter group),
  ``binary/flip_ratio`` (fraction of binary weights whose mode :math:`\\operatorname{sign}(\\theta)`
  changed in this step; Helwegen et al., NeurIPS 2019, use it to monitor Bop);
* every epoch: ``epoch``, ``train/loss_epoch``, ``train/accuracy``, ``<split>/loss``,
  ``<split>/accuracy/<mode>`` for every evaluation mode of ``eval.modes`` (split: val or
  test), ``binary/flip_ratio_epoch`` (signs changed between the epoch's start and end),
  ``binary/saturated`` and ``binary/saturated/<layer>``: the fraction of latent weights with
  :math:`|P(w=+1) - 1/2| > 0.49`, where :math:`P(w=+1) = F(\\theta / s_w)` is the
  probability of the layer's weight noise (for deterministic sign weights, that of the noise
  whose straight-through estimator the layer uses); ``units/mean_abs_Ex/<layer>``: the mean
  over the epoch's batches of :math:`|E[x]| = |2F(a/s) - 1|` for each stochastic sign
  layer (Raiko et al., ICLR 2015; near 1 the unit is effectively deterministic);
* at the end: ``test/accuracy/<mode>`` and ``test/accuracy/ensemble``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

SATURATION = 0.49


class Logger:
    """Base class of run loggers; every method is optional (the defaults do nothing)."""

    def start(self, info: dict[str, Any]) -> None:
        """Called once before training: ``{"config": dict, "out_dir": str, "model": nn.Module}``."""

    def log(self, scalars: dict[str, float], step: int) -> None:
        """Called with named scalars at each optimizer step and at each epoch end."""

    def finish(self, results: dict[str, Any]) -> None:
        """Called once after the final evaluation (``results`` as returned by the trainer)."""


def require_tensorboard() -> None:
    """One-line ValueError if the ``tensorboard`` extra is missing (checked before training)."""
    from stbin._extras import require_extra

    require_extra("tensorboard", "torch.utils.tensorboard", extra="tensorboard", purpose="log.tensorboard = true")


class TensorBoardLogger(Logger):
    """Writes every scalar to TensorBoard event files in ``log_dir`` (``torch.utils.tensorboard``)."""

    def __init__(self, log_dir: str | Path) -> None:
        require_tensorboard()
        self.log_dir = Path(log_dir)
        self.writer: Any = None

    def start(self, info: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log(self, scalars: dict[str, float], step: int) -> None:
        for tag, v in scalars.items():
            self.writer.add_scalar(tag, v, step)
        if "epoch" in scalars:
            self.writer.flush()

    def finish(self, results: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.close()


def saturated_fraction(layer: nn.Module) -> float:
    """Fraction of ``layer``'s latent weights with ``|P(w=+1) - 1/2| > 0.49`` (i.e. ``|E[w]| > 0.98``)."""
    e = layer.binary_weight("mean")  # type: ignore[operator]
    return float(((e.float() + 1) / 2 - 0.5).abs().gt(SATURATION).float().mean())


class Diagnostics:
    """Collects the per-step and per-epoch scalars of a run and hands them to the loggers."""

    def __init__(self, model: nn.Module, optimizers: Sequence[torch.optim.Optimizer], loggers: Sequence[Logger],
                 info: dict[str, Any]) -> None:
        from stbin.nn.activations import StochasticSign
        from stbin.optim.params import binary_layers

        self.loggers = list(loggers)
        self.optimizers = list(optimizers)
        names = {id(m): n or type(m).__name__ for n, m in model.named_modules()}
        self.binary = [(names[id(m)], m) for m in binary_layers(model)]
        self.units = [(names[id(m)], m) for m in model.modules() if isinstance(m, StochasticSign)]
        self._ex: dict[str, list[float]] = {n: [] for n, _ in self.units}
        self._hooks = [m.register_forward_hook(self._unit_hook(n)) for n, m in self.units]
        self._signs = self._epoch_signs = self._signs_now()
        self._flips: float | None = None
        for lg in self.loggers:
            lg.start(info)

    def _signs_now(self) -> list[torch.Tensor]:
        return [(m.latent_weight.detach() >= 0).clone() for _, m in self.binary]

    def _unit_hook(self, name: str) -> Callable[..., None]:
        def hook(m: nn.Module, inp: tuple, out: Any) -> None:
            if m.training and inp and isinstance(inp[0], torch.Tensor):
                from stbin.estimators import stochastic_sign

                with torch.no_grad():
                    ex = stochastic_sign(inp[0].detach().float(), m.noise, m.scale, "mean")
                    self._ex[name].append(float(ex.abs().mean()))
        return hook

    @staticmethod
    def _flip(before: list[torch.Tensor], after: list[torch.Tensor]) -> float:
        total = sum(b.numel() for b in before)
        return sum(int((b != a).sum()) for b, a in zip(before, after)) / total if total else 0.0

    def step(self, step: int, loss: float) -> None:
        scalars = {"train/loss": loss}
        for o in self.optimizers:
            for i, g in enumerate(o.param_groups):
                key = f"train/lr/group{i}" if o is self.optimizers[0] else f"train/lr/{type(o).__name__.lower()}{i}"
                scalars[key] = float(g.get("lr", 0.0))
        if self.binary:
            now = self._signs_now()
            scalars["binary/flip_ratio"] = self._flip(self._signs, now)
            self._signs = now
        self._emit(scalars, step)

    def epoch(self, epoch: int, step: int, record: dict[str, Any], split: str, modes: Sequence[str],
              evaluate: Callable[[str], dict[str, float]]) -> None:
        scalars: dict[str, float] = {"epoch": float(epoch), "train/loss_epoch": record["train_loss"],
                                     "train/accuracy": record["train_accuracy"],
                                     f"{split}/loss": record[f"{split}_loss"],
                                     f"{split}/accuracy/mode": record[f"{split}_accuracy"]}
        for m in modes:
            if m != "mode":
                scalars[f"{split}/accuracy/{m}"] = evaluate(m)["accuracy"]
        if self.binary:
            now = self._signs_now()
            scalars["binary/flip_ratio_epoch"] = self._flip(self._epoch_signs, now)
            self._epoch_signs = self._signs = now
            sat, total = 0.0, 0
            for name, m in self.binary:
                f = saturated_fraction(m)
                scalars[f"binary/saturated/{name}"] = f
                sat, total = sat + f * m.latent_weight.numel(), total + m.latent_weight.numel()
            scalars["binary/saturated"] = sat / total
        for name, vals in self._ex.items():
            if vals:
                scalars[f"units/mean_abs_Ex/{name}"] = sum(vals) / len(vals)
                vals.clear()
        self._emit(scalars, step)

    def finish(self, step: int, results: dict[str, Any]) -> None:
        scalars = {f"test/accuracy/{m}": float(v) for m, v in results.get("test", {}).items()}
        if scalars:
            self._emit(scalars, step)
        for h in self._hooks:
            h.remove()
        for lg in self.loggers:
            lg.finish(results)

    def _emit(self, scalars: dict[str, float], step: int) -> None:
        for lg in self.loggers:
            lg.log(scalars, step)


def open_diagnostics(cfg: Any, out_dir: Path, model: nn.Module, optimizers: Sequence[Any], loggers: Sequence[Any],
                     is_main: bool) -> Diagnostics | None:
    """The run's :class:`Diagnostics` (None when no logger is active or on a non-zero rank)."""
    for lg in loggers:
        if not isinstance(lg, Logger) and not all(callable(getattr(lg, k, None)) for k in ("start", "log", "finish")):
            raise ValueError(f"logger {lg!r} must have start(info), log(scalars, step) and finish(results)")
    active = list(loggers)
    if cfg.log.tensorboard:
        require_tensorboard()
        if is_main:
            active.append(TensorBoardLogger(Path(out_dir) / "tensorboard"))
    if not active or not is_main:
        return None
    info = {"config": cfg.to_dict(), "out_dir": str(out_dir), "model": model}
    return Diagnostics(model, [o for o in optimizers if isinstance(o, torch.optim.Optimizer)], active, info)


__all__ = ["Logger", "TensorBoardLogger", "Diagnostics", "open_diagnostics", "require_tensorboard",
           "saturated_fraction", "SATURATION"]
