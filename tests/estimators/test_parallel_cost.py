"""The size from which the CPU kernels take their parallel loop: derived from this machine's measured thread
wake-up, overridable, measured once per thread count."""

import math

import numba
import pytest
import torch

from stbin.estimators import _parallel_cost as cost
from stbin.estimators._common import THRESHOLDS, path_thresholds, use_parallel
from stbin.estimators.sampling import NOISES, sample_sign


def test_threshold_is_where_the_split_saves_twice_the_wake_up():
    e = cost.SAMPLING_SECONDS
    n = cost.parallel_threshold(0.2e-3, 2, e)
    assert n == round(cost.SAFETY * 0.2e-3 / (e * 0.5))
    # more threads save more per element, a cheaper element saves less: the threshold moves accordingly
    assert cost.parallel_threshold(0.2e-3, 4, e) < n < cost.parallel_threshold(0.2e-3, 2, e / 2)
    assert cost.parallel_threshold(0.0, 2, e) == cost.MIN_NUMEL  # a free wake-up: the floor
    assert cost.parallel_threshold(-1e-3, 2, e) == cost.MIN_NUMEL  # a negative measurement (noise): the floor
    assert cost.parallel_threshold(1.0, 2, e) == cost.MAX_NUMEL  # a very slow one: the cap
    assert cost.parallel_threshold(1e-6, 1, e) == cost.MAX_NUMEL  # one thread: never worth it


def test_measured_once_per_thread_count(monkeypatch):
    calls = []
    monkeypatch.setattr(cost, "_WAKE", {})
    monkeypatch.setattr(cost, "measure_wake_seconds", lambda t: calls.append(t) or 0.1e-3)
    a = cost.parallel_min_numel(2)
    assert a == cost.parallel_threshold(0.1e-3, 2, cost.SAMPLING_SECONDS)
    assert cost.parallel_min_numel(2, cost.ELEMENTWISE_SECONDS) == 2 * a  # half the element cost: twice the size
    cost.parallel_min_numel(3)
    assert calls == [2, 3]
    assert cost.parallel_min_numel(1) == cost.MAX_NUMEL and calls == [2, 3]


def test_use_parallel_measures_unless_a_threshold_is_set(monkeypatch):
    monkeypatch.setattr(cost, "_WAKE", {2: 0.1e-3})
    n = cost.parallel_min_numel(2)
    assert THRESHOLDS.parallel_sampling_min_numel is None
    assert use_parallel(n, 2) and not use_parallel(n - 1, 2) and not use_parallel(n, 1)
    monkeypatch.setattr(cost, "measure_wake_seconds", lambda t: pytest.fail("measured below the floor"))
    monkeypatch.setattr(cost, "_WAKE", {})
    assert not use_parallel(cost.MIN_NUMEL - 1, 2)  # below every possible threshold: nothing to measure
    with path_thresholds(parallel_sampling_min_numel=5):
        assert use_parallel(5, 2) and not use_parallel(4, 2) and not use_parallel(5, 1)


def test_the_wake_up_measurement_runs():  # with one numba thread too: the parallel loop then runs on that one
    before = numba.get_num_threads()
    try:
        w = cost.measure_wake_seconds(2)
    finally:
        numba.set_num_threads(before)
    assert math.isfinite(w) and abs(w) < 1.0


def test_samples_do_not_depend_on_the_measured_threshold(monkeypatch, two_threads):
    """Whatever the measurement says, the samples are the same: a wake-up measured free puts this tensor on the
    parallel loop, one measured slow on the serial loop (checked by spying on the kernel's ``parallel`` flag)."""
    from stbin.estimators import _logistic_sampling_numba as kernel

    a = torch.randn(3 * cost.MIN_NUMEL, generator=torch.Generator().manual_seed(0))
    real, flags = kernel.decide, []
    monkeypatch.setattr(kernel, "decide", lambda a_, out, s, seed, parallel, *r, **k: (
        flags.append(parallel), real(a_, out, s, seed, parallel, *r, **k))[1])
    outs = []
    for wake in (0.0, 1.0):
        monkeypatch.setattr(cost, "_WAKE", {two_threads: wake})
        outs.append(sample_sign(a, NOISES.get("logistic"), 1.0, torch.Generator().manual_seed(1)).clone())
    assert flags == [True, False]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0, equal_nan=True)
