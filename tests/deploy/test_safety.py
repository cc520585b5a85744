"""Memory safety: crafted files (valid SHA-256, inconsistent contents) are refused at load, and every
kernel refuses arrays whose shapes disagree before its compiled loop runs.

Each crafted file is written through ``stbin.deploy.save`` (so its digest is valid) from a net whose
ops were edited after construction, or by editing the header bytes and re-sealing the file.
"""

import copy
import json
import struct

import numpy as np
import pytest
import torch
from torch import nn

from stbin.deploy import DeployFormatError, compile_model, dense_kernels, from_bytes, kernels, load, save, to_bytes
from stbin.deploy.format import FORMAT_VERSION, MAGIC
from stbin.deploy.packing import n_words
from stbin.models import build_model
from stbin.nn import BinaryConv2d, Sign

from .test_format import _rewrite_header


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return compile_model(build_model("sbn_mlp", in_features=12, hidden=(64, 128, 70), num_classes=3).eval())


@pytest.fixture(scope="module")
def conv():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), Sign(),
                          BinaryConv2d(8, 70, 3, padding=1), nn.BatchNorm2d(70), Sign(), nn.MaxPool2d(2),
                          BinaryConv2d(70, 16, 3), nn.BatchNorm2d(16), Sign(), nn.Flatten(), nn.Linear(16 * 16, 5))
    return compile_model(model.eval(), (1, 12, 12), fuse=False)  # the cases edit the unfused ops


def crafted(net, edit):
    bad = copy.deepcopy(net)
    edit(bad.ops)
    return bad


def refused(net, tmp_path, match):
    p = save(net, tmp_path / "crafted.stbn")  # save does not check: the digest of the file is valid
    with pytest.raises(DeployFormatError, match=match) as e:
        load(p)
    assert "\n" not in str(e.value)
    return str(e.value)


def idx(net, t, k=0):
    return [i for i, o in enumerate(net.ops) if o.type == t][k]


def test_issue_example_narrow_layer_into_wide_binary_dense_is_refused(mlp, tmp_path):
    """64 units into a bdense declaring in_features=128 (and weights of 2 words per row)."""
    def edit(ops):
        j = idx(mlp, "bdense")  # 64 -> 128
        op = ops[j]
        op.attrs["in_features"] = 128
        op.arrays["weight"] = np.zeros((128, 2), np.uint64)
    bad = crafted(mlp, edit)
    x = np.zeros((2, 12), np.float32)
    with pytest.raises(ValueError, match="bdense_sign: Wt has 2 words per output, X has 1 per row"):
        bad(x)  # even without loading, the kernel refuses before its loop runs
    msg = refused(bad, tmp_path, r"op 2 \(bdense\): input is bits 64 \(1 words\), the op expects 128 bits in 2 words")
    assert "in_features" in msg


@pytest.mark.parametrize("case, match", [
    ("out_features", r"op 3 \(bdense\): array 'S' has shape \(70,\), expected \(71,\)"),
    ("bits_float", r"op 4 \(bits_float\): input is bits 70 \(2 words\), features is 71"),
    ("last_linear", r"op 5 \(linear\): input has 70 features, weight expects 71"),
    ("sign_width", r"op 1 \(sign\): input has 64 features, S and T have 65"),
    ("first_linear", r"op 0 \(linear\): input has 12 features, weight expects 13"),
    ("S_values", r"op 2 \(bdense\): threshold directions S must be \+1 or -1"),
    ("S_dtype", r"op 2 \(bdense\): array 'S' must be int32 with 1 axes, got float32"),
    ("missing", r"op 2 \(bdense\): missing array 'T'"),
    ("extra", r"op 5 \(linear\): unexpected array 'T'"),
    ("bool_attr", r"op 2 \(bdense\): attribute 'in_features' must be an integer"),
    ("huge_attr", r"op 2 \(bdense\): attribute 'out_features' must be an integer in \[1, 2147483647\]"),
])
def test_inconsistent_dense_files_are_refused(mlp, tmp_path, case, match):
    def edit(ops):
        if case == "out_features":
            op = ops[idx(mlp, "bdense", 1)]  # 128 -> 70
            op.attrs["out_features"] = 71
            op.arrays["weight"] = np.zeros((71, 2), np.uint64)
        elif case == "bits_float":
            ops[4].attrs["features"] = 71
        elif case == "last_linear":
            ops[5].arrays["weight"] = np.zeros((3, 71), np.float32)
        elif case == "sign_width":
            ops[1].arrays["S"] = np.ones(65, np.float32)
            ops[1].arrays["T"] = np.zeros(65, np.float32)
        elif case == "first_linear":
            ops[0].arrays["weight"] = np.zeros((64, 13), np.float32)
        elif case == "S_values":
            ops[2].arrays["S"] = np.full(128, 2, np.int32)
        elif case == "S_dtype":
            ops[2].arrays["S"] = ops[2].arrays["S"].astype(np.float32)
        elif case == "missing":
            del ops[2].arrays["T"]
        elif case == "extra":
            ops[5].arrays["T"] = np.zeros(3, np.int32)
        elif case == "bool_attr":
            ops[2].attrs["in_features"] = True
        elif case == "huge_attr":
            ops[2].attrs["out_features"] = 2**40
    refused(crafted(mlp, edit), tmp_path, match)


