"""Markdown building blocks of the reports: escaped table cells, number formatting, tables.

Every table the package writes goes through :func:`table`, so that a cell or a header that
contains ``|`` (a norm ``||w||``, an absolute value ``|x|``) or a line break still renders
as one cell of a table with a header row (GitHub-flavoured Markdown tables).
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["escape_cell", "format_number", "format_cell", "table", "code", "plural"]

#: Alignment names accepted by :func:`table` and the delimiter cell each one writes.
_ALIGN = {None: "---", "left": ":--", "right": "--:", "center": ":-:"}
_PIPE = re.compile(r"(\\*)\|")
_ALIGN_SHORT = {"l": "left", "r": "right", "c": "center", "-": None}


def escape_cell(text: Any) -> str:
    r"""``str(text)`` made safe as one table cell: ``|`` becomes ``\|`` (also inside code
    spans, where GitHub-flavoured Markdown expects the same escape), backslashes right
    before a pipe are doubled (so they still show), line breaks become ``<br>`` and
    surrounding whitespace is dropped.

    >>> escape_cell("||w||")
    '\\|\\|w\\|\\|'
    >>> escape_cell("two\nlines")
    'two<br>lines'
    """
    s = str(text).replace("\r\n", "\n").replace("\r", "\n").strip()
    # A pipe preceded by a backslash is always a literal pipe in a GFM table: double the
    # backslashes in front of a pipe so that they survive, then escape the pipe itself.
    s = _PIPE.sub(lambda m: m.group(1) * 2 + "\\|", s)
    return s.replace("\n", "<br>")


def format_number(x: float, digits: int = 3) -> str:
    """A float with ``digits`` significant digits, scientific outside ``[1e-3, 1e4)``.

    ``0`` is written ``0``; values of magnitude at least 1 get one more digit; ``nan`` and
    ``inf`` are written as Python writes them.

    >>> format_number(0.012345), format_number(3.14159), format_number(123456.0), format_number(0.0)
    ('0.0123', '3.142', '1.23e+05', '0')
    """
    x = float(x)
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return str(x)
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{digits + 1}g}"
    return f"{x:.{digits - 1}e}"


def format_cell(value: Any, digits: int = 3) -> str:
    """The text of one table cell: ``None`` -> an em dash, bools -> ``yes``/``no``,
    integers as they are, other real numbers by :func:`format_number`, anything else by
    ``str`` (strings are kept verbatim, so callers control their own formatting).

    >>> [format_cell(v) for v in (None, True, 7, 0.5, "x")]
    ['—', 'yes', '7', '0.5', 'x']
    """
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return format_number(float(value), digits)
    return str(value)


def _alignments(align: str | Sequence[str | None] | None, ncols: int) -> list[str | None]:
    if align is None:
        return [None] * ncols
    if isinstance(align, str):
        bad = [c for c in align if c not in _ALIGN_SHORT]
        if bad:
            raise ValueError(f"table align string may contain only l, r, c, -, got {align!r}")
        names: list[str | None] = [_ALIGN_SHORT[c] for c in align]
    else:
        names = list(align)
        for a in names:
            if a not in _ALIGN:
                raise ValueError(f"table alignment must be one of left, right, center or None, got {a!r}")
    if len(names) != ncols:
        raise ValueError(f"table align has {len(names)} entries for {ncols} columns")
    return names


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]], align: str | Sequence[str | None] | None = None,
          digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (no trailing newline).

    Cells are formatted by :func:`format_cell` and escaped by :func:`escape_cell`, headers
    escaped too, so ``|`` and line breaks never break the table.

    Args:
        header: the column titles (at least one).
        rows: the rows; each must have exactly ``len(header)`` cells.
        align: per-column alignment: a string of ``l``/``r``/``c``/``-`` (default) letters,
            or a sequence of ``"left"``, ``"right"``, ``"center"`` or ``None``.
        digits: significant digits of floats (see :func:`format_number`).

    Raises:
        ValueError: an empty header, a row of the wrong length or a bad alignment.

    >>> print(table(["STE", "||w||"], [["relu", 0.5], ["identity", None]], align="lr"))
    | STE | \\|\\|w\\|\\| |
    |:--|--:|
    | relu | 0.5 |
    | identity | — |
    """
    header = list(header)
    if not header:
        raise ValueError("a table needs at least one column")
    aligns = _alignments(align, len(header))
    lines = ["| " + " | ".join(escape_cell(h) for h in header) + " |",
             "|" + "|".join(_ALIGN[a] for a in aligns) + "|"]
    for i, row in enumerate(rows):
        cells = list(row)
        if len(cells) != len(header):
            raise ValueError(f"table row {i} has {len(cells)} cells, the header has {len(header)}")
        lines.append("| " + " | ".join(escape_cell(format_cell(c, digits)) for c in cells) + " |")
    return "\n".join(lines)


def code(text: Any) -> str:
    """``text`` as an inline code span, with a fence longer than any run of backticks in it.

    >>> code("x"), code("a`b")
    ('`x`', '``a`b``')
    """
    s = str(text)
    longest, run = 0, 0
    for ch in s:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``n`` and ``noun`` in the right number: one epoch, two epochs (English, regular
    plural unless ``plural_form`` is given).

    Args:
        n: the count.
        noun: the singular noun.
        plural_form: the plural if it is not ``noun + "s"``.

    >>> plural(1, "epoch"), plural(3, "epoch"), plural(0, "run"), plural(2, "matrix", "matrices")
    ('1 epoch', '3 epochs', '0 runs', '2 matrices')
    """
    return f"{n} {noun if n == 1 else (plural_form or noun + 's')}"
