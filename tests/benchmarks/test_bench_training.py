"""benchmarks/bench_training.py runs as a user would; its ``--torch-sign`` variant runs without the sign kernels."""

from __future__ import annotations

import os
import sys

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
    assert "torch sign" not in r.stdout


def _load():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import bench_training
    finally:
        sys.path.pop(0)
    return bench_training


def test_the_torch_sign_variant_runs_without_the_kernels_and_restores_them():
    bench_training = _load()
    from stbin.estimators._common import THRESHOLDS

    seen = []
    before = THRESHOLDS.elementwise_kernel_min_numel
    bench_training.torch_sign_step(lambda: seen.append(THRESHOLDS.elementwise_kernel_min_numel))()
    assert seen == [1 << 62] and THRESHOLDS.elementwise_kernel_min_numel == before


def test_torch_sign_adds_its_columns(monkeypatch, capsys):
    bench_training = _load()
    calls = []

    def fake_bench(preset, repeats, min_time, compiled=False, torch_sign=False):
        calls.append(torch_sign)
        row = {"preset": preset, "model": "m", "shape": "1x1", "batch": 1, "binary": 3.0, "float": 4.0, "ratio": 0.75}
        if torch_sign:
            row.update({"torch_sign": 2.0, "kernels/torch_sign": 1.5})
        return row

    monkeypatch.setattr(bench_training, "bench", fake_bench)
    assert bench_training.main(["--presets", "a", "--torch-sign"]) == 0
    out = capsys.readouterr().out
    assert calls == [True] and "kernels / torch sign" in out
    assert _table(out) == [["a", "m", "1x1", "1", "3", "4", "0.75", "2", "1.50"]]


def test_batch_option_sets_the_images_per_step(run_benchmark):
    r = run_benchmark("bench_training.py", "--presets", "sbn_mnist,lenet5_mnist", "--repeats", "1", "--min-time",
                      "0.01", "--batch", "7", "--clock", "cpu")
    assert r.returncode == 0, r.stderr
    assert [row[3] for row in _table(r.stdout)] == ["7", "7"]


def test_batch_preset_is_the_presets_training_batch():
    bench_training = _load()
    from stbin.training.presets import get_preset

    cfg = get_preset("resnet20_cifar10")
    assert bench_training.batch_size("resnet20_cifar10", cfg, "preset") == cfg.train.batch_size == 128
    assert bench_training.batch_size("resnet20_cifar10", cfg) == 16
    assert bench_training.batch_size("sbn_mnist", get_preset("sbn_mnist")) == 100
    assert bench_training.batch_size("sbn_mnist", get_preset("sbn_mnist"), 5) == 5


def test_compile_adds_the_compiled_columns(monkeypatch, capsys):
    bench_training = _load()

    def fake_bench(preset, repeats, min_time, compiled=False, torch_sign=False):
        row = {"preset": preset, "model": "m", "shape": "1x1", "batch": 1, "binary": 3.0, "float": 4.0, "ratio": 0.75}
        if compiled:
            row.update({"compiled": 6.0, "compiled/eager": 2.0, "float_compiled": 5.0, "compiled_ratio": 1.2})
        return row

    monkeypatch.setattr(bench_training, "bench", fake_bench)
    assert bench_training.main(["--presets", "a", "--compile"]) == 0
    out = capsys.readouterr().out
    assert "compiled binary / float" in out
    assert _table(out) == [["a", "m", "1x1", "1", "3", "4", "0.75", "6", "2.00", "5", "1.20"]]


def test_bad_arguments_are_refused_in_one_line_before_any_work(run_benchmark):
    for args, key in ((["--presets", "nope"], "--presets"), (["--batch", "0"], "--batch"),
                      (["--batch", "big"], "--batch"), (["--repeats", "0"], "--repeats"),
                      (["--min-time", "-1"], "--min-time"), (["--threads", "x"], "--threads")):
        r = run_benchmark("bench_training.py", *args, timeout=60)
        assert r.returncode == 2 and r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and key in lines[0] and "error" in lines[0], r.stderr
