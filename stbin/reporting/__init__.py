"""The reporting layer shared by every command that writes a report.

* :mod:`stbin.reporting.markdown`: escaped Markdown tables (:func:`table`), cell and number
  formatting, inline code;
* :mod:`stbin.reporting.figures`: figures through matplotlib's object API (no pyplot, the
  global backend untouched), atomic saving, and the one policy for a missing matplotlib
  (:func:`require_matplotlib`, called before work starts);
* :mod:`stbin.reporting.palette`: a colour-blind-safe style (colour, line style, marker)
  per series, distinct for up to 12 series;
* :mod:`stbin.reporting.files`: atomic writes of the report text.

>>> from stbin.reporting import table
>>> print(table(["a", "b"], [[1, 2.5]]))
| a | b |
|---|---|
| 1 | 2.5 |
"""

from stbin.reporting.figures import (
    INSTALL_HINT,
    MissingExtraError,
    colormap,
    matplotlib_available,
    new_figure,
    require_matplotlib,
    save_figure,
)
from stbin.reporting.files import write_text
from stbin.reporting.markdown import code, escape_cell, format_cell, format_number, plural, table
from stbin.reporting.palette import COLORS, LINESTYLES, MARKERS, MAX_DISTINCT, series_style, series_styles

__all__ = [
    "COLORS",
    "INSTALL_HINT",
    "LINESTYLES",
    "MARKERS",
    "MAX_DISTINCT",
    "MissingExtraError",
    "code",
    "colormap",
    "escape_cell",
    "format_cell",
    "format_number",
    "matplotlib_available",
    "new_figure",
    "plural",
    "require_matplotlib",
    "save_figure",
    "series_style",
    "series_styles",
    "table",
    "write_text",
]
