"""benchmarks/gpu_check.py without CUDA, and the sampling-only row of bench_layers.py."""

from __future__ import annotations

import json
import os

import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs the real checks (minutes)")
def test_gpu_check_without_cuda_says_so_in_one_line_and_exits_0(run_benchmark, assert_says_in_one_line):
    assert_says_in_one_line(run_benchmark("gpu_check.py"), "CUDA is not available")


def test_bench_layers_sampling_row_reports_weights_per_second(tmp_path, run_benchmark):
    out = tmp_path / "s.json"
    r = run_benchmark("bench_layers.py", "--only-sampling", "--sampling-numel", "65536", "--repeats", "1",
                      "--block", "0.01", "--no-bitorch", "--json", str(out))
    assert r.returncode == 0, r.stderr
    row = json.loads(out.read_text())["sampling"]
    assert row["numel"] == 65536
    for k in ("copy", "stbin", "previous"):
        assert row[f"{k}_ms"] > 0 and row[f"{k}_weights_per_s"] == pytest.approx(65536 / (row[f"{k}_ms"] / 1e3))
    assert row["stbin/copy"] == pytest.approx(row["stbin_ms"] / row["copy_ms"])
    assert "stbin/copy" in r.stdout and "G weights/s" in r.stdout


def test_gpu_check_training_code_runs_on_cpu_with_bfloat16(capsys, repo_root):
    """The script's AMP training steps, on CPU: its calls into stbin are valid without a GPU."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(repo_root, "benchmarks", "gpu_check.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    failures = mod.preset_amp_steps(2, device="cpu", dtypes=(torch.bfloat16,), presets=["sbn_mnist", "lenet5_mnist"])
    assert failures == []
    out = capsys.readouterr().out
    assert out.count(" ok") == 2 and "FAILED" not in out
