"""The registry of module converters: how each PyTorch module type becomes deploy ops.

A converter is ``convert(compiler, mods, i) -> next_index``: it converts ``mods[i]`` (and
may take the modules after it, e.g. a batch norm and a sign to fold) by calling the
emission helpers of :class:`stbin.deploy.compiler.Compiler`, and returns the index of the
first module it did not take. Lookup follows the module's class hierarchy (a subclass of a
registered type uses its converter unless it has its own); a module of no registered type
then gets the converter of the first predicate (:meth:`ConverterRegistry.register_when`) it
satisfies: every sign activation registered in :data:`stbin.nn.BINARY_MODULES` (declared
precision ``is_sign``, no weights) converts as a sign, without an entry of its own.

>>> from torch import nn
>>> from stbin.deploy.compile import CONVERTERS
>>> CONVERTERS.find(nn.Dropout()) is CONVERTERS.find(nn.Identity())
True
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

Converter = Callable[[Any, list, int], int]


class ConverterRegistry:
    """Module type -> converter (see the module docstring)."""

    def __init__(self) -> None:
        self._items: dict[type, Converter] = {}
        self._when: list[tuple[Callable[[nn.Module], bool], Converter]] = []

    def register(self, *types: type) -> Callable[[Converter], Converter]:
        """Decorator: register the converter for each module type in ``types``."""
        def add(fn: Converter) -> Converter:
            for t in types:
                if t in self._items:
                    raise ValueError(f"a deploy converter for {t.__name__} is already registered")
                self._items[t] = fn
            return fn
        return add

    def register_when(self, predicate: Callable[[nn.Module], bool]) -> Callable[[Converter], Converter]:
        """Decorator: the converter of every module for which ``predicate(module)`` holds and whose type
        has no converter of its own (e.g. every registered sign activation, by its declared precision)."""
        def add(fn: Converter) -> Converter:
            self._when.append((predicate, fn))
            return fn
        return add

    def unregister(self, t: type) -> None:
        self._items.pop(t, None)

    def find(self, m: nn.Module) -> Converter | None:
        for t in type(m).__mro__:
            if t in self._items:
                return self._items[t]
        for predicate, fn in self._when:
            if predicate(m):
                return fn
        return None

    def names(self) -> list[str]:
        return sorted(t.__name__ for t in self._items)


CONVERTERS = ConverterRegistry()
register_converter = CONVERTERS.register
