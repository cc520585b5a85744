"""benchmarks/bench_parallel_threshold.py: its table (three layers and a preset's step, both thresholds timed) and its
argument checks."""

from __future__ import annotations

import re


def test_the_table_times_both_thresholds_on_every_layer(run_benchmark):
    r = run_benchmark("bench_parallel_threshold.py", "--threads", "2", "--rounds", "1", "--steps", "1",
                      "--presets", "sbn_mnist")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("2 threads; measured threshold: ")
    threads, sampling, elementwise = (int(n) for n in re.findall(r"\d+", lines[0]))
    assert threads == 2
    assert 1 << 15 <= sampling <= elementwise <= 1 << 22  # the elementwise kernels' elements are cheaper
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[3:] if line.startswith("| ")]
    assert [r[0].split()[0] for r in rows] == ["BinaryLinear", "BinaryConv2d", "BinaryConv2d", "sbn_mnist"]
    for _, old, new, ratio in rows:
        assert float(old) > 0 and float(new) > 0 and abs(float(ratio) - float(old) / float(new)) < 0.01


def test_bad_arguments_are_refused(run_benchmark):
    for args in (("--rounds", "0"), ("--steps", "-1"), ("--threads", "two")):
        r = run_benchmark("bench_parallel_threshold.py", *args)
        assert r.returncode == 2 and "expected a positive int" in r.stderr and r.stdout == ""
