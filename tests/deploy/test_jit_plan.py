"""The compiled plan (one numba function per input shape) computes bit for bit what the op-by-op run
computes, runs a small network in one compiled call, and never turns a run-time value into a constant."""

import copy
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from stbin.deploy import batch_split, compile_model, engine, jit_plan, kernels
from stbin.deploy.engine import COMPILE_AFTER
from stbin.deploy.ops import RunContext
from stbin.models import build_model
from stbin.nn import BinaryConv2d, BinaryLinear, Sign

from .test_engine import randomise_bn


@pytest.fixture(autouse=True)
def always_compile(monkeypatch):
    """Compile at the COMPILE_AFTER-th batch whatever the timings (a loaded machine could make it not pay), and
    never split a batch over the threads (a slow first run of a batch of 4 rows or more would make it worth
    splitting: the split has its own tests in test_batch_split)."""
    monkeypatch.setattr(engine, "MIN_SAVING", 0.0)
    monkeypatch.setattr(batch_split, "SPLIT_MIN_SECONDS", float("inf"))


def op_by_op(net, x):
    h = x
    for op in net.ops:
        h = net._op(op, h)
    return h


def compiled(net, x):
    """Run until the plan of x's shape is compiled; return (output, plan)."""
    for _ in range(COMPILE_AFTER):
        y = net(x)
    plan = net._compiled[(x.shape, kernels.get_threads())]
    np.testing.assert_array_equal(net(x), y)
    return y, plan


def small_nets():
    torch.manual_seed(0)
    mlp = randomise_bn(build_model("sbn_mlp", in_features=30, hidden=(70, 130), num_classes=4))
    conv = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), Sign(),
                         BinaryConv2d(8, 70, 3, padding=1), nn.BatchNorm2d(70), Sign(), nn.MaxPool2d(2),
                         BinaryConv2d(70, 16, 3), nn.BatchNorm2d(16), Sign(), nn.Flatten(),
                         BinaryLinear(16 * 16, 40), nn.BatchNorm1d(40), Sign(), nn.Linear(40, 5))
    res = build_model("resnet20", width=0.25, blocks=1, activation="sign", weights="sign")
    bireal = build_model("bireal_resnet18", width=1 / 16, convs=1, activation="sign", weights="sign")
    return [(mlp, (30,)), (randomise_bn(conv), (1, 12, 12)), (randomise_bn(res), (3, 16, 16)),
            (randomise_bn(bireal), (3, 16, 16))]


@pytest.mark.parametrize("k, batch", [(0, 1), (0, 3), (0, 12), (1, 1), (1, 12), (2, 2), (3, 2)])
def test_compiled_plan_is_bit_identical_to_op_by_op(k, batch):
    model, shape = small_nets()[k]
    net = compile_model(model.eval(), shape)
    x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32) * 2
    y, plan = compiled(net, x)
    np.testing.assert_array_equal(y, op_by_op(net, x))
    assert plan.sources, "nothing was compiled"
    assert y.flags.writeable  # a fresh array every call:
    assert not np.shares_memory(net(x), y)


def test_small_mlp_runs_as_one_compiled_call_on_the_hot_path():
    torch.manual_seed(0)
    net = compile_model(randomise_bn(build_model("sbn_mlp", in_features=30, hidden=(70, 40), num_classes=4)))
    x = np.random.default_rng(0).standard_normal((1, 30)).astype(np.float32)
    y, plan = compiled(net, x)
    assert plan.single and len(plan.items) == 1
    assert plan.sources[0].count("(") > len(net.ops)  # every op's loop is called from the one function
    net._run = None  # the hot path: check the input, one compiled call, return
    np.testing.assert_array_equal(net(x), y)
    threads = kernels.get_threads()
    kernels.set_threads(1)  # a single-call plan runs serial loops only: the same whatever the thread count
    try:
        np.testing.assert_array_equal(net(x), y)
    finally:
        kernels.set_threads(threads)
    with pytest.raises(ValueError, match=r"expects inputs of shape \(N, 30\), got \(1, 29\)"):
        net(x[:, :29].copy())  # another shape leaves the hot path and is checked
    with pytest.raises(TypeError):
        net(np.concatenate([x, x]))  # another batch size leaves the hot path (and _run is gone)
    with pytest.raises(TypeError):
        net(x.astype(np.float64))  # so does another dtype


def call_arguments(plan):
    """The arguments of every loop call in the plan's generated sources, as written."""
    return [a for src in plan.sources for line in src.splitlines()
            if re.fullmatch(r"\s+k\d+\(.*\)", line) for a in line.strip()[line.strip().index("(") + 1:-1].split(", ")]


