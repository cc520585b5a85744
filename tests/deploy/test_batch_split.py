"""Large batches split by rows over the engine's threads compute, bit for bit, what the whole batch computes op
by op; the split is kept only where a batch is large enough, and leaves every thread count as it found it."""

import sys

import numpy as np
import pytest
import torch

from stbin.deploy import batch_split, compile_model, engine, kernels
from stbin.deploy.batch_split import BatchSplit, worth_splitting
from stbin.deploy.engine import COMPILE_AFTER, Op

from .test_jit_plan import op_by_op, small_nets


@pytest.fixture
def always_split(monkeypatch, two_threads):
    monkeypatch.setattr(batch_split, "SPLIT_MIN_SECONDS", 0.0)
    monkeypatch.setattr(batch_split, "TRIAL_ROUNDS", 0)  # the split kept without its trial against the whole batch
    monkeypatch.setattr(engine, "MIN_SAVING", 0.0)  # the parts' plans compile whatever the timings


def run_until_settled(net, x):
    """Outputs of the first runs of ``x``'s shape, up to and past the one that settles the shape's plan."""
    return [net(x) for _ in range(COMPILE_AFTER + 2)]


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("batch", [4, 7])
def test_split_batches_are_bit_identical_to_the_whole_batch_op_by_op(always_split, k, batch):
    model, shape = small_nets()[k]
    net = compile_model(model.eval(), shape)
    x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32) * 2
    want = op_by_op(compile_model(model.eval(), shape), x)
    for y in run_until_settled(net, x):
        np.testing.assert_array_equal(y, want)
    split = net._compiled[(x.shape, 2)]
    assert isinstance(split, BatchSplit)
    assert split.bounds == [0, batch // 2, batch] and len(split.replicas) == 2
    # each part runs its own settled plan with serial loops (compiled where it pays, as any shape)
    for rep, lo, hi in zip(split.replicas, split.bounds, split.bounds[1:]):
        assert (x[lo:hi].shape, 1) in rep._compiled


def test_the_hot_path_runs_the_split_and_restores_the_thread_counts(always_split):
    model, shape = small_nets()[2]
    net = compile_model(model.eval(), shape)
    x = np.random.default_rng(0).standard_normal((6, *shape)).astype(np.float32)
    run_until_settled(net, x)
    calls = []
    split = net._compiled[(x.shape, 2)]
    for rep in split.replicas:  # which threads the parts ran on, and with how many numba / torch threads
        def spy(part, rep=rep, forward=rep._forward):
            calls.append((len(part), kernels.numba.get_num_threads(), torch.get_num_threads()))
            return forward(part)
        rep._forward = spy
    torch_threads = torch.get_num_threads()
    y = net.predict(x)
    assert sorted(calls) == [(3, 1, 1), (3, 1, 1)]
    assert kernels.get_threads() == 2 and torch.get_num_threads() == torch_threads
    np.testing.assert_array_equal(y, op_by_op(net, x))


def test_an_error_in_a_part_reaches_the_caller_and_restores_the_thread_counts(always_split):
    model, shape = small_nets()[2]
    net = compile_model(model.eval(), shape)
    x = np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32)
    run_until_settled(net, x)
    split = net._compiled[(x.shape, 2)]

    def fail(part):
        raise RuntimeError("part failed")
    split.replicas[1]._forward = fail
    torch_threads = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="part failed"):
        net.predict(x)
    assert kernels.get_threads() == 2 and torch.get_num_threads() == torch_threads


@pytest.mark.parametrize("batch, quick", [(3, False), (6, True)])
def test_small_or_quick_batches_are_not_split(two_threads, monkeypatch, batch, quick):
    """A batch of fewer than MIN_PART_ROWS rows a thread, or one whose quickest run in one piece took under
    SPLIT_MIN_SECONDS, keeps the whole-batch plan (a hand-off to a thread would cost more than it saves). The
    engine asks ``worth_splitting`` with the rows, the thread count and the quickest earlier run; the quick case
    is made quick whatever the machine's load (the threshold is raised past any run's time)."""
    monkeypatch.setattr(batch_split, "SPLIT_MIN_SECONDS", float("inf") if quick else 0.0)
    asked = []
    real = batch_split.worth_splitting
    monkeypatch.setattr(batch_split, "worth_splitting", lambda *a: asked.append(a) or real(*a))
    model, shape = small_nets()[2]
    net = compile_model(model.eval(), shape)
    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    want = op_by_op(compile_model(model.eval(), shape), x)
    for y in run_until_settled(net, x):
        np.testing.assert_array_equal(y, want)
    kept = net._compiled[(x.shape, 2)]
    assert not isinstance(kept, (BatchSplit, batch_split.SplitTrial))
    assert len(asked) == 1 and asked[0][:2] == (batch, 2) and 0 < asked[0][2] < float("inf")


