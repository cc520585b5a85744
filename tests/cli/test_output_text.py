"""What a user reads is plain, clean text: the help of ``stbin`` and of every sub-command,
the listings, the commands' output and the reports they write carry no reStructuredText /
Markdown markup meant for the API docs, no internal section labels, no "1 epochs", and
every Markdown table of a report renders with its header."""

from __future__ import annotations

import re

import pytest

from stbin.cli._text import plain_text
from stbin.cli.main import COMMANDS, main

# Markup that is not meant for a terminal: inline literals, strong emphasis, Sphinx roles,
# a literal-block marker.
MARKUP = {
    "double backticks": re.compile(r"``"),
    "**bold**": re.compile(r"\*\*[^*\s]"),
    "reStructuredText role": re.compile(r":[a-z]+:`"),
    "literal-block '::'": re.compile(r"\S::$", re.M),
}
# Labels of an internal brief: "SPEC A2", "(SPEC C)", "B1", "A2-A3" used as references.
LABELS = {
    "internal 'SPEC' label": re.compile(r"\bSPEC\b"),
    "internal section label": re.compile(r"(?<![\w.-])[A-D][1-9](?:-[A-D]?[1-9])?(?![\w.-])"),
}
NOUNS = "epoch|run|seed|image|step|sample|layer|estimator|point|start|snapshot|iteration|thread|process|recipe"
PLURAL_AFTER_ONE = re.compile(rf"(?<![\d.,])\b1 (?:{NOUNS})s\b")


def leaks(text: str, patterns: dict[str, re.Pattern[str]] = {**MARKUP, **LABELS}) -> list[str]:
    found = []
    for what, pat in patterns.items():
        for m in pat.finditer(text):
            line = text[text.rfind("\n", 0, m.start()) + 1:text.find("\n", m.end()) % (len(text) + 1)]
            found.append(f"{what}: {line.strip()!r}")
    return found


def run_main(capsys, *argv: str) -> str:
    """Run ``stbin ARGV`` in this process; its stdout (``--help`` exits with 0)."""
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    assert rc in (0, None), f"stbin {' '.join(argv)} exited with {rc}: {err}"
    return out


def test_the_scan_finds_what_it_looks_for():
    bad = ("Run ``stbin train``.\n**default** run\nsee :func:`train`\nExamples::\n"
           "the lab (SPEC A4)\nsee A2-A3 and B1\n1 epochs")
    found = leaks(bad)
    assert {f.split(": ")[0] for f in found} == set(MARKUP) | set(LABELS)
    assert sum("section label" in f for f in found) == 3  # A4, A2-A3, B1
    assert PLURAL_AFTER_ONE.findall(bad) == ["1 epochs"]
    assert not leaks("x86, 1e-3, fp16, 2-5-5-5, sha256, float32, ResNet-20, B=1, L1 cache, 0.1 s, 11 epochs")
    assert not PLURAL_AFTER_ONE.search("11 epochs, 0.1 steps, 1 epoch, 2 runs, 1,1 samples")
    assert not leaks(plain_text(bad.split("\nthe lab")[0]))


@pytest.mark.parametrize("argv", [[], *[[name] for name in COMMANDS]], ids=lambda a: " ".join(a) or "stbin")
def test_help_is_plain_text(capsys, argv):
    out = run_main(capsys, *argv, "--help")
    assert out.startswith("usage: stbin")
    assert not leaks(out), "\n".join(leaks(out))


def test_every_command_is_in_the_top_level_help(capsys):
    out = run_main(capsys, "--help")
    assert all(name in out for name in COMMANDS)


@pytest.mark.parametrize("argv", [["train", "--list-presets"], ["reproduce", "--list"]], ids=" ".join)
def test_listings_are_plain_text(capsys, argv):
    out = run_main(capsys, *argv)
    lines = out.splitlines()
    assert len(lines) >= 3
    assert not leaks(out), "\n".join(leaks(out))
    # one entry per line starts in the first column, its text aligned with its continuations
    starts = {len(line) - len(line.lstrip()) for line in lines if line.startswith(" ")}
    firsts = {len(re.match(r"\S+\s+", line).group(0)) for line in lines if not line.startswith(" ")}
    assert len(firsts) == 1 and starts <= firsts, out


def test_quick_is_described_the_same_way_everywhere(capsys):
    helps = {}
    for name in COMMANDS:
        out = run_main(capsys, name, "--help")
        m = re.search(r"^  --quick( +)(.*(?:\n {8,}\S.*)*)", out, re.M)  # the help and its continuation lines
        if m:
            helps[name] = " ".join(m.group(2).split())
    assert len(helps) >= 2, helps
    for name, text in helps.items():
        assert re.match(r"smoke run: .+ \(about \d+ (?:s|min)(?: per \w+)? on 2 CPU cores\)$", text), (name, text)


def scan_report(text: str, markdown_tables) -> None:
    tables = markdown_tables(text)
    assert tables, "a report without a table"
    for head, _ in tables:
        assert all(h.strip() for h in head)
    found = leaks(text, LABELS) + [m.group(0) for m in PLURAL_AFTER_ONE.finditer(text)]
    assert not found, "\n".join(found)


def test_training_run_output_and_report(tmp_path, capsys, markdown_tables):
    out = run_main(capsys, "train", "--preset", "tiny", "--epochs", "1", "--no-progress", "--no-plots",
                   "--out", str(tmp_path / "run"))
    assert not leaks(out, LABELS) and not PLURAL_AFTER_ONE.search(out), out
    assert "1 epoch," in out
    text = (tmp_path / "run" / "report.md").read_text()
    scan_report(text, markdown_tables)
    assert "1 epoch," in text and "![" not in text and not list((tmp_path / "run").glob("*.png"))


def test_theory_quick_report(tmp_path, capsys, markdown_tables):
    out = run_main(capsys, "theory", "--quick", "--no-progress", "--no-plots", "--out", str(tmp_path / "th"))
    assert not leaks(out, LABELS), out
    scan_report((tmp_path / "th" / "report.md").read_text(), markdown_tables)
