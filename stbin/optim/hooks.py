"""Attaching an object to an optimizer's step: :class:`StepHooks`.

A subclass defines :meth:`~StepHooks.before_step` and :meth:`~StepHooks.after_step`;
``attach(optimizer)`` runs them around every ``optimizer.step()`` (torch's step pre/post
hooks) and ``detach()`` removes them.

>>> import torch
>>> class Count(StepHooks):
...     def __init__(self):
...         super().__init__()
...         self.calls = []
...     def before_step(self): self.calls.append("before")
...     def after_step(self): self.calls.append("after")
>>> p = torch.nn.Parameter(torch.zeros(1))
>>> opt = torch.optim.SGD([p], lr=0.1)
>>> c = Count().attach(opt)
>>> p.grad = torch.ones(1); opt.step(); c.detach(); opt.step()
>>> c.calls
['before', 'after']
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch

S = TypeVar("S", bound="StepHooks")


class StepHooks:
    """Base of what runs around an optimizer's step (see the module docstring)."""

    def __init__(self) -> None:
        self._handles: list[Any] = []

    def before_step(self) -> None:
        """Called before every step of the attached optimizers."""

    def after_step(self) -> None:
        """Called after every step of the attached optimizers."""

    def attach(self: S, optimizer: torch.optim.Optimizer) -> S:
        """Run :meth:`before_step` before and :meth:`after_step` after every ``optimizer.step()``; returns self."""
        self._handles.append(optimizer.register_step_pre_hook(lambda opt, args, kwargs: self.before_step()))
        self._handles.append(optimizer.register_step_post_hook(lambda opt, args, kwargs: self.after_step()))
        return self

    def detach(self) -> None:
        """Remove the optimizer hooks set by :meth:`attach`."""
        for h in self._handles:
            h.remove()
        self._handles.clear()


__all__ = ["StepHooks"]
