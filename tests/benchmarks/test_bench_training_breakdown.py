"""benchmarks/bench_training_breakdown.py: its table, its timers (restored afterwards) and its argument checks."""

from __future__ import annotations

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import bench_training_breakdown
    finally:
        sys.path.pop(0)
    return bench_training_breakdown


def test_the_table_splits_the_extra_time_into_the_estimator_parts(run_benchmark):
    r = run_benchmark("bench_training_breakdown.py", "--presets", "sbn_mnist", "--steps", "1", "--repeats", "1",
                      "--min-time", "0.01")
    assert r.returncode == 0, r.stderr
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in r.stdout.splitlines()
            if line.startswith("| sbn_mnist")]
    assert len(rows) == 1
    batch, binary, flt, extra, fwd, bwd, opt, w, u, st, rest = (float(c) for c in rows[0][1:])
    assert batch == 100 and binary > 0 and flt > 0
    assert abs(extra - (binary - flt)) <= 0.011 and abs(extra - (fwd + bwd + opt)) <= 0.021
    assert abs(rest - (extra - w - u - st)) <= 0.021
    assert w > 0 and u > 0 and st > 0  # sbn_mnist samples weights and units and runs the ST backward


def test_timers_count_every_call_and_are_removed_afterwards():
    mod = _load()
    from stbin.estimators import latent, stochastic, stochastic_sign, bernoulli_weight

    before = [getattr(m, name) for m, name, _ in mod.PARTS]
    totals = {part: 0.0 for _, _, part in mod.PARTS}
    a = torch.randn(300, 300, requires_grad=True)
    with mod.timed(totals):
        stochastic_sign(a).sum().backward()
        bernoulli_weight(a.detach(), scale=0.5)
    assert all(v > 0 for v in totals.values()), totals
    assert [getattr(m, name) for m, name, _ in mod.PARTS] == before
    assert latent.noisy_sign is before[0] and stochastic._st_backward is before[2]


def test_unknown_preset_is_refused_in_one_line(run_benchmark):
    r = run_benchmark("bench_training_breakdown.py", "--presets", "nope", timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "--presets" in r.stderr