def test_dense_layout_the_cases_assume(mlp):
    assert [o.type for o in mlp.ops] == ["linear", "sign", "bdense", "bdense", "bits_float", "linear"]


def test_conv_layout_the_cases_assume(conv):
    assert [o.type for o in conv.ops] == ["conv2d", "sign2d", "bconv2d", "maxpool2d", "bconv2d", "bits_float",
                                          "flatten", "linear"]


@pytest.mark.parametrize("case, match", [
    ("in_channels", r"op 2 \(bconv2d\): input has 8 channels, in_channels is 9"),
    ("conv_weight_words", r"op 4 \(bconv2d\): packed weight shape \(16, 3, 3, 1\) does not fit 70 -> 16 channels"),
    ("mask", r"op 3 \(maxpool2d\): array 'any_mask' has shape \(1,\), the input's 70 channels need \(2,\)"),
    ("kernel_too_big", r"op 4 \(bconv2d\): a 9x9 window does not fit the 6x6 input"),
    ("stride_zero", r"op 2 \(bconv2d\): attribute 'stride' must be two integers in \[1, 2147483647\]"),
    ("first_conv_channels", r"op 0 \(conv2d\): input has 1 channels, weight expects 2"),
    ("sign2d_channels", r"op 1 \(sign2d\): input has 8 channels, S and T have 9"),
])
def test_inconsistent_conv_files_are_refused(conv, tmp_path, case, match):
    def edit(ops):
        if case == "in_channels":
            ops[2].attrs["in_channels"] = 9
        elif case == "conv_weight_words":
            ops[4].arrays["weight"] = np.zeros((16, 3, 3, 1), np.uint64)
        elif case == "mask":
            ops[3].arrays["any_mask"] = np.zeros(1, np.uint64)
        elif case == "kernel_too_big":
            w = np.zeros((16, 9, 9, 2), np.uint64)
            ops[4].arrays["weight"] = w
        elif case == "stride_zero":
            ops[2].attrs["stride"] = [0, 1]
        elif case == "first_conv_channels":
            ops[0].arrays["weight"] = np.zeros((8, 2, 3, 3), np.float32)
        elif case == "sign2d_channels":
            ops[1].arrays["S"] = np.ones(9, np.float32)
            ops[1].arrays["T"] = np.zeros(9, np.float32)
    refused(crafted(conv, edit), tmp_path, match)


def test_residual_ops_are_checked(tmp_path):
    torch.manual_seed(0)
    net = compile_model(build_model("resnet20", width=0.25, blocks=1).eval(), (3, 8, 8), fuse=False)
    types = [o.type for o in net.ops]
    adds = [i for i, t in enumerate(types) if t == "add"]
    loads = [i for i, t in enumerate(types) if t == "load"]

    def unsaved_slot(ops):
        ops[loads[0]].attrs["slot"] = 7

    def wrong_add(ops):  # the downsampling shortcut's 1x1 conv gives 7 channels instead of 8
        j = next(i for i in range(loads[1], adds[1]) if types[i] == "conv2d")
        ops[j].arrays["weight"] = ops[j].arrays["weight"][:7].copy()
        k = j + 1
        ops[k].arrays["alpha"], ops[k].arrays["beta"] = ops[k].arrays["alpha"][:7].copy(), ops[k].arrays["beta"][:7].copy()

    def slot_range(ops):
        ops[adds[0]].attrs["slot"] = 64
    refused(crafted(net, unsaved_slot), tmp_path, rf"op {loads[0]} \(load\): slot 7 is read before anything is saved")
    refused(crafted(net, wrong_add), tmp_path, rf"op {adds[1]} \(add\): adds float 8x4x4 \(slot \d\) to float 7x4x4")
    refused(crafted(net, slot_range), tmp_path, rf"op {adds[0]} \(add\): attribute 'slot' must be below 64")


