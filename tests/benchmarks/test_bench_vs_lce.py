"""benchmarks/bench_vs_lce.py where Larq Compute Engine is not installed (stbin's own environment)."""

from __future__ import annotations

import ast
import importlib.util
import os

import pytest


@pytest.mark.skipif(importlib.util.find_spec("larq_compute_engine") is not None, reason="LCE is installed here")
def test_without_lce_says_so_in_one_line_and_exits_0(run_benchmark, assert_says_in_one_line):
    assert_says_in_one_line(run_benchmark("bench_vs_lce.py", timeout=120), "Larq Compute Engine is not installed")


def test_the_script_imports_neither_torch_nor_stbin(repo_root):
    """It runs in LCE's own environment, which has TensorFlow and not torch."""
    tree = ast.parse(open(os.path.join(repo_root, "benchmarks", "bench_vs_lce.py")).read())
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert "larq_compute_engine" in modules
    assert not [m for m in modules if m.split(".")[0] in ("torch", "stbin")], modules
