"""`stbin theory`: the real command writes a report with plots; bad options fail in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
    env.pop("STBIN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "stbin.cli.main", "theory", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_quick_run_writes_report_and_plots(tmp_path):
    out = tmp_path / "theory"
    res = run_cli("--quick", "--out", str(out), "--seed", "1")
    assert res.returncode == 0, res.stderr
    report = (out / "report.md").read_text()
    for heading in ("## Findings", "## (a) Closed forms against Monte Carlo", "## (b) Coarse gradient descent",
                    "## (c) One step on the empirical loss", "## (d) Correlation"):
        assert heading in report
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert {"descent_random.png", "descent_spurious.png", "one_step.png", "correlation.png"} <= set(images)
    for name in images:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name
    # The findings are stated with numbers, and the MC table has errors and standard errors.
    assert "max abs err" in report and "max s.e." in report
    assert re.search(r"\|\| ?E g_id\|\| = \d", report)


@pytest.mark.parametrize("argv,message", [
    (["--m", "1"], "--m must be >= 2"),
    (["--samples", "0"], "--samples must be >= 1"),
    (["--lr", "-0.5"], "--lr must be a positive number"),
    (["--seed", "-3"], "--seed must be >= 0"),
    # before: a numpy ArrayMemoryError traceback
    (["--steps", "100000000000"], "steps x (m + n) must be <= 1e+08"),
])
def test_bad_values_exit_2_with_one_line(tmp_path, run_cli, assert_user_error, argv, message):
    assert_user_error(run_cli("theory", "--quick", "--out", str(tmp_path / "o"), *argv, inprocess=True), message)
    assert not (tmp_path / "o").exists()


def test_out_is_a_file(tmp_path, run_cli, assert_user_error):
    f = tmp_path / "file"
    f.write_text("x")
    assert_user_error(run_cli("theory", "--quick", "--out", str(f), inprocess=True), "not a folder")


def test_bad_option_in_a_subprocess():
    res = run_cli("--quick", "--steps", "0")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["stbin theory: error: --steps must be >= 1, got 0"]
    res = run_cli("--no-such-option")
    assert res.returncode == 2 and "unrecognized arguments: --no-such-option" in res.stderr.strip().splitlines()[-1]


def test_help_lists_the_options():
    res = run_cli("--help")
    assert res.returncode == 0
    for opt in ("--out", "--quick", "--seed", "--m", "--n", "--samples", "--steps", "--lr"):
        assert opt in res.stdout


def test_a_diverging_descent_names_the_options_to_change(tmp_path, run_cli, assert_user_error):
    """Before: 'stbin theory: error: w must contain only finite numbers' after the Monte Carlo part."""
    r = run_cli("theory", "--quick", "--no-plots", "--no-progress", "--lr", "10", "--out", str(tmp_path / "o"),
                inprocess=True)
    assert_user_error(r, "diverged at step")
    assert "pass a smaller --lr (now 10) or smaller --m / --n (now 5 / 8)" in r.stderr
