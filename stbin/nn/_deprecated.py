"""Deprecated names kept for one release: the argument ``weight_scale`` -> ``weight_noise_scale``,
the learned scale parameter ``weight_scale`` -> ``learned_channel_scale``."""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn


def noise_scale_argument(weight_noise_scale: float, weight_scale: float | None, where: str,
                         stacklevel: int = 3) -> float:
    """Resolve the deprecated ``weight_scale=`` alias of ``weight_noise_scale`` (DeprecationWarning,
    pointing ``stacklevel`` frames up: the caller of the constructor)."""
    if weight_scale is None:
        return weight_noise_scale
    warnings.warn(f"{where}: weight_scale= is deprecated (it is the noise scale s_w); use weight_noise_scale=",
                  DeprecationWarning, stacklevel=stacklevel)
    if weight_noise_scale != 1.0 and weight_noise_scale != weight_scale:
        raise ValueError(f"{where}: give weight_noise_scale only (weight_scale={weight_scale!r} is its deprecated "
                         f"alias and disagrees with weight_noise_scale={weight_noise_scale!r})")
    return weight_scale


class RenamedChannelScale:
    """Mixin of :class:`stbin.nn.binary.BinaryWeightLayer`: the deprecated attribute ``weight_scale``
    (DeprecationWarning) and the loading of state dicts that store the learned scale under that name."""

    learned_channel_scale: nn.Parameter | None

    @property
    def weight_scale(self) -> nn.Parameter | None:
        """Deprecated name of :attr:`learned_channel_scale` (DeprecationWarning)."""
        warnings.warn("BinaryWeightLayer.weight_scale is deprecated; use learned_channel_scale",
                      DeprecationWarning, stacklevel=2)
        return self.learned_channel_scale

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints written before the rename store the learned scale as "weight_scale"
        old, new = prefix + "weight_scale", prefix + "learned_channel_scale"
        if old in state_dict and new not in state_dict:
            state_dict[new] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]
