"""Registry of datasets that stream from disk (``torch.utils.data.Dataset`` objects, read by a
``DataLoader``), next to the in-memory :data:`stbin.data.DATASETS`.

An entry is a function ``open(root=..., seed=..., **options) -> (train, test, num_classes)``
returning Datasets of ``(float image C x H x W, int label)`` — the same contract as a dataset
plugin (:mod:`stbin.plugins`). Adding one is one module that registers itself here with
``@STREAMING.register("name")``, imported by :mod:`stbin.data` (this module imports none of
them, so that no import runs back).

=================  ==================================================================
name               source
=================  ==================================================================
``image_folder``   ``root/train/<class>/*.png|jpg`` and ``root/val`` (or ``root/test``),
                   decoded with Pillow (:mod:`stbin.data.image_folder`)
=================  ==================================================================
"""

from __future__ import annotations

from typing import Any, Callable

from stbin._registry import Registry

STREAMING: Registry[Callable[..., tuple[Any, Any, int]]] = Registry("streaming dataset")

__all__ = ["STREAMING"]
