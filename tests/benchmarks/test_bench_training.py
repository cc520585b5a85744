"""benchmarks/bench_training.py runs as a user would, and ``--torch-sign`` really switches the sign's path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _table(stdout: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| preset")]


def test_the_table_has_one_row_per_preset_with_consistent_ratios(run_benchmark):
    r = run_benchmark("bench_training.py", "--presets", "sbn_mnist", "--repeats", "1", "--min-time", "0.02",
                      "--clock", "cpu")
    assert r.returncode == 0, r.stderr
    rows = _table(r.stdout)
    assert len(rows) == 1 and rows[0][0] == "sbn_mnist"
    binary, flt, ratio = float(rows[0][4]), float(rows[0][5]), float(rows[0][6])
    assert binary > 0 and flt > 0 and abs(ratio - binary / flt) <= 0.01 + 0.01 * ratio
    assert "sign by torch's operations" not in r.stdout


PROBE = """
import runpy, sys
import stbin.estimators._elementwise as e


class Boom:
    def __getattr__(self, name):
        raise RuntimeError("kernel called")


e._kernel = Boom()
sys.argv = ["bench_training.py"] + sys.argv[1:]
runpy.run_path("benchmarks/bench_training.py", run_name="__main__")
"""


@pytest.mark.slow
def test_torch_sign_runs_the_sign_without_its_kernels():
    # the sign kernels are replaced by an object that fails when used: --torch-sign must not use them,
    # the default run must
    args = ["--presets", "binarynet_cifar10", "--repeats", "1", "--min-time", "0.01", "--clock", "cpu"]
    ok = subprocess.run([sys.executable, "-c", PROBE, *args, "--torch-sign"], capture_output=True, text=True,
                        cwd=ROOT, timeout=600)
    assert ok.returncode == 0, ok.stderr
    assert "sign by torch's operations" in ok.stdout and len(_table(ok.stdout)) == 1
    bad = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert bad.returncode != 0 and "kernel called" in bad.stderr


def test_torch_sign_disables_the_kernels_during_the_run_only(monkeypatch, capsys):
    # fast version of the test above: the benchmark's own function sees the kernel threshold switched off
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import bench_training
    finally:
        sys.path.pop(0)
    from stbin.estimators._common import THRESHOLDS

    seen = []

    def fake_bench(preset, repeats, min_time, compiled=False):
        seen.append(THRESHOLDS.elementwise_kernel_min_numel)
        return {"preset": preset, "model": "m", "shape": "1x1", "batch": 1, "binary": 2.0, "float": 4.0,
                "ratio": 0.5}

    monkeypatch.setattr(bench_training, "bench", fake_bench)
    before = THRESHOLDS.elementwise_kernel_min_numel
    assert bench_training.main(["--presets", "a", "--torch-sign"]) == 0
    assert bench_training.main(["--presets", "b"]) == 0
    assert seen == [1 << 62, before] and THRESHOLDS.elementwise_kernel_min_numel == before
    assert "sign by torch's operations" in capsys.readouterr().out
