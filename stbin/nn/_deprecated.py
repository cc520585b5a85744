"""Deprecated argument names kept for one release (``weight_scale`` -> ``weight_noise_scale``)."""

from __future__ import annotations

import warnings


def noise_scale_argument(weight_noise_scale: float, weight_scale: float | None, where: str) -> float:
    """Resolve the deprecated ``weight_scale=`` alias of ``weight_noise_scale`` (DeprecationWarning)."""
    if weight_scale is None:
        return weight_noise_scale
    warnings.warn(f"{where}: weight_scale= is deprecated (it is the noise scale s_w); use weight_noise_scale=",
                  DeprecationWarning, stacklevel=3)
    if weight_noise_scale != 1.0 and weight_noise_scale != weight_scale:
        raise ValueError(f"{where}: give weight_noise_scale only (weight_scale={weight_scale!r} is its deprecated "
                         f"alias and disagrees with weight_noise_scale={weight_noise_scale!r})")
    return weight_scale
