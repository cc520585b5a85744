"""The latency path: serial twins, the engine's own float loops and the fused first layer compute
exactly what the parallel kernels / the op-by-op run compute."""

import numpy as np
import pytest
import torch

from stbin.deploy import _conv_loops, _float_loops, _loops, compile_model, kernels
from stbin.deploy.packing import n_words, pack_sign, unpack_bits
from stbin.models import build_model

from .test_engine import randomise_bn


def test_serial_twins_equal_parallel_kernels():
    rng = np.random.default_rng(0)
    x, w = pack_sign(rng.standard_normal((7, 200))), pack_sign(rng.standard_normal((70, 200)))
    a, b = np.empty((7, 70), np.int32), np.empty((7, 70), np.int32)
    _loops.bgemm(x, w, 200, a)
    _loops.bgemm_serial(x, w, 200, b)
    np.testing.assert_array_equal(a, b)
    X = pack_sign(rng.standard_normal((2, 6, 6, 70)))
    Wt = np.ascontiguousarray(pack_sign(rng.standard_normal((9, 3, 3, 70))).transpose(1, 2, 3, 0))
    c, d = np.empty((2, 6, 6, 9), np.int32), np.empty((2, 6, 6, 9), np.int32)
    _conv_loops.bconv2d(X, Wt, 70, 1, 1, 1, 1, 1, 1, c)
    _conv_loops.bconv2d_serial(X, Wt, 70, 1, 1, 1, 1, 1, 1, d)
    np.testing.assert_array_equal(c, d)
    assert _float_loops.float_sign_pack_serial.py_func.__name__ == "float_sign_pack_serial"


@pytest.mark.parametrize("n, k, m", [(1, 784, 512), (3, 5, 70), (8, 130, 1)])
def test_float_dense_and_fused_sign(n, k, m):
    rng = np.random.default_rng(n + k)
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    out = np.empty((n, m), np.float32)
    kernels.float_dense(x, np.ascontiguousarray(w.T), b, out)
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-3)
    S = rng.choice(np.array([-1, 1], np.float32), size=m)
    T = out[0].copy() * S  # thresholds exactly at row 0's values: its bits are all +1 (S*y >= T)
    bits = np.empty((n, n_words(m)), np.uint64)
    kernels.float_dense_sign(x, np.ascontiguousarray(w.T), b, S, T, bits)
    np.testing.assert_array_equal(unpack_bits(bits, m), np.where(S * out >= T, 1, -1))
    assert (unpack_bits(bits, m)[0] == 1).all()
    with pytest.raises(ValueError, match=f"float_dense: Wt has {k + 1} input rows, X has {k} columns"):
        kernels.float_dense(x, np.zeros((k + 1, m), np.float32), b, out)


def test_unpack_float_equals_unpack_bits():
    rng = np.random.default_rng(1)
    for k in (1, 63, 64, 65, 200):
        words = pack_sign(rng.standard_normal((4, k)))
        out = np.empty((4, k), np.float32)
        kernels.unpack_float(words, k, out)
        np.testing.assert_array_equal(out, unpack_bits(words, k, np.float32))
    with pytest.raises(ValueError, match=r"unpack_float: X has shape \(4, 4\), expected \(4, 1\)"):
        kernels.unpack_float(pack_sign(rng.standard_normal((4, 200))), 64, np.empty((4, 64), np.float32))


@pytest.mark.parametrize("batch", [1, 5, 40])
def test_plan_with_fused_first_layer_equals_op_by_op(batch):
    torch.manual_seed(0)
    model = randomise_bn(build_model("sbn_mlp", in_features=30, hidden=(70, 40), num_classes=4))
    net = compile_model(model)
    x = np.random.default_rng(batch).standard_normal((batch, 30)).astype(np.float32)
    h = x
    for op in net.ops:
        h = net._op(op, h)
    np.testing.assert_array_equal(net(x), h)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(net(x).argmax(1), ref.argmax(1))