@pytest.mark.parametrize("rows, threads, seconds, want", [
    (64, 2, 0.01, True), (64, 1, 0.01, False), (64, 2, 0.001, False), (3, 2, 0.01, False), (4, 2, 0.01, True),
    (8, 4, 0.01, True), (7, 4, 0.01, False)])
def test_worth_splitting(rows, threads, seconds, want):
    assert worth_splitting(rows, threads, seconds) is want


def test_a_batch_smaller_than_the_threads_is_refused():
    model, shape = small_nets()[2]
    net = compile_model(model.eval(), shape)
    with pytest.raises(ValueError, match="cannot be split"):
        BatchSplit(net, np.zeros((1, *shape), np.float32), 2)


def test_replacing_an_op_drops_the_split(always_split):
    """The replicas share the ops they were made with: a network whose ops change rebuilds its plans, and the
    split with them (the outputs follow the new op, not the replicas' old one)."""
    model, shape = small_nets()[2]
    net = compile_model(model.eval(), shape)
    x = np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32)
    before = run_until_settled(net, x)[-1]
    last = net.ops[-1]
    assert "bias" in last.arrays
    net.ops[-1] = Op(last.type, dict(last.attrs), {**last.arrays, "bias": last.arrays["bias"] + np.float32(1)})
    y = net.predict(x)
    np.testing.assert_allclose(y, before + 1, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(y, op_by_op(net, x))
    run_until_settled(net, x)
    split = net._compiled[(x.shape, 2)]
    assert isinstance(split, BatchSplit) and split.replicas[0].ops[-1] is net.ops[-1]


def test_splits_without_torch_where_the_network_needs_none(always_split, monkeypatch):
    """With the numpy float backend a residual network runs without torch; so do its split batches."""
    model, shape = small_nets()[2]
    net = compile_model(model.eval(), shape)
    net.float_backend = "numpy"
    x = np.random.default_rng(3).standard_normal((4, *shape)).astype(np.float32)
    want = op_by_op(net, x)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with pytest.raises(ImportError):
        import torch as _  # noqa: F401
    for y in run_until_settled(net, x):
        np.testing.assert_array_equal(y, want)
    assert isinstance(net._compiled[(x.shape, 2)], BatchSplit)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_split_batches_run_in_a_forked_child(always_split):
    """The real thing: a child forked after the parent split batches splits its own (no hang, same outputs)."""
    import multiprocessing as mp

    model, shape = small_nets()[2]
    net = compile_model(model.eval(), shape)
    x = np.random.default_rng(4).standard_normal((4, *shape)).astype(np.float32)
    want = run_until_settled(net, x)[-1]
    assert isinstance(net._compiled[(x.shape, 2)], BatchSplit)
    _FORKED.update(net=net, x=x)  # the child inherits them: nothing of the network is pickled
    with mp.get_context("fork").Pool(1) as p:
        got = p.apply_async(_predict_in_child).get(timeout=120)
    np.testing.assert_array_equal(got, want)


_FORKED: dict = {}


def _predict_in_child():
    return _FORKED["net"].predict(_FORKED["x"])


@pytest.mark.parametrize("split_faster", [True, False])
def test_the_trial_keeps_the_faster_way_and_both_give_the_same_outputs(monkeypatch, always_split, split_faster):
    """A shape worth splitting runs split and whole alternately for TRIAL_ROUNDS calls each, then keeps the way with
    the smaller time (here one way is made 20 ms slower); every output along the way is the whole batch's."""
    import time as time_module

    monkeypatch.setattr(batch_split, "TRIAL_ROUNDS", 2)
    model, shape = small_nets()[2]
    net = compile_model(model.eval(), shape)
    x = np.random.default_rng(5).standard_normal((4, *shape)).astype(np.float32)
    want = op_by_op(compile_model(model.eval(), shape), x)
    for _ in range(COMPILE_AFTER):
        np.testing.assert_array_equal(net(x), want)
    trial = net._compiled[(x.shape, 2)]
    assert isinstance(trial, batch_split.SplitTrial)
    slow_split, slow_whole = trial.split.__call__, trial._whole
    if split_faster:
        trial._whole = lambda x, ctx: (time_module.sleep(0.02), slow_whole(x, ctx))[1]
    else:
        trial.split = lambda x, ctx=None: (time_module.sleep(0.02), slow_split(x, ctx))[1]
    for _ in range(2 * 2 - 1):  # the trial's remaining calls (the settling call above was its first)
        np.testing.assert_array_equal(net(x), want)
    kept = net._compiled[(x.shape, 2)]
    assert trial.calls == 4
    if split_faster:
        assert kept is trial.split
    else:
        assert kept is trial.whole and not isinstance(kept, (BatchSplit, batch_split.SplitTrial))
    np.testing.assert_array_equal(net(x), want)
