"""The fused ops (``bconv2d_res``, ``conv2d_sign``) and the fusion pass: what each sequence becomes, results
equal to the unfused ops (bit for bit where the float operations are the same), and crafted files or
kernel arguments refused before anything runs."""

import copy

import numpy as np
import pytest
import torch

from stbin.deploy import compile_model, fused_kernels as FK
from stbin.deploy.fuse import fuse
from stbin.models import build_model
from stbin.nn import eval_mode

from .test_engine import randomise_bn
from .test_safety import refused


def nets(name, **kw):
    torch.manual_seed(0)
    model = randomise_bn(build_model(name, activation="sign", weights="sign", **kw)).eval()
    shape = (3, 16, 16)
    return model, shape, compile_model(model, shape, fuse=False), compile_model(model, shape)


@pytest.fixture(scope="module")
def resnet():
    return nets("resnet20", width=0.25, blocks=2)


@pytest.mark.parametrize("batch", [1, 5])
def test_resnet20_fused_equals_unfused_and_pytorch(resnet, batch):
    model, shape, plain, fused = resnet
    x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32) * 2
    y0, y1 = plain(x), fused(x)
    with torch.no_grad(), eval_mode(model, "mode"):
        ref = model(torch.from_numpy(x)).numpy()
    # the block tails do the unfused float operations in the same order: equal bit for bit here (the
    # projection's and the stem's sums have their own order: a unit exactly at its threshold could differ)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(y1.argmax(1), ref.argmax(1))
    types = [o.type for o in fused.ops]
    assert types[0] == "conv2d_sign" and types.count("bconv2d_res") == 6
    res = [o for o in fused.ops if o.type == "bconv2d_res"]
    assert sum("proj_weight" in o.arrays for o in res) == 2 and all("S" in o.arrays for o in res[:-1])


@pytest.mark.parametrize("shortcut", ["avgpool", "zero_pad"])
def test_bireal_fused_keeps_the_real_path_and_matches(shortcut):
    model, shape, plain, fused = nets("bireal_resnet18", width=1 / 16, convs=1, shortcut=shortcut)
    x = np.random.default_rng(0).standard_normal((6, *shape)).astype(np.float32)
    np.testing.assert_allclose(fused(x), plain(x), rtol=1e-5, atol=1e-5)
    with torch.no_grad(), eval_mode(model, "mode"):
        np.testing.assert_array_equal(fused(x).argmax(1), model(torch.from_numpy(x)).argmax(1).numpy())
    res = [o for o in fused.ops if o.type == "bconv2d_res"]
    types = [o.type for o in fused.ops]
    assert len(res) == 4 and "S" not in res[-1].arrays
    if shortcut == "zero_pad":  # option A on real values: read in place, channels_before zeros; each block's
        # real sum is kept for the next shortcut and its sign packed in the same pass
        assert any(o.attrs["residual_before"] > 0 for o in res)
        assert all("save_slot" in o.attrs for o in res[:-1]) and "sign2d" not in types
    else:  # the pooled 1x1 shortcut is computed in the block's pass from the kept real sum (read in place)
        assert [o.attrs.get("residual_pool") for o in res] == [None] + [[2, 2]] * 3
        assert types.count("avgpool2d") == 1 and "sign2d" not in types and "conv2d" not in types
        assert all("save_slot" in o.attrs for o in res[:-1])


def test_fusion_without_an_input_shape_or_with_a_shared_branch_slot_changes_nothing(resnet):
    _, shape, plain, _ = resnet
    assert fuse(plain.ops, None) == plain.ops
    ops = copy.deepcopy(plain.ops)
    i = next(i for i, o in enumerate(ops) if o.type == "add")
    ops.insert(i + 1, copy.deepcopy(ops[i]))  # the branch slot is read twice: that block stays unfused
    out = fuse(ops, shape)
    assert sum(o.type == "add" for o in out) == 2


def test_first_conv_with_many_taps_keeps_the_float_conv():
    from torch import nn

    from stbin.nn import Sign

    model = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.BatchNorm2d(8), Sign(), nn.Flatten(), nn.Linear(8 * 16, 3))
    assert compile_model(randomise_bn(model).eval(), (16, 4, 4)).ops[0].type == "conv2d"


def _edit(t, k, fn):
    def edit(ops):
        fn([o for o in ops if o.type == t][k])
    return edit


