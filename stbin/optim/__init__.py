"""Weight updates for binary networks.

* :class:`LatentWeightRule` — mirror-descent latent updates (with any torch optimizer),
  the weight-ST alternative, projection for uniform noise, latent clipping
  (:mod:`stbin.optim.latent`, math there);
* :class:`Bop` — the latent-free binary optimizer (:mod:`stbin.optim.bop`);
* :func:`flip_ratio`, :class:`FlipRatio` — how many binary weights a step flips;
* :func:`split_parameters`, :func:`binary_layers` — latent vs real-valued parameters;
* :class:`~stbin.optim.hooks.StepHooks` — the base of what runs around an optimizer's step
  (``attach(optimizer)`` / ``detach()``: the latent-weight rule, the flip-ratio tracker).
"""

from stbin.optim.bop import Bop
from stbin.optim.latent import LatentWeightRule
from stbin.optim.metrics import FlipRatio, flip_ratio
from stbin.optim.params import binary_layers, split_parameters

__all__ = ["LatentWeightRule", "Bop", "FlipRatio", "flip_ratio", "binary_layers", "split_parameters"]
