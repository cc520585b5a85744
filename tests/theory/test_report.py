"""The theory report (stbin.theory.report): every table renders with its header (headers
such as ||w|| included), the figures are real PNGs, runs are reproducible, and a missing
matplotlib is handled by the one reporting policy (simulated in a subprocess)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from stbin.reporting import INSTALL_HINT
from stbin.theory.lab import TheoryConfig
from stbin.theory.report import run_report

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = dict(samples=2000, steps=60, starts=1, lr_sweep=(0.2,), sampled_batch=50, onestep_sizes=(10, 100),
            onestep_reps=5, onestep_lrs=5, corr_samples=2000, corr_points=2, random_points=20, census_starts=3)
BLOCK_MATPLOTLIB = textwrap.dedent("""
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "matplotlib" or name.startswith("matplotlib."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, Block())
""")


def tiny_config(seed: int = 3) -> TheoryConfig:
    return TheoryConfig.preset(quick=True, seed=seed, **TINY)


def without_timing(report: str) -> str:
    return re.sub(r"in \d+\.\d s\.", "in <t> s.", report)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("STBIN_DEBUG", None)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_report_tables_render_with_headers_and_figures_are_pngs(tmp_path, markdown_tables):
    path = run_report(tiny_config(), tmp_path / "th", progress=False)
    text = path.read_text()
    tables = markdown_tables(text)
    assert len(tables) >= 9
    headers = [h for head, _ in tables for h in head]
    # Headers with pipes (norms, absolute values) are header cells of their tables.
    assert "||w||" in headers and "min ||w||" in headers and "max |closed - quadrature|" in headers
    for head, body in tables:
        assert all(h.strip() for h in head)
        assert all(len(row) == len(head) for row in body)
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"descent_random.png", "descent_spurious.png", "descent_sampled.png", "one_step.png",
            "correlation.png"} <= set(images)
    for name in images:
        assert (path.parent / name).read_bytes()[:8] == PNG_MAGIC, name
    # The relative error of the clipped-ReLU check is taken where the closed form is not zero
    # (it is zero up to rounding at the spurious minimiser, where a ratio would be ~1e14).
    rel = float(re.search(r"relative error <= (\S+) across the points where it is nonzero", text).group(1))
    assert 0 < rel < 100  # Monte Carlo noise of 2000 samples, not 1e14
    assert "SPEC" not in text and not re.search(r"\b[AB]\d\b", text)
    # A second run with the same seed writes the same report (figures not redrawn).
    again = run_report(tiny_config(), tmp_path / "again", progress=False, plots=False)
    assert without_timing(re.sub(r"!\[[^\]]*\]\([^)]+\)\n\n", "", text)) == without_timing(again.read_text())
    assert not list((tmp_path / "again").glob("*.png"))


def test_relative_error_is_undefined_where_the_closed_form_is_rounding_noise():
    from stbin.theory.experiments import _vec_err

    zero = _vec_err(np.array([0.01, -0.02]), np.array([0.01, 0.01]), np.array([3e-17, -1e-17]))
    assert math.isnan(zero["rel_err"]) and zero["max_z"] == pytest.approx(2.0)
    real = _vec_err(np.array([1.01, 0.0]), np.array([0.01, 0.01]), np.array([1.0, 0.0]))
    assert real["rel_err"] == pytest.approx(0.01)


def test_no_plots_runs_without_matplotlib(tmp_path):
    res = run_python(BLOCK_MATPLOTLIB + textwrap.dedent(f"""
        from pathlib import Path
        from stbin.theory.lab import TheoryConfig
        from stbin.theory.report import run_report
        cfg = TheoryConfig.preset(quick=True, seed=1, **{TINY!r})
        print(run_report(cfg, Path(sys.argv[1]), progress=False, plots=False))
        assert "matplotlib" not in sys.modules
    """), str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "o" / "report.md").read_text()
    assert "## (d) Correlation" in text and "![" not in text
    assert not list((tmp_path / "o").glob("*.png"))


def test_cli_without_matplotlib_fails_before_work_with_the_install_hint(tmp_path):
    out = tmp_path / "o"
    res = run_python(BLOCK_MATPLOTLIB + "from stbin.cli.main import main\nsys.exit(main(sys.argv[1:]))",
                     "theory", "--quick", "--out", str(out))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stbin theory: error: ")
    assert INSTALL_HINT in lines[0] and "--no-plots" in lines[0]
    assert not out.exists()  # nothing was written: the check ran before the work


def test_cli_help_mentions_no_plots_and_no_internal_labels():
    res = run_python("from stbin.cli.main import main\nimport sys\nsys.exit(main(sys.argv[1:]))", "theory", "--help")
    assert res.returncode == 0
    assert "--no-plots" in res.stdout and "SPEC" not in res.stdout