@pytest.mark.parametrize("t, k, change, match", [
    ("bconv2d_res", 0, lambda o: o.attrs.update(residual_slot=9), r"slot 9 is read before anything is saved"),
    ("bconv2d_res", 0, lambda o: o.attrs.update(residual_slot=99), r"'residual_slot' must be below 64"),
    ("bconv2d_res", 0, lambda o: o.attrs.update(residual_channels=8), r"residual_channels is 8"),
    ("bconv2d_res", 0, lambda o: o.attrs.update(residual_stride=[2, 2]), r"stride 2x2 does not give the 16x16"),
    ("bconv2d_res", 0, lambda o: o.attrs.update(residual_before=1), r"4 channels after 1, more than the 4 outputs"),
    ("bconv2d_res", 2, lambda o: o.arrays.update(proj_weight=o.arrays["proj_weight"][:, :3].copy()),
     r"the projection takes 3 binary channels"),
    ("bconv2d_res", 2, lambda o: o.attrs.update(residual_before=2), r"'proj_weight' has shape"),
    ("bconv2d_res", 0, lambda o: o.arrays.update(S=o.arrays["S"][:3].copy()), r"array 'S' has shape \(3,\)"),
    ("bconv2d_res", 0, lambda o: o.arrays.pop("T"), r"arrays 'S' and 'T' go together"),
    ("bconv2d_res", 5, lambda o: (o.attrs.update(save_slot=3), o.arrays.pop("S"), o.arrays.pop("T")),
     r"'save_slot' needs the thresholds"),
    ("bconv2d_res", 0, lambda o: o.arrays.update(weight=o.arrays["weight"][:3].copy()),
     r"packed weight shape \(3, 3, 3, 1\) does not fit 4 -> 4"),
    ("conv2d_sign", 0, lambda o: o.arrays.update(weight=o.arrays["weight"][:, :2].copy()),
     r"input has 3 channels, weight expects 2"),
    ("conv2d_sign", 0, lambda o: o.arrays.update(alpha=np.ones(3, np.float32), beta=np.ones(3, np.float32)),
     r"array 'alpha' has shape \(3,\)"),
    ("conv2d_sign", 0, lambda o: o.arrays.update(alpha=np.ones(4, np.float32)), r"arrays 'alpha' and 'beta' go together"),
])
def test_crafted_fused_ops_are_refused_at_load(resnet, tmp_path, t, k, change, match):
    net = copy.deepcopy(resnet[3])
    _edit(t, k, change)(net.ops)
    msg = refused(net, tmp_path, match)
    i = [j for j, o in enumerate(resnet[3].ops) if o.type == t][k]
    assert f"op {i} ({t})" in msg


U8, F4 = np.uint64, np.float32


def z(shape, dtype):
    return np.zeros(shape, dtype)


def res_call(RB=None, rc=4, r_stride=(1, 1), before=0, kind=0, out_b=None, out_f=None, S=None, PW=None):
    one = np.ones(4, F4)
    E = z((0, 0, 0, 0), F4)
    return lambda: FK.bconv2d_res(
        z((2, 5, 5, 1), U8), z((3, 3, 1, 4), U8), 4, (1, 1, 1, 1, 1, 1), one, one, one, one, kind,
        z((2, 5, 5, 1), U8) if RB is None else RB, E if kind != 1 else z((2, rc, 5, 5), F4),
        z((0, 0), F4) if PW is None else PW, one, one, rc, r_stride, before, one if S is None else S, one,
        z((2, 5, 5, 1), U8) if out_b is None else out_b, E if out_f is None else out_f)


