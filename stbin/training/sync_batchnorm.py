"""Batch norm over the global batch of a data-parallel run (``train.sync_batchnorm = true``).

Under DDP each process sees 1/N of every global batch; a plain ``BatchNorm`` normalises that
share with its own statistics, so N processes do not compute what one process computes.
:class:`GlobalBatchNorm` all-reduces the per-channel sums: in training it normalises with

.. math::  \\mu = \\frac{1}{n}\\sum_i x_i, \\qquad \\sigma^2 = \\frac{1}{n}\\sum_i (x_i - \\mu)^2

over the ``n`` values of the whole global batch (two all-reduces: the mean, then the squared
deviations, which avoids the cancellation of ``E[x^2] - E[x]^2``), updates the running mean
and the running variance (unbiased, ``n / (n - 1)``) exactly as one process would, and
back-propagates through the all-reduces (``torch.distributed.nn.functional.all_reduce``:
the gradient of a sum over processes is the sum of the gradients), as in Ioffe & Szegedy's
batch norm (ICML 2015) computed on the global batch. Unlike ``torch.nn.SyncBatchNorm`` it
also runs on CPU (gloo). With one process, or in evaluation, it is ``BatchNorm``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class GlobalBatchNorm(_BatchNorm):
    """``BatchNorm1d/2d/3d`` with the statistics of the global batch under ``torch.distributed``.

    Args: as :class:`torch.nn.BatchNorm2d`. Shape: (N, C, ...) -> same; the state-dict keys are
    those of ``BatchNorm``, so checkpoints load into either.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and distributed):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = all_reduce(torch.tensor([float(xf.numel() // xf.shape[1])], device=x.device))
        mean = all_reduce(xf.sum(dims)) / count
        var = all_reduce(((xf - mean.view(shape)) ** 2).sum(dims)) / count
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1  # type: ignore[operator]
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                n = float(count)
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
                unbiased = var.detach() * (n / max(n - 1.0, 1.0))
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm1d/2d/3d`` in ``module`` by a :class:`GlobalBatchNorm` that shares
    its parameters and buffers (an optimizer built before stays valid); returns the module."""
    if isinstance(module, _BatchNorm) and not isinstance(module, (GlobalBatchNorm, nn.SyncBatchNorm)):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in list(module.named_children()):
        new_child = convert_sync_batchnorm(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


__all__ = ["GlobalBatchNorm", "convert_sync_batchnorm"]
