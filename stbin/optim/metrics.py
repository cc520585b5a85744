"""Flip ratio: the fraction of binary weights that changed sign in an optimizer step.

For Bernoulli weights the flips are counted on the mode :math:`\\operatorname{sign}(\\theta)`
(the deterministic weights that evaluation and export use), not on the random samples.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from stbin.optim.hooks import StepHooks
from stbin.optim.params import binary_layers


def flip_ratio(before: Sequence[torch.Tensor] | torch.Tensor, after: Sequence[torch.Tensor] | torch.Tensor) -> float:
    """Fraction of entries whose sign (sign(0)=+1) differs between ``before`` and ``after``.

    Args:
        before: a tensor or a sequence of tensors.
        after: the same number of tensors, of the same shapes.

    >>> import torch
    >>> flip_ratio(torch.tensor([1.0, -2.0, 0.0, 3.0]), torch.tensor([2.0, 1.0, -1.0, 3.0]))
    0.5
    """
    if isinstance(before, torch.Tensor):
        before, after = [before], [after]  # type: ignore[list-item]
    if len(before) != len(after):
        raise ValueError(f"flip_ratio got {len(before)} tensors before and {len(after)} after")
    changed, total = 0, 0
    for b, a in zip(before, after):
        if b.shape != a.shape:
            raise ValueError(f"flip_ratio: shapes differ, {tuple(b.shape)} before vs {tuple(a.shape)} after")
        changed += int(((b >= 0) != (a >= 0)).sum())
        total += b.numel()
    return changed / total if total else 0.0


class FlipRatio(StepHooks):
    """Tracks the flip ratio of a model's binary weights over optimizer steps.

    ``FlipRatio(model).attach(optimizer)`` records, after each step, the overall ratio in
    :attr:`last` and per layer in :attr:`last_per_layer` (keyed by module name), and
    appends the overall ratio to :attr:`history`.

    Args:
        model: a model with at least one binary-weight layer.

    >>> import torch
    >>> from stbin.nn import BinaryLinear
    >>> layer = BinaryLinear(4, 2)
    >>> with torch.no_grad():
    ...     _ = layer.latent_weight.copy_(torch.tensor([[1.0] * 4, [-1.0] * 4]))
    >>> tracker = FlipRatio(layer)
    >>> tracker.snapshot()
    >>> with torch.no_grad():
    ...     layer.latent_weight[0, 0] = -1.0
    >>> tracker.update()   # one of the 8 weights changed sign
    0.125
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        names = {id(m): n for n, m in model.named_modules()}
        self.layers = binary_layers(model)
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no binary-weight layers (BinaryLinear, BinaryConv2d)")
        self.names = [names[id(m)] or type(m).__name__ for m in self.layers]
        self.last: float | None = None
        self.last_per_layer: dict[str, float] = {}
        self.history: list[float] = []
        self._snapshot: list[torch.Tensor] | None = None

    def snapshot(self) -> None:
        """Remember the current signs of the latent weights."""
        self._snapshot = [(m.latent_weight.detach() >= 0).clone() for m in self.layers]

    def update(self) -> float:
        """Compare with the snapshot; record and return the overall flip ratio."""
        if self._snapshot is None:
            raise RuntimeError("FlipRatio.update() called before snapshot()")
        changed, total = 0, 0
        self.last_per_layer = {}
        for name, m, s in zip(self.names, self.layers, self._snapshot):
            c = int(((m.latent_weight.detach() >= 0) != s).sum())
            self.last_per_layer[name] = c / s.numel()
            changed, total = changed + c, total + s.numel()
        self.last = changed / total
        self.history.append(self.last)
        self._snapshot = None
        return self.last

    def before_step(self) -> None:
        """:meth:`snapshot` (run before every step of an attached optimizer)."""
        self.snapshot()

    def after_step(self) -> None:
        """:meth:`update` (run after every step of an attached optimizer)."""
        self.update()
