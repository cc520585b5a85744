"""Shared fixtures of the benchmark-script tests: run a script of benchmarks/ as a user would."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_benchmark(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _assert_says_in_one_line(r: subprocess.CompletedProcess, text: str) -> None:
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], r.stdout
    assert r.stderr == ""


@pytest.fixture
def run_benchmark():
    """``run_benchmark(script, *args, timeout=300)``: ``python benchmarks/<script> ARGS...`` from the
    repository root, output captured."""
    return _run_benchmark


@pytest.fixture
def assert_says_in_one_line():
    """``assert_says_in_one_line(result, text)``: exit 0, empty stderr, one line of output containing ``text``."""
    return _assert_says_in_one_line


@pytest.fixture
def repo_root() -> str:
    """The repository's root folder."""
    return ROOT
