"""Name registries: every estimator, noise, proxy and STE is looked up by name.

Unknown names raise :class:`ValueError` that lists the valid ones, so that a typo in a
config or on the command line tells the user what they could have written.

>>> colours = Registry("colour")
>>> colours.register("red", "#d55e00")
'#d55e00'
>>> colours.get("red")
'#d55e00'
>>> colours.get("rde")
Traceback (most recent call last):
    ...
ValueError: unknown colour 'rde' (did you mean 'red'?); valid: red
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to objects of one kind.

    Args:
        kind: what the entries are, for error messages ("noise", "model", ...).

    Entries are added with :meth:`register` (directly or as a decorator) and looked up with
    :meth:`get`; iteration and :meth:`names` give the names in sorted order.

    >>> MODELS = Registry("model")
    >>> @MODELS.register("tiny")
    ... def tiny(width=2):
    ...     return width
    >>> MODELS.get("tiny")(width=3), "tiny" in MODELS, MODELS.names()
    (3, True, ['tiny'])
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted.

        Args:
            name: the name to look ``obj`` up by; registering a name twice is a ValueError.
            obj: the entry; if omitted, returns a decorator that registers what it decorates.
        """

        def add(o: T) -> T:
            if name in self._items and not _same_definition(self._items[name], o):
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o  # the same definition again (its module executed anew): replaced
            return o

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        """The entry registered as ``name`` (ValueError naming the valid names if none)."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ValueError(unknown_name_message(self.kind, name, self._items)) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"


def _same_definition(a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` are one function or class defined again: the same module and
    qualified name (a module executed a second time, as ``pytest --doctest-modules`` does with a
    file that registers its entries on import)."""
    names = [(getattr(x, "__module__", None), getattr(x, "__qualname__", None)) for x in (a, b)]
    return None not in names[0] and names[0] == names[1]


def unknown_name_message(kind: str, name: object, valid: object) -> str:
    """The message for an unknown ``name`` of ``kind``: the closest valid name and all of them.

    Args:
        kind: what ``name`` should have named ("noise").
        name: the name given.
        valid: the valid choices (strings, sorted in the message; others, e.g. None, last).

    >>> unknown_name_message("noise", "gauss", ["uniform", "gaussian", "logistic"])
    "unknown noise 'gauss' (did you mean 'gaussian'?); valid: gaussian, logistic, uniform"
    """
    # valid choices may include None (e.g. "no projection"): shown as None, sorted last
    choices = list(valid)  # type: ignore[call-overload]
    names = sorted(str(v) for v in choices if isinstance(v, str))
    shown = names + [repr(v) for v in choices if not isinstance(v, str)]
    msg = f"unknown {kind} {name!r}"
    if isinstance(name, str):
        close = difflib.get_close_matches(name, names, n=1)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
    return msg + f"; valid: {', '.join(shown)}"


def check_choice(kind: str, name: object, valid: "list[str] | tuple[str, ...]") -> str:
    """Return ``name`` if it is one of ``valid``, else raise ValueError listing them.

    >>> check_choice("split", "test", ("train", "test"))
    'test'
    """
    if name not in valid:
        raise ValueError(unknown_name_message(kind, name, valid))
    return name  # type: ignore[return-value]