@pytest.mark.parametrize("k, threads", [(0, None), (1, 1)])
def test_integers_passed_as_int64_give_the_same_outputs(monkeypatch, k, threads):
    """With INLINE_INTEGERS off, every integer of the recorded calls is written as a typed value (numba compiles each
    loop once, not once per set of literal integers), and the plan still computes bit for bit what the op-by-op run
    computes; the default writes them as literals. On one thread the conv net's every step is a serial loop."""
    model, shape = small_nets()[k]
    x = np.random.default_rng(7).standard_normal((1, *shape)).astype(np.float32) * 2
    before = kernels.get_threads()
    kernels.set_threads(threads or before)
    try:
        ways = {}
        for inline in ([True, False] if threads is None else [False]):
            monkeypatch.setattr(jit_plan, "INLINE_INTEGERS", inline)
            net = compile_model(model.eval(), shape)
            y, plan = compiled(net, x)
            np.testing.assert_array_equal(y, op_by_op(net, x))
            ways[inline] = call_arguments(plan)
            assert plan.single
    finally:
        kernels.set_threads(before)
    assert ways[False] and not any(re.fullmatch(r"-?\d+", a) for a in ways[False])
    assert any(re.fullmatch(r"np\.int64\(-?\d+\)", a) for a in ways[False])
    if True in ways:
        assert any(re.fullmatch(r"-?\d+", a) for a in ways[True]) and not any("np.int64" in a for a in ways[True])


@pytest.mark.parametrize("value", ["False", 0, None])
def test_a_switch_that_is_not_a_bool_is_refused_when_a_plan_is_built(monkeypatch, value):
    monkeypatch.setattr(jit_plan, "INLINE_INTEGERS", value)
    model, shape = small_nets()[0]
    net = compile_model(model.eval(), shape)
    x = np.zeros((1, *shape), np.float32)
    with pytest.raises(ValueError, match=r"^stbin\.deploy\.jit_plan\.INLINE_INTEGERS .* must be True or False") as e:
        compiled(net, x)
    assert "\n" not in str(e.value) and str(e.value).endswith(f"got {value!r}")


@pytest.mark.parametrize("text, want", [("0", False), ("false", False), (" FALSE ", False), ("1", True),
                                        ("True", True), (None, True), ("no", "no"), ("", "")])
def test_the_switch_is_read_from_the_environment_at_import(text, want):
    """$STBIN_INLINE_INTEGERS sets the switch in a new process; text that is not 1/true/0/false is kept and refused
    when a plan is built (checked in the test above), never read as true."""
    env = {k: v for k, v in os.environ.items() if k != "STBIN_INLINE_INTEGERS"}
    if text is not None:
        env["STBIN_INLINE_INTEGERS"] = text
    code = "from stbin.deploy import jit_plan; print(repr(jit_plan.INLINE_INTEGERS))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == repr(want)


def test_steps_outside_the_kernels_stay_python_steps():
    """At a batch above the latency path, float layers run BLAS / torch: their outputs are run-time values that a
    following kernel reads, which must not become constants of the compiled function (the compiled plan equals
    the same plan run step by step in Python)."""
    torch.manual_seed(0)
    net = compile_model(randomise_bn(build_model("sbn_mlp", in_features=300, hidden=(200, 40), num_classes=4)))
    stepwise = copy.deepcopy(net)
    stepwise.jit = False
    outs = []
    for seed in range(2):
        x = np.random.default_rng(seed).standard_normal((40, 300)).astype(np.float32)  # 2.4 M multiply-adds
        y, plan = compiled(net, x)
        np.testing.assert_array_equal(y, stepwise(x))
        np.testing.assert_allclose(y, op_by_op(net, x), rtol=0, atol=1e-4)
        outs.append(y)
    assert [it[0] for it in plan.items][0] == "python"
    assert not np.array_equal(outs[0], outs[1])


def test_numpy_after_a_kernel_call_is_not_compiled_away():
    """A step that changes a kernel's output with numpy after the call cannot be recorded: it runs in Python."""
    torch.manual_seed(0)
    net = compile_model(randomise_bn(build_model("sbn_mlp", in_features=30, hidden=(70, 40), num_classes=4)))
    x = np.random.default_rng(0).standard_normal((1, 30)).astype(np.float32)
    base = net(x)
    steps = list(net._plan)

    def last_plus_one(h, ctx):
        y = steps[-1](h, ctx)
        y += 1
        return y
    plan = jit_plan.compile_plan(steps[:-1] + [last_plus_one], x.shape, net)
    assert plan.items[-1][0] == "python"
    with kernels.KERNEL_LOCK:
        np.testing.assert_array_equal(plan(x, RunContext(net)), base + 1)


