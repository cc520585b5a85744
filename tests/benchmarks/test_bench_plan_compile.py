"""benchmarks/bench_plan_compile.py: its table (cold and warm compile of a plan, both ways of writing the integers,
the same outputs) and its argument checks."""

from __future__ import annotations

import json


def test_the_table_compiles_both_ways_cold_then_warm_with_the_same_outputs(run_benchmark, tmp_path):
    out = tmp_path / "r.json"
    r = run_benchmark("bench_plan_compile.py", "--networks", "mlp", "--repeats", "1", "--burst", "2",
                      "--json", str(out))
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("mlp ")]
    assert [row[1] for row in rows] == ["inline", "int64"]
    for row in rows:
        cold_op_by_op, cold_plan, warm_plan, latency = map(float, row[2:6])
        assert min(cold_op_by_op, cold_plan, latency) > 0 and 0 <= warm_plan
        assert int(row[6]) >= 1 and row[7] == "identical"
    res = json.loads(out.read_text())
    assert res["batch"] == 1 and res["threads"] == 1 and set(res["networks"]["mlp"]) == {"inline", "int64"}
    ways = res["networks"]["mlp"]
    digests = {ways[w][p]["digest"] for w in ways for p in ("cold", "warm")}
    assert len(digests) == 1
    for w in ways:
        assert ways[w]["cold"]["single_call"] and ways[w]["warm"]["single_call"]
    # int64 values: the plan calls the loops' versions the op-by-op run compiled; literals add their own
    assert 1 <= ways["int64"]["cold"]["loops"] < ways["inline"]["cold"]["loops"]


def test_bad_arguments_are_refused(run_benchmark):
    for args in (("--ways", "inline,fast"), ("--batch", "0"), ("--networks", "mlp,lenet")):
        r = run_benchmark("bench_plan_compile.py", *args)
        assert r.returncode == 2 and "expected a" in r.stderr and r.stdout == "", (args, r.stderr)
