"""Shared test helpers."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

# Deterministic hypothesis runs on CI; a small budget keeps the suite fast on 2 cores.
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

torch.set_num_threads(1)

FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


def _split_row(line: str) -> list[str]:
    """Cells of one source line of a GFM table: split on pipes not right after a backslash
    (GFM: a pipe preceded by a backslash is always part of the cell, even after ``\\``)."""
    s = line.strip()
    cells, cur, i = [], "", 0
    if s.startswith("|"):
        s = s[1:]
    while i < len(s):
        ch = s[i]
        if ch == "|" and not (i and s[i - 1] == "\\"):
            cells.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    if cur.strip():
        cells.append(cur)
    return cells


def parse_markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Parse ``text`` with markdown-it-py (CommonMark + GFM tables) and check its tables.

    Returns ``(header cells, body rows)`` per table (cell text as parsed). Fails the test if
    a table lacks a header, if a source row of a table has a different number of cells than
    its header (markdown-it would silently pad or cut it), or if a line outside code blocks
    starts with ``|`` but is not part of a table (a table that did not render).
    """
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    lines = text.splitlines()
    covered: set[int] = set()
    tables = []
    for i, tok in enumerate(tokens):
        if tok.type in ("fence", "code_block", "html_block") and tok.map:
            covered.update(range(*tok.map))
        if tok.type != "table_open":
            continue
        assert tok.map is not None
        start, end = tok.map
        covered.update(range(start, end))
        head: list[list[str]] = []
        body: list[list[str]] = []
        section, row = None, []
        j = i + 1
        while tokens[j].type != "table_close":
            t = tokens[j]
            if t.type in ("thead_open", "tbody_open"):
                section = t.type
            elif t.type == "tr_open":
                row = []
            elif t.type == "inline":
                row.append(t.content)
            elif t.type == "tr_close":
                (head if section == "thead_open" else body).append(row)
            j += 1
        assert len(head) == 1 and head[0], f"table at line {start + 1} has no header row"
        ncols = len(head[0])
        for k in range(start, end):
            if k == start + 1:
                continue  # the delimiter row
            n = len(_split_row(lines[k]))
            assert n == ncols, f"line {k + 1} has {n} cells, its table's header {ncols}: {lines[k]!r}"
        tables.append((head[0], body))
    stray = [k + 1 for k, line in enumerate(lines) if line.lstrip().startswith("|") and k not in covered]
    assert not stray, f"lines {stray} look like table rows but are not part of a rendered table"
    return tables


@pytest.fixture(scope="session")
def markdown_tables():
    """The checking Markdown table parser :func:`parse_markdown_tables` (needs markdown-it-py)."""
    return parse_markdown_tables


@pytest.fixture
def two_threads():
    """torch (and so stbin's sampling kernel) with two threads for the test, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)
