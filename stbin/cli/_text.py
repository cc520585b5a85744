"""Plain terminal text from the reStructuredText of docstrings.

The sub-commands' help comes from their module docstrings, which are written for the API
documentation (inline literals, roles, ``::`` before examples). :func:`plain_text` turns
that into what a terminal should show; :func:`build_parser` in :mod:`stbin.cli.main` runs
every description, epilog and option help through it, so no command can leak markup.
"""

from __future__ import annotations

import argparse
import re
import textwrap

_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``", re.S)
_STRONG = re.compile(r"\*\*(.+?)\*\*", re.S)


def _role_target(m: re.Match[str]) -> str:
    text = m.group(1)
    if m.group(0).split("`", 1)[1].startswith("~"):
        text = text.rsplit(".", 1)[-1]
    return text


def plain_text(text: str | None) -> str | None:
    """``text`` without reStructuredText / Markdown inline markup.

    Inline literals lose their double backticks, ``**strong**`` its stars, roles such as
    ``:func:`name``` become the name (the last component with ``~``), and a line ending in
    ``::`` (a literal block follows) ends in one colon.

    >>> plain_text("Run ``stbin train`` (**default**), see :func:`~stbin.training.train`.\\n\\nExamples::")
    'Run stbin train (default), see train.\\n\\nExamples:'
    """
    if not text:
        return text
    text = _ROLE.sub(_role_target, text)
    text = _LITERAL.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    return re.sub(r"(?<=\S)::$", ":", text, flags=re.M)


def plain_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Run the description, epilog and every option help of ``parser`` (and of its
    sub-parsers) through :func:`plain_text`; returns ``parser``."""
    parser.description = plain_text(parser.description)
    parser.epilog = plain_text(parser.epilog)
    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain_text(choice.help)
            for sub in set(action.choices.values()):
                plain_parser(sub)
    return parser


def simple_table_rows(doc: str) -> list[tuple[str, str]]:
    """The (first column, rest) rows of the first reStructuredText simple table in ``doc``.

    Continuation lines (empty first column) are joined to the row above; markup is removed.

    >>> simple_table_rows('''
    ... =====  ===========
    ... name   what
    ... =====  ===========
    ... ``a``  **first**
    ...        still first
    ... b      second
    ... =====  ===========
    ... ''')
    [('a', 'first still first'), ('b', 'second')]
    """
    lines = doc.splitlines()
    rules = [i for i, line in enumerate(lines) if re.fullmatch(r"\s*=+(\s+=+)+\s*", line)]
    if len(rules) < 3:
        return []
    width = len(lines[rules[0]].strip().split()[0])
    indent = len(lines[rules[0]]) - len(lines[rules[0]].lstrip())
    rows: list[list[str]] = []
    for line in lines[rules[1] + 1:rules[2]]:
        body = line[indent:]
        first, rest = body[:width].strip(), body[width:].strip()
        if first:
            rows.append([first, rest])
        elif rows and rest:
            rows[-1][1] += " " + rest
    return [(plain_text(a) or "", plain_text(b) or "") for a, b in rows]


def listing(rows: list[tuple[str, str]], width: int = 100) -> str:
    """Two aligned columns, the second wrapped to ``width`` characters.

    >>> print(listing([("tiny", "a few seconds"), ("sbn_mnist", "the main job")]), end="")
    tiny       a few seconds
    sbn_mnist  the main job
    """
    col = max((len(name) for name, _ in rows), default=0) + 2
    out = []
    for name, text in rows:
        wrapped = textwrap.wrap(text, width - col) or [""]
        out.append(f"{name:<{col}}{wrapped[0]}".rstrip())
        out += [" " * col + w for w in wrapped[1:]]
    return "\n".join(out) + "\n"
