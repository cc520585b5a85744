"""Optional dependencies of the commands, checked before any work starts.

A command that needs an optional extra calls :func:`require` first thing in ``run()``, so
that a missing package is reported at once, in one line with the install hint (exit 2),
instead of a traceback after minutes of computing:

>>> from stbin.cli.deps import require
>>> require("json", extra="reports", purpose="this example")  # installed: nothing happens
"""

from __future__ import annotations

import importlib


class MissingDependency(ImportError):
    """An optional package a command needs is not installed (a user error: one line, exit 2)."""


def require(*modules: str, extra: str, purpose: str) -> None:
    """Import ``modules``; :class:`MissingDependency` naming the package and ``pip install 'stbin[extra]'``."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise MissingDependency(f"{purpose} needs {name}, which is not installed: "
                                    f"pip install 'stbin[{extra}]' (or pip install {name})") from None


__all__ = ["MissingDependency", "require"]
