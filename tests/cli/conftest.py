"""Shared helpers of the CLI tests: one way to run the command, one way to check a user error.

``run_cli(*args)`` runs ``python -m stbin.cli.main ARGS`` in a new interpreter (the real
command; ``inprocess=True`` calls the same entry point in this process, much faster, with
the same dispatcher and error handling). ``assert_user_error(result, *needles)`` checks the
contract for bad input: exit code 2, exactly one line on stderr of the form
``stbin CMD: error: ...`` containing every needle, and no traceback.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from typing import Sequence

import pytest


def _run_cli(*args: str, timeout: int = 300, env: dict[str, str] | None = None,
             inprocess: bool = False) -> subprocess.CompletedProcess:
    if inprocess:
        from stbin.cli.main import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse errors
                code = e.code if isinstance(e.code, int) else 2
        return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
    full_env = None if env is None else {**os.environ, **env}
    if full_env is not None:
        full_env.pop("STBIN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "stbin.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def _assert_user_error(r: subprocess.CompletedProcess, *needles: str, command: str | None = None) -> str:
    """The one-line error contract; returns the line."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    args: Sequence[str] = r.args if isinstance(r.args, (list, tuple)) else []
    cmd = command or next((a for a in args if not str(a).startswith("-") and "/" not in str(a)
                           and a not in (sys.executable, "stbin.cli.main")), None)
    if cmd is not None:
        assert lines[0].startswith(f"stbin {cmd}: error:"), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture
def run_cli():
    return _run_cli


@pytest.fixture
def assert_user_error():
    return _assert_user_error
