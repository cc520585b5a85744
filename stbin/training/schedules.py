"""Learning-rate schedules, stepped once per optimizer step: constant, cosine, step, linear; warm-up.

Built as a :class:`torch.optim.lr_scheduler.LambdaLR` whose factor is a picklable object
(:class:`LRFactor`), so that its state is part of the checkpoint.
"""

from __future__ import annotations

import math

import torch

from stbin._registry import check_choice

SCHEDULES = ("constant", "cosine", "step", "linear")


class LRFactor:
    """lr(step) / base_lr for ``name`` over ``total_steps`` (``steps_per_epoch`` for step decay)."""

    def __init__(self, name: str, total_steps: int, steps_per_epoch: int, warmup_steps: int = 0,
                 min_factor: float = 0.0, step_size: int = 30, gamma: float = 0.1) -> None:
        self.name = check_choice("schedule", name, SCHEDULES)
        self.total_steps, self.steps_per_epoch = max(1, total_steps), max(1, steps_per_epoch)
        self.warmup_steps, self.min_factor = max(0, warmup_steps), min_factor
        self.step_size, self.gamma = step_size, gamma

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.name == "constant":
            return 1.0
        if self.name == "step":
            return self.gamma ** ((step // self.steps_per_epoch) // max(1, self.step_size))
        t = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        f = 0.5 * (1 + math.cos(math.pi * t)) if self.name == "cosine" else 1.0 - t
        return self.min_factor + (1.0 - self.min_factor) * f


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, epochs: int, steps_per_epoch: int,
                    warmup_epochs: float = 0.0, min_lr: float = 0.0, step_size: int = 30,
                    gamma: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    base = optimizer.param_groups[0]["lr"]
    factor = LRFactor(name, epochs * steps_per_epoch, steps_per_epoch, int(round(warmup_epochs * steps_per_epoch)),
                      min_lr / base if base > 0 else 0.0, step_size, gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
