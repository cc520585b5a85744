r"""Bop: the binary optimizer of Helwegen et al. (2019), a peer of latent-weight methods.

Bop keeps no latent weights. Each binary weight :math:`w \in \{-1,+1\}` has an exponential
moving average of its gradient,

.. math:: m \leftarrow (1-\gamma)\, m + \gamma\, \partial L/\partial w,

and flips when the average is strong and agrees in sign with the weight:

.. math:: w \leftarrow -w \quad \text{if } |m| > \tau \text{ and } \operatorname{sign}(m) = \operatorname{sign}(w).

(:math:`w \cdot m > \tau` for :math:`w = \pm 1`.) Parameters given to Bop are binarised
(:math:`\operatorname{sign}`, sign(0)=+1) at the first step. Use it on the latent weights of
``weights="sign"`` layers (whose forward is :math:`\operatorname{sign}(\theta)`) and another
optimizer for the real-valued parameters (see :func:`stbin.optim.split_parameters`).

Reference: K. Helwegen et al., "Latent Weights Do Not Exist: Rethinking Binarized Neural
Network Optimization", NeurIPS 2019. The defaults (``threshold=1e-8``, ``gamma=1e-4``) are
those of the paper's CIFAR-10 runs; both usually need tuning for another task.
"""

from __future__ import annotations

from typing import Iterable

import torch

from stbin._validation import check_positive


class Bop(torch.optim.Optimizer):
    """Bop optimizer for ±1 parameters (see the module docstring for the rule).

    Args:
        params: the binary parameters (or param groups).
        threshold: :math:`\\tau > 0`.
        gamma: the adaptivity rate :math:`\\gamma \\in (0, 1]`.

    ``self.last_flips`` holds the number of weights flipped by the latest step.

    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 1.0, -1.0]))
    >>> opt = Bop([w], threshold=0.1, gamma=0.5)
    >>> w.grad = torch.tensor([1.0, 0.1, 1.0])   # m = 0.5 * grad = [0.5, 0.05, 0.5]
    >>> opt.step()
    >>> w.data, opt.last_flips                   # flips where w * m > 0.1
    (tensor([-1.,  1., -1.]), 1)
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], threshold: float = 1e-8,
                 gamma: float = 1e-4) -> None:
        check_positive("threshold", threshold)
        if not 0.0 < check_positive("gamma", gamma) <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        super().__init__(params, {"threshold": threshold, "gamma": gamma})
        self.last_flips = 0

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        flips = 0
        for group in self.param_groups:
            tau, gamma = group["threshold"], group["gamma"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(p)
                m = state["momentum"]
                m.mul_(1.0 - gamma).add_(p.grad, alpha=gamma)
                w = torch.where(p >= 0, 1.0, -1.0).to(p.dtype)
                flip = (w * m) > tau
                flips += int(flip.sum())
                p.copy_(torch.where(flip, -w, w))
        self.last_flips = flips
        return loss