def test_bconv2d_float_and_unpack_nchw_equal_the_reference():
    rng = np.random.default_rng(3)
    X = pack_sign(rng.standard_normal((2, 7, 6, 70)))
    Wt = np.ascontiguousarray(pack_sign(rng.standard_normal((9, 3, 3, 70))).transpose(1, 2, 3, 0))
    dot = np.empty((2, 4, 3, 9), np.int32)
    kernels.bconv2d(X, Wt, 70, 2, 2, 1, 1, 1, 1, dot)
    scale, bias = rng.standard_normal(9).astype(np.float32), rng.standard_normal(9).astype(np.float32)
    out = np.empty((2, 9, 4, 3), np.float32)
    kernels.bconv2d_float(X, Wt, 70, 2, 2, 1, 1, 1, 1, scale, bias, out)
    np.testing.assert_array_equal(out, (dot.astype(np.float32) * scale + bias).transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"bconv2d_float: scale has shape \(8,\), expected \(9,\)"):
        kernels.bconv2d_float(X, Wt, 70, 2, 2, 1, 1, 1, 1, scale[:8], bias, out)
    with pytest.raises(ValueError, match=r"bconv2d_float: out has shape \(2, 9, 4, 4\), expected \(2, 9, 4, 3\)"):
        kernels.bconv2d_float(X, Wt, 70, 2, 2, 1, 1, 1, 1, scale, bias, np.empty((2, 9, 4, 4), np.float32))
    maps = np.empty((2, 70, 7, 6), np.float32)
    kernels.unpack_float_nchw(X, 70, maps)
    np.testing.assert_array_equal(maps, unpack_bits(X, 70, np.float32).transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"unpack_float_nchw: out has shape"):
        kernels.unpack_float_nchw(X, 70, np.empty((2, 70, 6, 7), np.float32))


def test_large_batch_first_layer_is_torchs_linear_then_the_folded_thresholds():
    """At a batch past the engine's own loop, the fused first layer of the "auto" backend runs PyTorch's linear:
    with thresholds placed exactly on PyTorch's pre-activations of row 0 (one ulp of another rounding flips
    bits), its bits are those of the "torch" backend's separate linear and sign steps, bit for bit."""
    from stbin.deploy.ops import RunContext
    from stbin.deploy.ops.float_layers import engine_loop
    from stbin.deploy.plan import build_plan

    torch.manual_seed(2)
    net = compile_model(randomise_bn(build_model("sbn_mlp", in_features=300, hidden=(512,), num_classes=3)))
    x = np.random.default_rng(3).standard_normal((12, 300)).astype(np.float32) * 3
    lin, sign = net.ops[0], net.ops[1]
    assert (lin.type, sign.type) == ("linear", "sign") and not engine_loop(len(x), lin.arrays["weight"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wb = [torch.from_numpy(lin.arrays[k]) if k in lin.arrays else None for k in ("weight", "bias")]
        y0 = torch.nn.functional.linear(torch.from_numpy(x), *wb).numpy()[0]
    finally:
        torch.set_num_threads(before)
    sign.arrays["S"], sign.arrays["T"] = np.ones(512, np.float32), y0.copy()
    fused = build_plan(net.ops, net)[0](x, RunContext(net))
    assert (unpack_bits(fused, 512)[0] == 1).all()
    net.float_backend = "torch"
    steps, ctx = build_plan(net.ops, net), RunContext(net)
    np.testing.assert_array_equal(fused, steps[1](steps[0](x, ctx), ctx))


@pytest.mark.parametrize("limit", [0, None])
def test_large_batch_last_layer_on_bits(monkeypatch, limit):
    """The last layer of a binary MLP on its flat bits at a batch past the engine's own loop, backend "auto": up to
    ``BITS_DENSE_MACS`` multiply-adds the engine's ``bits_dense`` (bit for bit ``unpack_float`` then ``float_dense``:
    a sum in the order of the inputs), above it PyTorch's ``linear`` on the unpacked rows (bit for bit the "torch"
    backend's steps); both within float rounding of PyTorch, the same predictions."""
    from stbin.deploy import plan as P
    from stbin.deploy.ops import RunContext

    if limit is not None:
        monkeypatch.setattr(P, "BITS_DENSE_MACS", limit)
    torch.manual_seed(6)
    model = randomise_bn(build_model("sbn_mlp", in_features=40, hidden=(130,), num_classes=10)).eval()
    net = compile_model(model)
    assert [o.type for o in net.ops[-2:]] == ["bits_float", "linear"]
    unpack, lin = net.ops[-2:]
    rng = np.random.default_rng(7)
    bits = pack_sign(rng.choice([-1.0, 1.0], size=(64, 130)).astype(np.float32))
    got = P.build_plan(net.ops, net)[-1](bits, RunContext(net))
    xf = unpack_bits(bits, 130, np.float32)
    w, b = lin.arrays["weight"], lin.arrays["bias"]
    if limit is None:  # 64 x 130 x 10 multiply-adds: the engine's loop
        assert 64 * 130 * 10 <= P.BITS_DENSE_MACS
        want = np.empty((64, 10), np.float32)
        kernels.float_dense(xf, np.ascontiguousarray(w.T), b, want)
    else:
        net.float_backend = "torch"
        steps, ctx = P.build_plan(net.ops, net), RunContext(net)
        want = steps[-1](steps[-2](bits, ctx), ctx)
    np.testing.assert_array_equal(got, want)
    with torch.no_grad():
        ref = torch.nn.functional.linear(torch.from_numpy(xf), torch.from_numpy(w), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
