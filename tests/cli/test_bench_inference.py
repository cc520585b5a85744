"""``stbin bench-inference --json`` on tiny sizes: the keys exist and are consistent (no timing assertions)."""

import json
import subprocess
import sys

import pytest

from stbin.training import save_checkpoint


INT64_PLANS = {"STBIN_INLINE_INTEGERS": "0"}  # a cold compile of a ResNet's plan in seconds, not minutes
TINY = ["--hidden", "32", "--batch", "8", "--linear-size", "130", "--linear-batch", "9", "--repeats", "2",
        "--threads", "1", "--networks", "none"]


def test_bench_inference_json_demo_network(run_cli):
    r = run_cli("bench-inference", *TINY, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "linear_4096_speedup" in out and out["linear_4096_speedup"] is None  # size 130 here
    lin = out["linear"]
    assert lin["size"] == 130 and lin["exact"] is True and lin["speedup"] > 0 and out["linear_speedup"] > 0
    assert lin["weights_packed_bytes"] == 130 * 3 * 8 and lin["popcount_peak_gmacs_per_core"] > 0
    assert lin["speedup"] == min(lin["wall_speedup"], lin["cpu_time_speedup"])
    m = out["model"]
    assert m["predictions_identical"] is True and m["name"] == "sbn_mlp"
    assert m["binary_weights_float32_bytes"] == 2 * 32 * 32 * 4 and m["binary_weights_packed_bytes"] == 2 * 32 * 8
    assert m["binary_weights_ratio"] == 16.0 and m["memory_ratio"] > 1
    for key in ("torch_images_per_s", "engine_images_per_s", "throughput_speedup", "latency_speedup"):
        assert m[key] > 0


def test_bench_inference_table_on_a_checkpoint(tmp_path, run_cli):
    from stbin.models import build_model

    kwargs = {"in_features": 20, "hidden": [64, 64], "num_classes": 3}
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"model": {"name": "sbn_mlp", "kwargs": kwargs},
                           "model_state": build_model("sbn_mlp", **kwargs).state_dict()})
    r = run_cli("bench-inference", str(path), *TINY, "--skip-linear")
    assert r.returncode == 0, r.stderr
    assert "binary linear" not in r.stdout and "throughput (batch 8)" in r.stdout
    assert "binary weights 16384 B -> 512 B (32.0x)" in r.stdout
    assert "predictions identical on the benchmark batch: True" in r.stdout


def test_bench_inference_errors(run_cli, assert_user_error):
    line = assert_user_error(run_cli("bench-inference", "--repeats", "0", inprocess=True))
    assert line == "stbin bench-inference: error: --repeats must be >= 1, got 0"
    assert_user_error(run_cli("bench-inference", "--threads", "999", "--skip-linear", inprocess=True),
                      "exceeds numba's maximum")


def test_bench_inference_networks_against_float_twins(run_cli):
    pytest.importorskip("onnx")  # the dev extra installs onnx and onnxruntime
    pytest.importorskip("onnxruntime")
    args = [a for a in TINY if a not in ("--networks", "none")]
    # a cold numba cache compiles every kernel and plan of both networks first: with the plans' integers as int64
    # values (the same outputs; literal ones are tested in tests/deploy) in 1-2 minutes on a loaded 2-core machine,
    # not 3; Bi-Real ResNet-18's engine is checked against PyTorch in tests/deploy
    r = run_cli("bench-inference", *args, "--skip-linear", "--networks", "resnet20,mlp",
                "--width", "0.125", "--net-batch", "3", "--json", timeout=900, env=INT64_PLANS)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["linear_4096_speedup"] is None
    assert set(out["networks"]) == {"resnet20", "mlp"}
    for name, n in out["networks"].items():
        for b in (1, 3):
            m = n[f"batch_{b}"]
            assert m["batch"] == b and m["predictions_identical"] is True, (name, m)
            for key in ("engine_ms", "torch_fp32_ms", "onnxruntime_fp32_ms"):
                assert m[key] > 0
            assert m["speedup_vs_onnxruntime"] == pytest.approx(m["onnxruntime_fp32_ms"] / m["engine_ms"], rel=1e-12)
            calls = m["burst_calls"]
            assert set(calls) == {"engine", "torch_fp32", "onnxruntime_fp32"}, calls
            assert all(isinstance(c, int) and 1 <= c <= 200 for c in calls.values()), calls
    assert out["burst_ms"] == 10.0


