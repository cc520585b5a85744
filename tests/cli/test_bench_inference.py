"""``stbin bench-inference --json`` on tiny sizes: the keys exist and are consistent (no timing assertions)."""

import json

from stbin.training import save_checkpoint


TINY = ["--hidden", "32", "--batch", "8", "--linear-size", "130", "--linear-batch", "9", "--repeats", "2",
        "--threads", "1"]


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
