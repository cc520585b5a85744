"""stbin.reporting.figures and files: figures without pyplot or backend changes, atomic
writes, and the one policy for a missing matplotlib (simulated in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stbin.reporting import INSTALL_HINT, MissingExtraError, new_figure, save_figure, series_style, write_text

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run dedented ``code`` in a fresh interpreter that imports this checkout."""
    code = textwrap.dedent(code)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MPLBACKEND", None)
    env.pop("STBIN_DEBUG", None)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_figures_leave_the_backend_and_pyplot_alone(tmp_path):
    res = run_python("""
        import sys, matplotlib
        matplotlib.use("svg")  # a user's choice, e.g. in a notebook
        from stbin.reporting import new_figure, save_figure, series_style, colormap
        fig, axes = new_figure(1, 2)
        for i in range(12):
            axes[0].plot([0, 1], [i, i + 1], **series_style(i))
        axes[1].plot([0, 1], [0, 1], color=colormap("viridis")(0.3))
        save_figure(fig, sys.argv[1])
        print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
    """, str(tmp_path / "f.png"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["svg", "False"]


def test_backend_unchanged_in_process(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    before = matplotlib.get_backend()
    fig, ax = new_figure(figsize=(3, 2))
    ax.plot([0, 1, 2], [1, 0, 1], **series_style(5))
    path = save_figure(fig, tmp_path / "sub" / "f.png", dpi=50)
    assert matplotlib.get_backend() == before
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.png"]  # no temporary left behind
    svg = save_figure(fig, tmp_path / "f.svg").read_text()
    assert "<svg" in svg


def test_save_figure_needs_a_suffix(tmp_path):
    pytest.importorskip("matplotlib")
    fig, _ = new_figure()
    with pytest.raises(ValueError, match="needs a suffix"):
        save_figure(fig, tmp_path / "noext")


def test_failed_save_keeps_the_old_file(tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "f.png"
    target.write_bytes(b"old")
    fig, _ = new_figure()
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / "f.notaformat")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


def test_write_text_is_atomic_and_ends_in_one_newline(tmp_path):
    p = write_text(tmp_path / "a" / "report.md", "# t\n\n\n")
    assert p.read_text() == "# t\n"
    write_text(p, "é")
    assert p.read_bytes() == "é\n".encode()
    assert sorted(x.name for x in p.parent.iterdir()) == ["report.md"]


BLOCK_MATPLOTLIB = """
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "matplotlib" or name.startswith("matplotlib."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, Block())
    for k in [k for k in sys.modules if k == "matplotlib" or k.startswith("matplotlib.")]:
        del sys.modules[k]
"""


def test_missing_matplotlib_policy():
    res = run_python(textwrap.dedent(BLOCK_MATPLOTLIB) + textwrap.dedent("""
        from stbin.reporting import MissingExtraError, matplotlib_available, require_matplotlib, new_figure
        assert not matplotlib_available()
        for call in (require_matplotlib, new_figure):
            try:
                call()
            except MissingExtraError as e:
                assert isinstance(e, ValueError)
                print(e)
            else:
                raise SystemExit("no error")
        try:
            require_matplotlib("the curves", alternative=None)
        except ValueError as e:
            print(e)
    """))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 3
    assert all(INSTALL_HINT in line for line in lines)
    assert "--no-plots" in lines[0] and "--no-plots" not in lines[2]
    assert lines[2] == "matplotlib is needed for the curves but is not installed: " + INSTALL_HINT


def test_missing_extra_error_is_a_value_error():
    assert issubclass(MissingExtraError, ValueError)