def test_bench_inference_table_prints_ratios_in_one_direction(run_cli):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    args = [a for a in TINY if a not in ("--networks", "none")]
    r = run_cli("bench-inference", *args, "--networks", "resnet20", "--width", "0.125", "--net-batch", "2",
                timeout=900, env=INT64_PLANS)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.strip().startswith("resnet20")]
    assert len(rows) == 2
    for line in rows:
        assert line.count("engine is") == 2 and ("faster" in line or "slower" in line)
    assert "speedup" not in r.stdout


def test_bench_inference_network_errors(capsys):
    from stbin.cli.main import main

    assert main(["bench-inference", "--networks", "resnet50"]) == 2
    assert "--networks: unknown network 'resnet50'" in capsys.readouterr().err
    assert main(["bench-inference", "--net-batch", "0"]) == 2
    assert "--net-batch must be >= 1, got 0" in capsys.readouterr().err
    for bad in ("-1", "nan", "2000"):
        assert main(["bench-inference", "--burst-ms", bad, "--networks", "none"]) == 2
        assert f"--burst-ms must be in [0, 1000], got {float(bad)}" in capsys.readouterr().err
    assert main(["bench-inference", "--input-shape", "0,28,28", "--networks", "none"]) == 2
    assert "--input-shape must be positive integers" in capsys.readouterr().err


def test_a_bad_inline_integers_setting_is_refused_before_work(run_cli, assert_user_error):
    r = run_cli("bench-inference", *TINY, env={"STBIN_INLINE_INTEGERS": "sometimes"})
    assert_user_error(r, "STBIN_INLINE_INTEGERS", "got 'sometimes'")
    assert r.stdout == ""


def test_bench_inference_without_onnxruntime_is_refused_before_work():
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "from stbin.cli.main import main\n"
            "sys.exit(main(['bench-inference', '--networks', 'resnet20', '--repeats', '1']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "onnxruntime is needed for the onnxruntime twins of --networks" in lines[0]
    assert "pip install 'stbin[onnx]'" in lines[0] and "--networks none" in lines[0]
    assert r.stdout == ""


def test_bursts_call_each_contestant_consecutively_and_time_per_call(monkeypatch):
    """Each round times a burst of consecutive calls per contestant and divides by its length; the burst is
    sized from the contestant's own call time (a fake clock makes every figure exact)."""
    from stbin.cli import bench_networks as bn
    from stbin.deploy.engine import COMPILE_AFTER

    clock = [0.0]
    monkeypatch.setattr(bn.time, "perf_counter", lambda: clock[0])
    log: list[str] = []

    def contestant(name: str, seconds: float):
        def f() -> None:
            log.append(name)
            clock[0] += seconds
        return f

    fast, slow = contestant("fast", 0.0004), contestant("slow", 0.003)
    medians, sizes = bn._medians([fast, slow], repeats=4, burst_ms=10.0)
    assert sizes == [25, 4]  # ceil(10 ms / 0.4 ms), ceil(10 ms / 3 ms)
    assert medians == pytest.approx([0.0004, 0.003])
    warm = log[: 2 * COMPILE_AFTER + 6]
    rounds = log[len(warm):]
    assert rounds == (["fast"] * 25 + ["slow"] * 4) * 4
    log.clear()
    medians, sizes = bn._medians([fast, slow], repeats=3, burst_ms=0.0)
    assert sizes == [1, 1] and log[2 * COMPILE_AFTER:] == ["fast", "slow"] * 3
    assert bn.burst_calls(contestant("tiny", 1e-8), 1000.0) == 200  # capped
