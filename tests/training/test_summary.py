"""Model summary: parameters, memory and MACs by precision."""

from torch import nn

from stbin.models import build_model
from stbin.training.summary import format_summary, model_summary


def test_mlp_counts_exactly():
    m = build_model("mlp", in_features=16, hidden=[8, 8], num_classes=3)
    s = model_summary(m, (1, 4, 4))
    t = s.totals
    # Linear(16,8) no bias, BN(8) x2, BinaryLinear(8,8) no bias, Linear(8,3) with bias
    assert t["params_1bit"] == 64
    assert t["params_32bit"] == 16 * 8 + 2 * 16 + 8 * 3 + 3
    assert t["params"] == sum(p.numel() for p in m.parameters())
    assert t["memory_bytes"] == 64 / 8 + t["params_32bit"] * 4
    assert t["float32_bytes"] == 4 * t["params"]
    assert abs(t["compression"] - t["float32_bytes"] / t["memory_bytes"]) < 1e-12
    # binary layer sees +-1 inputs (stochastic sign in mode): binary x binary MACs
    assert t["macs_1x1"] == 64 and t["macs_1x32"] == 0 and t["macs_32x32"] == 16 * 8 + 8 * 3
    md = format_summary(s, title="x")
    assert "| **total** |" in md and "compression" in md and "BinaryLinear" in md


def test_binary_weight_with_real_inputs_and_convs():
    m = build_model("lenet5", binary_first=True)
    t = model_summary(m, (1, 28, 28)).totals
    # the first conv is binary but sees real pixels
    assert t["macs_1x32"] == 28 * 28 * 6 * 25
    assert t["macs_1x1"] > 0


def test_float_model_compression_is_one_and_training_mode_restored():
    m = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    m.train()
    s = model_summary(m, (4,))
    assert s.totals["compression"] == 1.0 and s.totals["macs_32x32"] == 8 and m.training
    assert s.as_dict()["rows"][0]["memory_bytes"] == 40


def test_large_all_binary_compression():
    t = model_summary(build_model("binarynet_vgg", width=0.25), (3, 32, 32)).totals
    assert t["compression"] > 20 and t["macs_32x32"] == 0