def test_edited_header_bytes_are_refused(mlp):
    """Sizes that overflow 64 bits, negative sizes, floats and bools, foreign dtypes, truncated arrays."""
    data = to_bytes(mlp)

    def arr(h, k=2, name="weight"):
        return h["ops"][k]["arrays"][name]

    cases = [
        (lambda h: arr(h).update(shape=[2**40, 2**40], nbytes=0), r"op 2 \(bdense\): array 'weight': shape"),
        (lambda h: arr(h).update(shape=[2**62, 4], nbytes=0), r"op 2 \(bdense\): array 'weight': shape"),
        (lambda h: arr(h).update(shape=[-128, 1]), r"op 2 \(bdense\): array 'weight': shape \[-128, 1\]"),
        (lambda h: arr(h).update(shape=[128.0, 1]), r"op 2 \(bdense\): array 'weight': shape"),
        (lambda h: arr(h).update(shape=[True, 1]), r"op 2 \(bdense\): array 'weight': shape"),
        (lambda h: arr(h).update(dtype="<f8"), r"op 2 \(bdense\): array 'weight': bad description"),
        (lambda h: arr(h).update(dtype="<f4", nbytes=arr(h)["nbytes"] // 2),
         r"op 2 \(bdense\): array 'weight' must be uint64 with 2 axes, got float32"),
        (lambda h: arr(h).update(nbytes=arr(h)["nbytes"] - 8), r"op 2 \(bdense\): array 'weight' has shape"),
        (lambda h: arr(h).update(offset=-64), r"op 2 \(bdense\): array 'weight': offset -64"),
        (lambda h: arr(h).update(offset=2**70), r"op 2 \(bdense\): array 'weight' lies outside the payload"),
        (lambda h: h["ops"][2].update(attrs=[1]), r"op 2 \(bdense\): attrs and arrays must be JSON objects"),
        (lambda h: h.update(meta=[1]), r"meta must be a JSON object"),
        (lambda h: h["meta"].update(input_shape=[True]), r"bad input_shape"),
        (lambda h: h["meta"].update(input_shape=[13]), r"op 0 \(linear\): input has 13 features, weight expects 12"),
    ]
    for edit, match in cases:
        with pytest.raises(DeployFormatError, match=match) as e:
            from_bytes(_rewrite_header(data, edit))
        assert "\n" not in str(e.value)


def test_truncated_payload_with_a_resealed_digest_is_refused(mlp):
    data = to_bytes(mlp)
    _, _, _, hlen, total = struct.unpack_from("<8sHHIQ", data, 0)
    body = bytearray(data[: total - 32 - 64])  # drop the last 64 payload bytes, re-seal length and digest
    struct.pack_into("<Q", body, 16, len(body) + 32)
    import hashlib

    with pytest.raises(DeployFormatError, match=r"op 5 \(linear\): array '\w+' lies outside the payload"):
        from_bytes(bytes(body) + hashlib.sha256(bytes(body)).digest())


K = kernels
D = dense_kernels
U8, I4, F4 = np.uint64, np.int32, np.float32


def z(shape, dt):
    return np.zeros(shape, dt)


@pytest.mark.parametrize("call, match", [
    (lambda: K.bgemm(z((4, 1), U8), z((8, 2), U8), 64, z((4, 8), I4)), "bgemm: W has 2 words per row, X has 1"),
    (lambda: K.bgemm(z((4, 2), U8), z((8, 2), U8), 129, z((4, 8), I4)), r"bgemm: k_bits must be an integer in \[0, 128\]"),
    (lambda: K.bgemm(z((4, 2), U8), z((8, 2), U8), 100, z((5, 8), I4)), r"bgemm: out has shape \(5, 8\), expected \(4, 8\)"),
    (lambda: K.bgemm(z((4, 2), I4), z((8, 2), U8), 100, z((4, 8), I4)), "bgemm: X must be a uint64 array"),
    (lambda: K.bgemm_sign(z((4, 2), U8), z((8, 2), U8), 100, z(7, I4), z(8, I4), z((4, 1), U8)),
     r"bgemm_sign: S has shape \(7,\), expected \(8,\)"),
    (lambda: K.bgemm_sign(z((4, 2), U8), z((8, 2), U8), 100, z(8, I4), z(8, I4), z((4, 2), U8)),
     r"bgemm_sign: out has shape \(4, 2\), expected \(4, 1\)"),
    (lambda: D.bdense_sign(z((4, 1), U8), z((2, 8), U8), 64, z(8, I4), z(8, I4), z((4, 1), U8)),
     "bdense_sign: Wt has 2 words per output, X has 1 per row"),
    (lambda: D.bdense_sign(z((4, 2), U8), z((2, 8), U8), 100, z(8, I4), z(7, I4), z((4, 1), U8)),
     r"bdense_sign: T has shape \(7,\), expected \(8,\)"),
    (lambda: D.bdense_sign(z((4, 2), U8), z((2, 8), U8), 100, z(8, I4), z(8, I4), z((3, 1), U8)),
     r"bdense_sign: out has shape \(3, 1\), expected \(4, 1\)"),
    (lambda: D.bdense_dot(z((4, 2), U8), z((2, 8), U8), 129, z((4, 8), I4)), r"bdense_dot: k_bits must be an integer in \[0, 128\]"),
    (lambda: D.bdense_dot(z((4, 2), U8), z((2, 8), U8), 100, z((4, 9), I4)), r"bdense_dot: out has shape \(4, 9\), expected \(4, 8\)"),
    (lambda: D.bdense_dot(z((4, 2), U8), z((8, 2), U8).T, 100, z((4, 8), I4)), "bdense_dot: X and Wt must be C-contiguous"),
    (lambda: D.bits_dense(z((4, 2), U8), 64, z((2, 64, 3), F4), z(3, F4), z((4, 3), F4)), r"bits_dense: X has shape \(4, 2\), expected \(4, 1\)"),
    (lambda: D.bits_dense(z((4, 1), U8), 64, z((2, 65, 3), F4), z(3, F4), z((4, 3), F4)), r"bits_dense: Wpm has shape \(2, 65, 3\), expected \(2, 64, 3\)"),
    (lambda: D.bits_dense(z((4, 1), U8), 64, z((2, 64, 3), F4), z(2, F4), z((4, 3), F4)), r"bits_dense: b has shape \(2,\), expected \(3,\)"),
    (lambda: D.bits_dense(z((4, 1), U8), 64, z((2, 64, 3), F4), z(3, F4), z((5, 3), F4)), r"bits_dense: out has shape \(5, 3\), expected \(4, 3\)"),
    (lambda: D.bits_dense(z((4, 1), U8), 64, z((3, 2, 64), F4).transpose(1, 2, 0), z(3, F4), z((4, 3), F4)),
     "bits_dense: Wpm, b and out must be C-contiguous"),
    (lambda: D.bits_dense(z((4, 1), U8), 64, z((2, 64, 3), F4), z(3, F4), z((3, 4), F4).T), "bits_dense: Wpm, b and out must be C-contiguous"),
    (lambda: K.bconv2d(z((2, 5, 5, 1), U8), z((3, 3, 2, 8), U8), 64, 1, 1, 1, 1, 1, 1, z((2, 5, 5, 8), I4)),
     "bconv2d: Wt has 2 words per tap, X has 1 per pixel"),
    (lambda: K.bconv2d(z((2, 5, 5, 1), U8), z((3, 3, 1, 8), U8), 64, 1, 1, 1, 1, 1, 1, z((3, 5, 5, 8), I4)),
     r"bconv2d: out has shape \(3, 5, 5, 8\), expected \(2, 5, 5, 8\)"),
    (lambda: K.bconv2d(z((2, 5, 5, 1), U8), z((3, 3, 1, 8), U8), 64, 0, 1, 1, 1, 1, 1, z((2, 5, 5, 8), I4)),
     r"bconv2d: stride_h must be an integer in \[1, "),
    (lambda: K.bconv2d_sign(z((2, 5, 5, 1), U8), z((3, 3, 1, 8), U8), 64, 1, 1, 1, 1, 1, 1, z(8, I4), z(8, I4),
                            z((2, 6, 5, 1), U8)), r"bconv2d_sign: out has shape \(2, 6, 5, 1\), expected \(2, 5, 5, 1\)"),
    (lambda: K.bmaxpool2d(z((2, 4, 4, 2), U8), z(1, U8), 2, 2, 2, 2, 0, 0, 1, 1, z((2, 2, 2, 2), U8)),
     r"bmaxpool2d: any_mask has shape \(1,\), expected \(2,\)"),
    (lambda: K.bmaxpool2d(z((2, 4, 4, 2), U8), z(2, U8), 2, 2, 2, 2, 0, 0, 1, 1, z((2, 3, 2, 2), U8)),
     r"bmaxpool2d: out has shape \(2, 3, 2, 2\), expected \(2, 2, 2, 2\)"),
    (lambda: K.float_sign_pack(z((4, 70), F4), z(70, F4), z(70, F4), z((4, 1), U8)),
     r"float_sign_pack: out has shape \(4, 1\), expected \(4, 2\)"),
    (lambda: K.float_sign_pack(z((4, 70), F4), z(64, F4), z(70, F4), z((4, 2), U8)),
     r"float_sign_pack: S has shape \(64,\), expected \(70,\)"),
    (lambda: K.float_sign_pack_nchw(z((2, 70, 3, 3), F4), z(70, F4), z(70, F4), z((2, 3, 3, 1), U8)),
     r"float_sign_pack_nchw: out has shape \(2, 3, 3, 1\), expected \(2, 3, 3, 2\)"),
    (lambda: K.popcount_peak(z((1, 4, 8), U8), 1), r"popcount_peak: X must have shape"),
])
def test_kernels_refuse_disagreeing_shapes_before_running(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_net_without_input_shape_checks_each_input_shape_before_running(mlp):
    from stbin.deploy import DeployedNet

    net = DeployedNet(copy.deepcopy(mlp.ops), {})
    assert net(np.zeros((2, 12), np.float32)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"op 0 \(linear\): input has 13 features, weight expects 12"):
        net(np.zeros((2, 13), np.float32))


def test_header_helper_reseals(mlp):
    data = to_bytes(mlp)
    h = json.loads(data[24: 24 + struct.unpack_from("<I", data, 12)[0]])
    assert h["version"] == FORMAT_VERSION and data[:8] == MAGIC
    assert n_words(70) == 2


@pytest.mark.parametrize("net_name", ["mlp", "conv"])
def test_compiled_plan_runs_every_check_when_it_is_built(net_name, request):
    """The compiled plan is recorded through the kernels' checked entry points: ops edited after the load
    checks (a packed weight with one word too few per row / per tap) are refused with the kernel's one-line
    ValueError when the plan is built, before any compiled code runs, and the hot path only ever takes
    inputs of the exact shape and dtype the plan was built for."""
    from stbin.deploy import jit_plan
    from stbin.deploy.plan import build_plan

    net = request.getfixturevalue(net_name)
    shape = (1, *net.meta["input_shape"]) if "input_shape" in net.meta else (1, 12)
    x = np.zeros(shape, np.float32)
    for _ in range(3):
        ok = net(x)
    bad = copy.deepcopy(net)
    k = idx(bad, "bdense" if net_name == "mlp" else "bconv2d")
    w = bad.ops[k].arrays["weight"]
    bad.ops[k].arrays["weight"] = np.ascontiguousarray(w[..., :-1]) if w.shape[-1] > 1 else w[:, :0]
    bad._plan = None
    with pytest.raises(ValueError, match=r"^(bdense_sign|bconv2d_sign|float_dense): ") as e:
        jit_plan.compile_plan(build_plan(bad.ops, bad), x.shape, bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"expects inputs of shape"):
        net(np.zeros((1, 5), np.float32))
    np.testing.assert_array_equal(net(x), ok)
