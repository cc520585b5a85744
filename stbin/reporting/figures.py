"""Figures through matplotlib's object API, and the one policy for a missing matplotlib.

Figures are :class:`matplotlib.figure.Figure` objects with their own Agg canvas: nothing here
imports :mod:`matplotlib.pyplot` or calls ``matplotlib.use``, so writing a report never
changes the backend (or the open figures) of a notebook or GUI session that called it.

Missing matplotlib: commands that write plots call :func:`require_matplotlib` *before* any
work starts; it raises :class:`MissingExtraError` (a :class:`ValueError`, so the CLI prints
one line and exits with status 2) naming the install command. Reports without plots are
written only when the user asks for them (``--no-plots``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from stbin._extras import MissingExtraError, extra_available, install_hint, missing_extra
from stbin._io import atomic_write

__all__ = ["INSTALL_HINT", "MissingExtraError", "matplotlib_available", "require_matplotlib", "new_figure",
           "save_figure", "colormap"]

#: The command that installs the plotting extra.
INSTALL_HINT = install_hint("reports")
_MODULES = ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg")


def matplotlib_available() -> bool:
    """Whether matplotlib (its Figure and Agg canvas) can be imported.

    >>> isinstance(matplotlib_available(), bool)
    True
    """
    return extra_available(*_MODULES)


def require_matplotlib(purpose: str = "the plots of this report", alternative: str | None = "--no-plots") -> None:
    """Raise :class:`~stbin._extras.MissingExtraError` unless matplotlib can be imported
    (the check of :func:`stbin._extras.require_extra`, for the ``reports`` extra).

    Call it before the work starts, so that a missing extra costs the user nothing.

    Args:
        purpose: what needs matplotlib, for the message ("the plots of this report").
        alternative: the option that runs without plots, or None if there is none.

    >>> require_matplotlib() if matplotlib_available() else None
    """
    if not matplotlib_available():
        raise missing_extra("matplotlib", extra="reports", purpose=purpose,
                            alternative=f"pass {alternative} to write the report without plots" if alternative else None)


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.2),
               dpi: float = 100, **subplots_kw: Any) -> tuple[Any, Any]:
    """A new ``Figure`` with an Agg canvas and its axes (``Figure.subplots``), no pyplot.

    Args:
        nrows, ncols: the grid of axes; one axes object is returned for 1 x 1, else an array.
        figsize: inches; dpi: resolution (``save_figure`` may override it).
        **subplots_kw: passed to :meth:`matplotlib.figure.Figure.subplots` (``sharex``, ...).

    Raises:
        MissingExtraError: matplotlib is not installed.

    >>> if matplotlib_available():
    ...     fig, ax = new_figure()
    ...     _ = ax.plot([0, 1], [1, 0])
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, **subplots_kw)
    return fig, axes


def save_figure(fig: Any, path: str | os.PathLike, dpi: float | None = None) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix: png, svg, pdf); returns the path.

    >>> import tempfile
    >>> if matplotlib_available():
    ...     fig, ax = new_figure()
    ...     with tempfile.TemporaryDirectory() as d:
    ...         print(save_figure(fig, Path(d) / "f.png").read_bytes()[:4])
    b'\\x89PNG'
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if not fmt:
        raise ValueError(f"figure path {path} needs a suffix (.png, .svg or .pdf)")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi if dpi is not None else "figure")
    data = buf.getvalue()
    return atomic_write(path, lambda f: f.write(data))


def colormap(name: str) -> Any:
    """A registered matplotlib colormap (e.g. ``"viridis"`` for ordered series), without pyplot.

    >>> if matplotlib_available():
    ...     len(colormap("viridis")(0.5))
    4
    """
    require_matplotlib()
    import matplotlib

    return matplotlib.colormaps[name]
