"""Atomic writes of report files (a crash mid-write never leaves half a report)."""

from __future__ import annotations

import os
from pathlib import Path

from stbin._io import atomic_write

__all__ = ["write_text"]


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, ending in exactly one newline) to ``path`` atomically; returns the path.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_text(Path(d) / "report.md", "# title")
    ...     p.read_text()
    '# title\\n'
    """
    data = (text.rstrip("\n") + "\n").encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))