@pytest.mark.parametrize("call, match", [
    (res_call(RB=z((2, 4, 5, 1), U8)), r"bconv2d_res: the shortcut has shape \(2, 4, 5, 1\)"),
    (res_call(RB=z((2, 5, 5, 2), U8)), r"bconv2d_res: RB has shape \(2, 5, 5, 2\), expected \(2, 5, 5, 1\)"),
    (res_call(rc=3, before=2), r"bconv2d_res: shortcut channels 2..4 exceed the 4 outputs"),
    (res_call(r_stride=(2, 1)), r"bconv2d_res: the shortcut has shape"),
    (res_call(kind=2, PW=z((3, 4), F4)), r"bconv2d_res: PW has shape \(3, 4\), expected \(4, 4\)"),
    (res_call(kind=5), r"bconv2d_res: kind must be an integer in \[0, 4\]"),
    (res_call(out_b=z((2, 5, 4, 1), U8)), r"bconv2d_res: out_b has shape \(2, 5, 4, 1\), expected \(2, 5, 5, 1\)"),
    (res_call(S=np.ones(3, F4)), r"bconv2d_res: S has shape \(3,\), expected \(4,\)"),
    (res_call(out_b=z((0, 0, 0, 0), U8)), r"bconv2d_res: needs out_b or out_f"),
    (res_call(out_b=z((0, 0, 0, 0), U8), out_f=z((2, 4, 5, 6), F4)), r"bconv2d_res: out_f has shape \(2, 4, 5, 6\)"),
    (lambda: FK.conv2d_sign(z((2, 3, 5, 5), F4), z((26, 4), F4), 3, 3, (1, 1, 1, 1, 1, 1), z(4, F4), z(4, F4),
                            z(4, F4), z(4, F4), z(4, F4), z((2, 5, 5, 1), U8), z((0, 0, 0, 0), F4)),
     r"conv2d_sign: Wk has shape \(26, 4\), expected \(27, 4\)"),
    (lambda: FK.conv2d_sign(z((2, 3, 5, 5), F4), z((27, 4), F4), 3, 3, (1, 1, 0, 0, 1, 1), z(4, F4), z(4, F4),
                            z(4, F4), z(4, F4), z(4, F4), z((2, 5, 5, 1), U8), z((0, 0, 0, 0), F4)),
     r"conv2d_sign: out_b has shape \(2, 5, 5, 1\), expected \(2, 3, 3, 1\)"),
    (lambda: FK.conv2d_sign(z((2, 3, 2, 2), F4), z((27, 4), F4), 3, 3, (1, 1, 0, 0, 1, 1), z(4, F4), z(4, F4),
                            z(4, F4), z(4, F4), z(4, F4), z((2, 1, 1, 1), U8), z((0, 0, 0, 0), F4)),
     r"conv2d_sign: a 3x3 window does not fit the 2x2 input"),
    (lambda: FK.conv2d_sign(z((2, 3, 5, 10), F4)[..., ::2], z((27, 4), F4), 3, 3, (1, 1, 1, 1, 1, 1), z(4, F4),
                            z(4, F4), z(4, F4), z(4, F4), z(4, F4), z((2, 5, 5, 1), U8), z((0, 0, 0, 0), F4)),
     r"conv2d_sign: X must be C-contiguous"),
    (res_call(kind=2, PW=z((4, 8), F4)[:, ::2]), r"bconv2d_res: PW must be C-contiguous"),
])
def test_fused_kernels_refuse_disagreeing_arguments_before_running(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_fused_kernels_compute_the_written_formula():
    """A direct numpy evaluation of both kernels on random operands (odd sizes: every tail loop runs)."""
    from stbin.deploy.packing import pack_sign, unpack_bits

    rng = np.random.default_rng(0)
    n, c, oc = 2, 70, 21
    ws = rng.choice([-1.0, 1.0], size=(oc, 3, 3, c)).astype(F4)
    Wt = np.ascontiguousarray(pack_sign(ws).transpose(1, 2, 3, 0))
    sc, b, a, be = (rng.standard_normal(oc).astype(F4) for _ in range(4))
    rsh = (2, 2)  # a stride-2 conv (5x5 -> 3x3) and its option-A shortcut: every 2nd pixel, 1 zero channel before
    xs_s = rng.choice([-1.0, 1.0], size=(n, 5, 5, 20)).astype(F4)
    S, T = rng.choice([-1.0, 1.0], size=oc).astype(F4), rng.standard_normal(oc).astype(F4)
    X2 = pack_sign(rng.choice([-1.0, 1.0], size=(n, 5, 5, c)).astype(F4))
    out_b, out_f = z((n, 3, 3, 1), U8), z((n, oc, 3, 3), F4)
    FK.bconv2d_res(X2, Wt, c, (2, 2, 1, 1, 1, 1), sc, b, a, be, 0, pack_sign(xs_s), z((0, 0, 0, 0), F4),
                   z((0, 0), F4), z(0, F4), z(0, F4), 20, rsh, 1, S, T, out_b, out_f)
    x2 = torch.from_numpy(unpack_bits(X2.reshape(-1, 2), c, np.float32).reshape(n, 5, 5, c)).permute(0, 3, 1, 2)
    dot = torch.nn.functional.conv2d(x2, torch.from_numpy(ws).permute(0, 3, 1, 2), stride=2, padding=1).numpy()
    y = (dot * sc[:, None, None] + b[:, None, None]) * a[:, None, None] + be[:, None, None]
    y[:, 1:21] += xs_s[:, ::2, ::2, :].transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(out_f, y)
    bits = ~(S[:, None, None] * y >= T[:, None, None])
    np.testing.assert_array_equal(unpack_bits(out_b.reshape(-1, 1), oc, np.float32).reshape(n, 3, 3, oc) < 0,
                                  bits.transpose(0, 2, 3, 1))
    xf = rng.standard_normal((n, 3, 7, 9)).astype(F4)
    wf = rng.standard_normal((oc, 3, 3, 3)).astype(F4)
    out_b, out_f = z((n, 4, 5, 1), U8), z((n, oc, 4, 5), F4)
    FK.conv2d_sign(xf, np.ascontiguousarray(wf.reshape(oc, -1).T), 3, 3, (2, 2, 1, 1, 1, 1), b, a, be, S, T,
                   out_b, out_f)
    ref = torch.nn.functional.conv2d(torch.from_numpy(xf), torch.from_numpy(wf), torch.from_numpy(b), 2, 1).numpy()
    ref = ref * a[:, None, None] + be[:, None, None]
    np.testing.assert_allclose(out_f, ref, rtol=1e-5, atol=1e-5)
    bits = unpack_bits(out_b.reshape(-1, 1), oc, np.float32).reshape(n, 4, 5, oc).transpose(0, 3, 1, 2) < 0
    sure = np.abs(S[:, None, None] * ref - T[:, None, None]) > 1e-4
    np.testing.assert_array_equal(bits[sure], ~(S[:, None, None] * ref >= T[:, None, None])[sure])


def test_full_width_resnet20_stage_with_packed_taps_equals_unfused():
    """16 channels: the fused tails run the packed-tap convolution, the unfused ``bconv2d_f`` the plain one."""
    model, shape, plain, fused = nets("resnet20", width=1.0, blocks=1)
    x = np.random.default_rng(3).standard_normal((3, *shape)).astype(np.float32)
    np.testing.assert_array_equal(fused(x), plain(x))


@pytest.mark.parametrize("oc, before", [(32, 0), (21, 3)])
def test_channel_last_shortcut_and_output_equal_the_nchw_ones_bit_for_bit(oc, before):
    """kind 3 (the real shortcut channel-last, as fused ops keep it in a slot) and a channel-last real output:
    the same values as kind 1 / NCHW (16-lane vector path and its scalar tail, channels before the shortcut)."""
    rng = np.random.default_rng(oc)
    n, c, h = 2, 40, 6
    Wt = rng.integers(0, 2**40, size=(3, 3, 1, oc), dtype=np.uint64)
    X = rng.integers(0, 2**40, size=(n, h, h, 1), dtype=np.uint64)
    sc, b, a, be, T = (rng.standard_normal(oc).astype(F4) for _ in range(5))
    S = rng.choice([-1.0, 1.0], size=oc).astype(F4)
    rc = oc - before
    rf = rng.standard_normal((n, rc, h, h)).astype(F4)
    e4, e2, e1 = z((0, 0, 0, 0), U8), z((0, 0), F4), z(0, F4)
    outs = []
    for kind, RF, nhwc in ((1, rf, False), (3, np.ascontiguousarray(rf.transpose(0, 2, 3, 1)), True)):
        ob, of = z((n, h, h, 1), U8), z((n, h, h, oc) if nhwc else (n, oc, h, h), F4)
        FK.bconv2d_res(X, Wt, c, (1, 1, 1, 1, 1, 1), sc, b, a, be, kind, e4, RF, e2, e1, e1, rc, (1, 1), before, S, T,
                       ob, of, out_f_nhwc=nhwc)
        outs.append((ob, of.transpose(0, 3, 1, 2) if nhwc else of))
    np.testing.assert_array_equal(outs[1][1], outs[0][1])
    np.testing.assert_array_equal(outs[1][0], outs[0][0])
    with pytest.raises(ValueError, match=r"bconv2d_res: the shortcut has shape \(2, \d+, 6, 6\)"):  # NCHW as channel-last
        FK.bconv2d_res(X, Wt, c, (1, 1, 1, 1, 1, 1), sc, b, a, be, 3, e4, rf, e2, e1, e1, rc, (1, 1), before, S, T,
                       z((n, h, h, 1), U8), z((0, 0, 0, 0), F4))
    with pytest.raises(ValueError, match=r"bconv2d_res: RF must be C-contiguous"):
        FK.bconv2d_res(X, Wt, c, (1, 1, 1, 1, 1, 1), sc, b, a, be, 3, e4, rf.transpose(0, 2, 3, 1), e2, e1, e1, rc,
                       (1, 1), before, S, T, z((n, h, h, 1), U8), z((0, 0, 0, 0), F4))
    with pytest.raises(ValueError, match=r"bconv2d_res: out_f has shape"):  # NCHW out_f declared channel-last
        FK.bconv2d_res(X, Wt, c, (1, 1, 1, 1, 1, 1), sc, b, a, be, 1, e4, rf, e2, e1, e1, rc, (1, 1), before, S, T,
                       z((n, h, h, 1), U8), z((n, oc, h, h + 1), F4), out_f_nhwc=True)


def test_fused_slots_are_channel_last_views_read_in_place():
    """A fused op's kept real output: the slot holds an (N, C, H, W) view of a channel-last buffer (what any other op
    sees), which the next fused op reads in place; the values are those of the unfused network."""
    from stbin.deploy.ops import RunContext
    from stbin.deploy.ops.fused import _channel_last

    model, shape, plain, fused = nets("bireal_resnet18", width=1 / 16, convs=1, shortcut="zero_pad")
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32)
    ctx, y = RunContext(fused), x
    for op in fused.ops:
        y = fused._op(op, y, ctx)
    saved = [ctx.slots[o.attrs["save_slot"]] for o in fused.ops if "save_slot" in o.attrs]
    assert saved and all(_channel_last(s) is not None and not s.flags.c_contiguous for s in saved)
    assert _channel_last(np.zeros((2, 3, 4, 5), F4)) is None and _channel_last(saved[0].copy()) is None
    np.testing.assert_allclose(y, plain(x), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def bireal():
    return nets("bireal_resnet18", width=1 / 16, convs=1)


@pytest.mark.parametrize("k, change, match", [
    (1, lambda o: o.arrays.pop("proj_weight"), r"'residual_pool' needs the array 'proj_weight'"),
    (1, lambda o: o.attrs.update(residual_pool=[3, 2]), r"a 3x2 pool with stride 2x2 does not give the 8x8 output"),
    (1, lambda o: o.attrs.update(residual_pool=[17, 2]), r"a 17x2 pool"),
    (1, lambda o: o.attrs.update(residual_pool=[0, 2]), r"residual_pool"),
    (1, lambda o: o.arrays.update(proj_weight=o.arrays["proj_weight"][:, :3].copy()),
     r"the projection takes 3 real channels"),
    (0, lambda o: o.attrs.update(residual_pool=[1, 1]), r"'residual_pool' needs the array 'proj_weight'"),
])
def test_crafted_pooled_projections_are_refused_at_load(bireal, tmp_path, k, change, match):
    net = copy.deepcopy(bireal[3])
    _edit("bconv2d_res", k, change)(net.ops)
    refused(net, tmp_path, match)


@pytest.mark.parametrize("oc, h", [(21, 5), (37, 4), (64, 4)])
def test_pooled_projection_kernel_computes_the_written_formula(oc, h):
    """kind 4 against numpy: the 2x2 average pool (stride 2) of a channel-last real map, a 1x1 projection and its
    batch norm added to the block's output; odd sizes (output channels 16 + 5 and 32 + 5 on rows of 5 and 4 pixels:
    each vector block, its 4-pixel groups and every tail); the projection within float rounding."""
    from stbin.deploy.packing import pack_sign, unpack_bits

    rng = np.random.default_rng(5)
    n, c, rc = 2, 7, 6  # a (2h+1)x(2h+1) map, 2x2 pool stride 2 (floor) -> h x h; conv 3x3 stride 2 on (2h-1)^2 -> h x h
    ws = rng.choice([-1.0, 1.0], size=(oc, 3, 3, c)).astype(F4)
    Wt = np.ascontiguousarray(pack_sign(ws).transpose(1, 2, 3, 0))
    xs = rng.choice([-1.0, 1.0], size=(n, 2 * h - 1, 2 * h - 1, c)).astype(F4)
    sc, b, a, be, pa, pb, T = (rng.standard_normal(oc).astype(F4) for _ in range(7))
    S = rng.choice([-1.0, 1.0], size=oc).astype(F4)
    rf = rng.standard_normal((n, 2 * h + 1, 2 * h + 1, rc)).astype(F4)
    PW = rng.standard_normal((rc, oc)).astype(F4)
    out_b, out_f = z((n, h, h, (oc + 63) // 64), U8), z((n, h, h, oc), F4)
    FK.bconv2d_res(pack_sign(xs), Wt, c, (2, 2, 1, 1, 1, 1), sc, b, a, be, FK.RES_POOL_PROJECT, z((0, 0, 0, 0), U8),
                   rf, PW, pa, pb, rc, (2, 2), 0, S, T, out_b, out_f, out_f_nhwc=True, pool=(2, 2))
    dot = torch.nn.functional.conv2d(torch.from_numpy(xs).permute(0, 3, 1, 2), torch.from_numpy(ws).permute(0, 3, 1, 2),
                                     stride=2, padding=1).permute(0, 2, 3, 1).numpy()
    y = (dot * sc + b) * a + be
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(rf).permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1).numpy()
    y = y + ((pooled @ PW) * pa + pb)
    np.testing.assert_allclose(out_f, y, rtol=1e-5, atol=1e-5)
    bits = unpack_bits(out_b.reshape(n * h * h, -1), oc, np.float32).reshape(n, h, h, oc) < 0
    sure = np.abs(S * y - T) > 1e-4
    np.testing.assert_array_equal(bits[sure], ~(S * y >= T)[sure])
    args = (pack_sign(xs), Wt, c, (2, 2, 1, 1, 1, 1), sc, b, a, be, FK.RES_POOL_PROJECT, z((0, 0, 0, 0), U8))
    for bad, kw, match in [
        ((rf, PW, pa, pb, rc, (2, 2), 0), {"pool": (4, 4)}, r"the shortcut has shape \(2, \d+, \d+, 6\)"),
        ((rf, PW, pa, pb, rc, (2, 2), 0), {"pool": (2 * h + 2, 2)}, r"the shortcut has shape"),
        ((np.ascontiguousarray(rf[:, :2 * h - 2]), PW, pa, pb, rc, (2, 2), 0), {}, r"the shortcut has shape"),
        ((rf, PW, pa, pb, rc, (2, 2), 1), {}, r"a projection shortcut takes no channel offset"),
        ((rf, PW[:5], pa, pb, rc, (2, 2), 0), {}, r"PW has shape \(5, \d+\), expected \(6, \d+\)"),
        ((np.asfortranarray(rf), PW, pa, pb, rc, (2, 2), 0), {}, r"RF must be C-contiguous"),
        ((rf, PW, pa, pb, rc, (2, 2), 0), {"pool": (0, 2)}, r"pool must be an integer in \[1, "),
    ]:
        with pytest.raises(ValueError, match=match):
            FK.bconv2d_res(*args, *bad, S, T, out_b, out_f, out_f_nhwc=True, **{"pool": (2, 2), **kw})


@pytest.mark.parametrize("kind, oc", [(0, 80), (3, 80), (0, 16), (3, 48)])
def test_output_stage_in_registers_equals_the_general_path(kind, oc):
    """An identity shortcut over all channels with OC % 16 == 0 runs the output stage in registers when the real output
    is channel-last (or absent); an NCHW real output takes the general path: both give the same bits and values
    (80 channels: a word flushed after 64 channels and a partial last word)."""
    rng = np.random.default_rng(oc + kind)
    n, c, h = 2, 40, 5
    Wt = rng.integers(0, 2**40, size=(3, 3, 1, oc), dtype=np.uint64)
    X = rng.integers(0, 2**40, size=(n, h, h, 1), dtype=np.uint64)
    sc, b, a, be, T = (rng.standard_normal(oc).astype(F4) for _ in range(5))
    S = rng.choice([-1.0, 1.0], size=oc).astype(F4)
    rb = rng.integers(0, 2**63, size=(n, h, h, (oc + 63) // 64), dtype=np.uint64)
    rf = rng.standard_normal((n, h, h, oc)).astype(F4)
    RB, RF = (rb, z((0, 0, 0, 0), F4)) if kind == 0 else (z((0, 0, 0, 0), U8), rf)
    e2, e1 = z((0, 0), F4), z(0, F4)
    outs = []
    for nhwc in (False, True):
        ob, of = z((n, h, h, (oc + 63) // 64), U8), z((n, h, h, oc) if nhwc else (n, oc, h, h), F4)
        FK.bconv2d_res(X, Wt, c, (1, 1, 1, 1, 1, 1), sc, b, a, be, kind, RB, RF, e2, e1, e1, oc, (1, 1), 0, S, T, ob,
                       of, out_f_nhwc=nhwc)
        outs.append((ob, of if nhwc else of.transpose(0, 2, 3, 1)))
    ob2 = z(outs[0][0].shape, U8)  # bits only (no real output): in registers too
    FK.bconv2d_res(X, Wt, c, (1, 1, 1, 1, 1, 1), sc, b, a, be, kind, RB, RF, e2, e1, e1, oc, (1, 1), 0, S, T, ob2,
                   z((0, 0, 0, 0), F4))
    np.testing.assert_array_equal(outs[1][1], outs[0][1])
    np.testing.assert_array_equal(outs[1][0], outs[0][0])
    np.testing.assert_array_equal(ob2, outs[0][0])
    assert 0 < np.unpackbits(outs[0][0].view(np.uint8)).sum() < outs[0][0].size * 64  # not all one value


@pytest.mark.parametrize("oc", [5, 16, 37, 64, 80])
@pytest.mark.parametrize("geo", [(1, 1, 1, 1, 1, 1), (2, 2, 1, 1, 1, 1), (1, 2, 0, 2, 1, 2), (1, 1, 2, 3, 2, 1)])
@pytest.mark.parametrize("serial", [False, True])
def test_conv2d_sign_on_padded_rows_equals_the_convolution(oc, geo, serial):
    """The first convolution reads zero-padded copies of its input rows: every geometry (stride, padding wider than
    the kernel's reach, dilation), widths leaving 0-3 pixels after the blocks of four, channel counts with a scalar
    tail and more than one 64-bit word; a padding tap adds an exact zero, so the values are PyTorch's convolution
    within float rounding, the bits its thresholds wherever the value is not within rounding of T."""
    from stbin.deploy import _fused_loops as L
    from stbin.deploy.geometry import conv_out
    from stbin.deploy.packing import unpack_bits

    rng = np.random.default_rng(oc)
    sh, sw, ph, pw, dh, dw = geo
    for w in (9, 10, 11, 12):
        n, c, h = 2, 3, 7
        xf = rng.standard_normal((n, c, h, w)).astype(F4)
        wf = rng.standard_normal((oc, c, 3, 3)).astype(F4)
        b, a, be, T = (rng.standard_normal(oc).astype(F4) for _ in range(4))
        S = rng.choice([-1.0, 1.0], size=oc).astype(F4)
        oh, ow = conv_out(h, 3, sh, ph, dh), conv_out(w, 3, sw, pw, dw)
        out_b, out_f = z((n, oh, ow, -(-oc // 64)), U8), z((n, oh, ow, oc), F4)
        fn = L.conv2d_sign_serial if serial else L.conv2d_sign
        fn(xf, np.ascontiguousarray(wf.reshape(oc, -1).T), 3, 3, sh, sw, ph, pw, dh, dw, b, a, be, S, T, out_b, 2,
           out_f, oh, ow)
        ref = torch.nn.functional.conv2d(torch.from_numpy(xf), torch.from_numpy(wf), torch.from_numpy(b), (sh, sw),
                                         (ph, pw), (dh, dw)).numpy()
        ref = (ref * a[:, None, None] + be[:, None, None]).transpose(0, 2, 3, 1)
        np.testing.assert_allclose(out_f, ref, rtol=1e-5, atol=1e-5)
        bits = unpack_bits(out_b.reshape(-1, out_b.shape[-1]), oc, np.float32).reshape(n, oh, ow, oc) < 0
        np.testing.assert_array_equal(bits, ~(S * out_f >= T))  # the bits are the stored values' thresholds
        sure = np.abs(S * ref - T) > 1e-4
        np.testing.assert_array_equal(bits[sure], ~(S * ref >= T)[sure])
