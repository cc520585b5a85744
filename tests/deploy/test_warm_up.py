"""DeployedNet.warm_up settles the plans of the given batch sizes before the first real batch: afterwards those
sizes run without compiling anything, with the outputs of the op-by-op run; bad sizes are refused in one line."""

import numpy as np
import pytest

from stbin.deploy import DeployedNet, batch_split, compile_model, engine, jit_plan, kernels
from stbin.deploy.ops import Op

from .test_jit_plan import op_by_op, small_nets


def _no_more_compiles(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("compiled after the warm-up")
    monkeypatch.setattr(jit_plan, "compile_plan", refuse)
    monkeypatch.setattr(batch_split, "BatchSplit", refuse)


@pytest.mark.parametrize("k", [0, 1])
def test_warmed_up_sizes_run_without_compiling_and_as_op_by_op(monkeypatch, k):
    monkeypatch.setattr(batch_split, "SPLIT_MIN_SECONDS", float("inf"))  # the split has its own case below
    model, shape = small_nets()[k]
    net = compile_model(model.eval(), shape)
    kinds = net.warm_up([1, 3, 1])
    assert list(kinds) == [1, 3]  # each size once, in order
    assert all(kind in ("one compiled call", "compiled segments") for kind in kinds.values()), kinds
    _no_more_compiles(monkeypatch)
    for b in (1, 3):
        x = np.random.default_rng(b).standard_normal((b, *shape)).astype(np.float32) * 2
        for _ in range(3):
            np.testing.assert_array_equal(net(x), op_by_op(net, x))


@pytest.mark.parametrize("rounds", [0, 2])
def test_a_size_worth_splitting_is_settled_past_its_trial(monkeypatch, two_threads, rounds):
    monkeypatch.setattr(batch_split, "SPLIT_MIN_SECONDS", 0.0)
    monkeypatch.setattr(batch_split, "TRIAL_ROUNDS", rounds)
    model, shape = small_nets()[0]
    net = compile_model(model.eval(), shape)
    kinds = net.warm_up([4])
    kept = net._compiled[((4, *shape), 2)]
    assert not isinstance(kept, batch_split.SplitTrial)
    if rounds == 0:
        assert kinds == {4: "split over 2 threads"} and isinstance(kept, batch_split.BatchSplit)
    else:  # the trial kept the faster way
        assert kinds[4] in ("split over 2 threads", "one compiled call")
    _no_more_compiles(monkeypatch)
    x = np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32)
    np.testing.assert_array_equal(net(x), op_by_op(net, x))


def test_with_jit_off_everything_runs_op_by_op():
    model, shape = small_nets()[0]
    net = compile_model(model.eval(), shape)
    net.jit = False
    assert net.warm_up([1, 2]) == {1: "op by op", 2: "op by op"}
    assert net._compiled == {}


@pytest.mark.parametrize("sizes", [[], [0], [2, -1], [1.5], [True], "8", 8, None, np.array([1, 2]),
                                   list(range(1, engine.MAX_COMPILED + 2))])
def test_bad_batch_sizes_are_refused_in_one_line(sizes):
    model, shape = small_nets()[0]
    net = compile_model(model.eval(), shape)
    with pytest.raises(ValueError, match=r"^batch_sizes") as e:
        net.warm_up(sizes)
    assert "\n" not in str(e.value)
    assert net._compiled == {}  # refused before any batch ran


def test_a_network_without_an_input_shape_is_refused():
    w = np.ones((2, 3), np.float32)
    net = DeployedNet([Op("linear", {}, {"weight": w, "bias": np.zeros(2, np.float32)})])
    with pytest.raises(ValueError, match=r"^warm_up needs the network's input shape"):
        net.warm_up([1])


def test_the_thread_count_is_part_of_what_is_settled(monkeypatch):
    """Plans are per thread count: a warm-up settles the current one's."""
    monkeypatch.setattr(batch_split, "SPLIT_MIN_SECONDS", float("inf"))
    model, shape = small_nets()[0]
    net = compile_model(model.eval(), shape)
    net.warm_up([2])
    assert list(net._compiled) == [((2, *shape), kernels.get_threads())]
