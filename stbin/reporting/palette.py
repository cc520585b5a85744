"""One colour-blind-safe style per plotted series, distinct for up to 12 series.

Colours: the eight of Okabe & Ito ("Color Universal Design", 2008) followed by four of Paul
Tol's "muted" scheme (Tol, "Colour Schemes", SRON technical note, 2021). Colour alone cannot
keep twelve lines apart for every reader, so each series also gets its own marker (12
different ones) and a line style from a cycle of four; series that share a line style have
colours chosen to stay far apart (CIELAB distance > 20) also under simulated protanopia,
deuteranopia and tritanopia (Machado, Oliveira & Fernandes, IEEE TVCG 2009, severity 1).
Series 13 and later repeat the cycle.
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["COLORS", "LINESTYLES", "MARKERS", "MAX_DISTINCT", "series_style", "series_styles"]

#: Okabe-Ito (blue, orange, bluish green, vermillion, reddish purple, sky blue, yellow,
#: black), then Tol muted (wine, green, olive, indigo).
COLORS: tuple[str, ...] = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
    "#882255", "#117733", "#999933", "#332288",
)
#: Line styles, cycled with period 4 (solid, dashed, dash-dot, dotted).
LINESTYLES: tuple[str, ...] = ("-", "--", "-.", ":")
#: One marker per series.
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
#: Number of series whose (colour, line style, marker) are all different.
MAX_DISTINCT = len(COLORS)


def series_style(index: int, marker: bool = True, markevery: Any = None) -> dict[str, Any]:
    """Matplotlib keyword arguments (``color``, ``linestyle``, ``marker``) of series ``index``.

    Args:
        index: 0-based series number (any non-negative integer; the styles repeat after 12).
        marker: include the series' marker (turn off for lines of thousands of points, or
            pass ``markevery``).
        markevery: passed to matplotlib when given (e.g. ``0.1``: a marker every tenth of
            the line).

    >>> series_style(0)
    {'color': '#0072B2', 'linestyle': '-', 'marker': 'o'}
    >>> series_style(13, marker=False)
    {'color': '#E69F00', 'linestyle': '--'}
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"series index must be a non-negative integer, got {index!r}")
    style: dict[str, Any] = {"color": COLORS[index % len(COLORS)],
                             "linestyle": LINESTYLES[index % len(LINESTYLES)]}
    if marker:
        style["marker"] = MARKERS[index % len(MARKERS)]
        if markevery is not None:
            style["markevery"] = markevery
    return style


def series_styles(names: Iterable[Any], marker: bool = True, markevery: Any = None) -> dict[Any, dict[str, Any]]:
    """A style per name, in the order given (so a name keeps its style across the plots of
    one report as long as the same sequence of names is passed).

    >>> s = series_styles(["identity", "relu"])
    >>> s["relu"]["color"], s["relu"]["linestyle"]
    ('#E69F00', '--')
    """
    out: dict[Any, dict[str, Any]] = {}
    for name in names:
        if name in out:
            raise ValueError(f"series name {name!r} is given twice")
        out[name] = series_style(len(out), marker=marker, markevery=markevery)
    return out
