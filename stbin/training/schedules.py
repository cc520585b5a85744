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
    """lr(step) / base_lr for ``name`` over ``total_steps`` (``steps_per_epoch`` for step decay).

    Args:
        name: ``"constant"``, ``"cosine"`` (to ``min_factor``), ``"step"`` (times ``gamma``
            every ``step_size`` epochs) or ``"linear"`` (to ``min_factor``).
        total_steps: optimizer steps of the whole run.
        steps_per_epoch: optimizer steps per epoch.
        warmup_steps: linear warm-up from ``1/warmup_steps`` to 1 over these first steps.
        min_factor: the final factor of ``cosine`` and ``linear``.
        step_size, gamma: the epochs between decays and the decay factor of ``step``.

    >>> f = LRFactor("cosine", total_steps=10, steps_per_epoch=5, warmup_steps=2)
    >>> [round(f(s), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """

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
    """A per-step :class:`~torch.optim.lr_scheduler.LambdaLR` of schedule ``name`` (see :class:`LRFactor`).

    Args:
        optimizer: the optimizer; its first group's ``lr`` is the base learning rate.
        name: the schedule (:data:`SCHEDULES`).
        epochs, steps_per_epoch: the length of the run.
        warmup_epochs: warm-up length in epochs (rounded to whole steps).
        min_lr: the final learning rate of ``cosine`` and ``linear``.
        step_size, gamma: the decay of ``step``.

    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> sched = build_scheduler(opt, "step", epochs=4, steps_per_epoch=2, step_size=1, gamma=0.5)
    >>> for _ in range(2):
    ...     opt.step(); sched.step()
    >>> opt.param_groups[0]["lr"]
    0.05
    """
    base = optimizer.param_groups[0]["lr"]
    factor = LRFactor(name, epochs * steps_per_epoch, steps_per_epoch, int(round(warmup_epochs * steps_per_epoch)),
                      min_lr / base if base > 0 else 0.0, step_size, gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
