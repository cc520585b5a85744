"""stbin.reporting.markdown: every table renders with a header and the right cells, whatever
the cells contain (parsed with markdown-it-py, not by looking at the text)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stbin.reporting import code, escape_cell, format_cell, format_number, table


def test_headers_with_pipes_render_as_a_header(markdown_tables):
    md = table(["STE", "||w||", "|p(0) quad - closed|", "a | b"], [["relu", 0.5, 1e-9, "x|y"]])
    [(head, body)] = markdown_tables(md)
    assert head == ["STE", "||w||", "|p(0) quad - closed|", "a | b"]
    assert body == [["relu", "0.5", "1.00e-09", "x|y"]]


def test_unescaped_header_would_have_broken_the_table(markdown_tables):
    # The check has power: the hand-built form the reports used to write fails it.
    broken = "| STE | ||w|| |\n|---|---|\n| relu | 1 |"
    with pytest.raises(AssertionError):
        markdown_tables(broken)


def test_newlines_and_code_spans_stay_in_one_cell(markdown_tables):
    md = table(["what", "value"], [["two\nlines", code("a|b")], ["crlf\r\nline", "`x`"]])
    [(head, body)] = markdown_tables(md)
    assert head == ["what", "value"]
    assert body[0] == ["two<br>lines", "`a|b`"]
    assert body[1][0] == "crlf<br>line"


def test_alignment_rows():
    assert table(["a", "b", "c"], [[1, 2, 3]], align="lrc").splitlines()[1] == "|:--|--:|:-:|"
    assert table(["a", "b"], [], align=["right", None]).splitlines()[1] == "|--:|---|"


@pytest.mark.parametrize("header,rows,align,message", [
    ([], [], None, "at least one column"),
    (["a", "b"], [[1]], None, "row 0 has 1 cells, the header has 2"),
    (["a"], [[1, 2]], None, "row 0 has 2 cells"),
    (["a", "b"], [], "lx", "only l, r, c, -"),
    (["a", "b"], [], "l", "1 entries for 2 columns"),
    (["a"], [], ["middle"], "left, right, center or None"),
])
def test_bad_tables_are_rejected(header, rows, align, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        table(header, rows, align=align)


def test_cell_formats():
    assert format_cell(None) == "—"
    assert format_cell(True) == "yes" and format_cell(np.bool_(False)) == "no"
    assert format_cell(np.int64(12)) == "12" and format_cell(3) == "3"
    assert format_cell(np.float32(0.25)) == "0.25"
    assert format_cell("0.5000") == "0.5000"  # strings verbatim
    assert format_number(1e-3) == "0.001" and format_number(9.99e-4) == "9.99e-04"
    assert format_number(9999.0) == "9999" and format_number(1e4) == "1.00e+04"
    assert format_number(-2.5) == "-2.5" and format_number(math.inf) == "inf" and format_number(math.nan) == "nan"
    assert format_number(1 / 3, digits=5) == "0.33333"


def test_code_span_fences():
    assert code("plain") == "`plain`"
    assert code("a``b") == "```a``b```"
    assert code("`x") == "`` `x ``"


cell_text = st.text(alphabet=st.sampled_from(list("ab |\\`*_\n\r<>-:#")), max_size=12)


@given(header=st.lists(cell_text, min_size=1, max_size=5), data=st.data())
def test_any_text_gives_a_table_with_a_header_and_the_right_cells(markdown_tables, header, data):
    rows = data.draw(st.lists(st.lists(cell_text, min_size=len(header), max_size=len(header)), max_size=4))
    md = table(header, rows)
    [(head, body)] = markdown_tables("# title\n\n" + md + "\n\ntext after\n")
    assert len(head) == len(header)
    assert len(body) == len(rows) and all(len(r) == len(header) for r in body)
    # Pipes survive as text: as many in the parsed cells as in the input.
    assert sum(c.count("|") for c in head) == sum(h.count("|") for h in header)
    assert sum(c.count("|") for r in body for c in r) == sum(c.count("|") for r in rows for c in r)


def test_escape_cell_strips_and_escapes():
    assert escape_cell("  |x|  ") == "\\|x\\|"
    assert escape_cell(3) == "3"


def test_backslash_before_a_pipe_still_shows():
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable("table").render(table(["h"], [["a\\|b"], ["c\\\\|d"]]))
    assert "<td>a\\|b</td>" in html and "<td>c\\\\|d</td>" in html
