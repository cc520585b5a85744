"""benchmarks/bench_vs_lce.py where Larq Compute Engine is not installed (stbin's own environment)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(importlib.util.find_spec("larq_compute_engine") is not None, reason="LCE is installed here")
def test_without_lce_says_so_in_one_line_and_exits_0():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_vs_lce.py")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and "Larq Compute Engine is not installed" in lines[0], r.stdout
    assert r.stderr == ""


def test_the_script_imports_neither_torch_nor_stbin():
    """It runs in LCE's own environment, which has TensorFlow and not torch."""
    code = open(os.path.join(ROOT, "benchmarks", "bench_vs_lce.py")).read()
    imports = [line.strip() for line in code.splitlines() if line.strip().startswith(("import ", "from "))]
    assert imports and not any(" torch" in i or " stbin" in i for i in imports), imports
