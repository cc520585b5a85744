"""Optional extras: one check, and one message, for a package that is not installed.

Everything that needs an optional package (matplotlib for plots, numba for the inference
kernels, tensorboard, Pillow, ...) calls :func:`require_extra` *before* its work starts. A
missing package raises :class:`MissingExtraError`, a :class:`ValueError`, so that the CLI
prints one line and exits with status 2 (see :mod:`stbin.cli.main`), in one form::

    <package> is needed for <purpose> but is not installed: pip install 'stbin[<extra>]'

>>> require_extra("json", extra="reports", purpose="this example")  # installed: nothing happens
>>> require_extra("no_such_module_xyz", extra="reports", purpose="this example")
Traceback (most recent call last):
...
stbin._extras.MissingExtraError: no_such_module_xyz is needed for this example but is not installed: pip install 'stbin[reports]'
"""

from __future__ import annotations

import importlib

__all__ = ["MissingExtraError", "extra_available", "install_hint", "missing_extra", "require_extra"]


class MissingExtraError(ValueError):
    """An optional package the user asked to use is not installed (one line, exit 2)."""


def install_hint(extra: str) -> str:
    """The command that installs an extra of stbin.

    >>> install_hint("deploy")
    "pip install 'stbin[deploy]'"
    """
    return f"pip install 'stbin[{extra}]'"


def extra_available(*modules: str) -> bool:
    """Whether every one of ``modules`` can be imported.

    >>> extra_available("json", "json.decoder"), extra_available("no_such_module_xyz")
    (True, False)
    """
    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


def require_extra(*modules: str, extra: str, purpose: str, name: str | None = None,
                  alternative: str | None = None) -> None:
    """Import ``modules``; :class:`MissingExtraError` naming the package and the install command if
    one of them cannot be imported.

    Args:
        *modules: the modules to import (e.g. ``"matplotlib", "matplotlib.figure"``).
        extra: the extra of stbin that installs them (``reports``, ``deploy``, ...).
        purpose: what needs them, for the message (``"stbin export --verify"``).
        name: the package's name for the message (default: the first module's).
        alternative: how to do without, appended as ``(or ALTERNATIVE)``.
    """
    if not extra_available(*modules):
        raise missing_extra(name or modules[0], extra=extra, purpose=purpose, alternative=alternative)


def missing_extra(name: str, extra: str, purpose: str, alternative: str | None = None) -> MissingExtraError:
    """The :class:`MissingExtraError` for package ``name`` (the arguments of :func:`require_extra`).

    >>> print(missing_extra("numba", extra="deploy", purpose="stbin bench-inference"))
    numba is needed for stbin bench-inference but is not installed: pip install 'stbin[deploy]'
    """
    msg = f"{name} is needed for {purpose} but is not installed: {install_hint(extra)}"
    return MissingExtraError(msg + (f" (or {alternative})" if alternative else ""))