def test_tampered_op_is_refused_when_the_plan_is_built(tmp_path):
    """An op edited after construction (bypassing the load checks) meets the kernels' checks when the plan is
    recorded: a ValueError, never an out-of-bounds read in compiled code."""
    torch.manual_seed(0)
    net = compile_model(randomise_bn(build_model("sbn_mlp", in_features=30, hidden=(70, 130), num_classes=4)))
    op = [o for o in net.ops if o.type == "bdense"][0]
    op.arrays["weight"] = op.arrays["weight"][:, :1].copy()  # 130 rows of 1 word for a 2-word input
    x = np.zeros((1, 30), np.float32)
    for _ in range(COMPILE_AFTER):
        with pytest.raises(ValueError, match="W(t)? has 1 words per (row|output), X has 2"):
            net(x)
    with pytest.raises(ValueError, match="W(t)? has 1 words per (row|output), X has 2"):
        jit_plan.compile_plan(list(net._plan), x.shape, net)


def test_generated_source_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("STBIN_PLAN_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model = randomise_bn(build_model("sbn_mlp", in_features=30, hidden=(70,), num_classes=4))
    x = np.random.default_rng(0).standard_normal((1, 30)).astype(np.float32)
    _, plan = compiled(compile_model(model), x)
    files = sorted(tmp_path.glob("stbin_plan_*.py"))
    assert len(files) == 1 and plan.sources[0] in files[0].read_text()
    files[0].write_text(files[0].read_text().replace("np.empty", "np.zeros"))  # a file we did not write
    y2, _ = compiled(compile_model(model), x)
    assert "np.zeros" not in files[0].read_text()
    np.testing.assert_array_equal(y2, op_by_op(compile_model(model), x))


def test_large_batches_keep_the_op_by_op_run(monkeypatch):
    """Where the kernels dominate (the Python overhead of the steps is under MIN_SAVING of a run), no plan is
    compiled for the shape, and the results are the same."""
    monkeypatch.setattr(engine, "MIN_SAVING", 1e9)
    torch.manual_seed(0)
    net = compile_model(randomise_bn(build_model("sbn_mlp", in_features=30, hidden=(70,), num_classes=4)))
    x = np.random.default_rng(0).standard_normal((engine.SMALL_BATCH + 1, 30)).astype(np.float32)
    ys = [net(x) for _ in range(COMPILE_AFTER + 1)]
    assert net._compiled == {(x.shape, kernels.get_threads()): None}
    for y in ys:
        np.testing.assert_array_equal(y, op_by_op(net, x))


def test_small_batches_are_compiled_whatever_the_timings(monkeypatch):
    """The latency path does not depend on how busy the machine was during the first runs: a batch of up to
    SMALL_BATCH samples is compiled even where the measured saving says no."""
    monkeypatch.setattr(engine, "MIN_SAVING", 1e9)
    torch.manual_seed(0)
    net = compile_model(randomise_bn(build_model("sbn_mlp", in_features=30, hidden=(70,), num_classes=4)))
    x = np.random.default_rng(0).standard_normal((engine.SMALL_BATCH, 30)).astype(np.float32)
    y, plan = compiled(net, x)
    assert plan is not None and plan.single
    np.testing.assert_array_equal(y, op_by_op(net, x))


def test_python_steps_get_the_shortcuts_that_compiled_segments_saved(monkeypatch):
    """Where some kernels run in parallel (Python steps) and others serially (compiled segments), a Python
    step that reads a shortcut saved inside a segment gets it (a KeyError on the slot before), and the
    outputs stay bit for bit those of the op-by-op run, at every split of the plan."""
    model, shape = small_nets()[2]  # the residual net
    net = compile_model(model.eval(), shape)
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32) * 2
    want = op_by_op(net, x)
    old = kernels.get_threads()
    kernels.set_threads(2)
    try:
        mixed = 0
        for serial_work in [1 << e for e in range(4, 20)]:
            monkeypatch.setattr(kernels, "SERIAL_WORK", serial_work)
            fresh = compile_model(model.eval(), shape)
            y, plan = compiled(fresh, x)
            np.testing.assert_array_equal(y, want)
            kinds = {it[0] for it in plan.items} if plan is not None else set()
            mixed += kinds == {"segment", "python"} and any(it[0] == "python" and it[4] for it in plan.items)
    finally:
        kernels.set_threads(old)
    assert mixed, "no split of the plan handed a saved shortcut to a Python step"
