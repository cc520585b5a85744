"""Residual binary networks (resnet20, Bi-Real ResNet-18) export and predict exactly as PyTorch in mode.

The networks are trained for a few steps on a small synthetic task (so that batch norm
statistics, shifts and weights are those of a trained network, not of the initialisation),
then compiled, saved, loaded and run on test images.
"""

import numpy as np
import pytest
import torch
from torch import nn

from stbin.deploy import compile_model, from_bytes, to_bytes
from stbin.models import build_model
from stbin.nn import eval_mode


def trained(model, shape, steps=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, *shape, generator=g)
    y = (x.flatten(1) @ torch.randn(x[0].numel(), 10, generator=g)).argmax(1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def check_exact(model, shape, n=128, seed=1, fuse=True):
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad(), eval_mode(model, "mode"):
        ref = model(x).numpy()
    net = from_bytes(to_bytes(compile_model(model, shape, fuse=fuse)))
    out = net(x)
    np.testing.assert_array_equal(out.argmax(1), ref.argmax(1))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    return net


def check_both(model, shape):
    """The fused and the unfused (one op per step) networks both predict as PyTorch; returns both."""
    return check_exact(model, shape, fuse=False), check_exact(model, shape)


@pytest.mark.parametrize("kw", [{"width": 0.25, "blocks": 1},
                                {"width": 0.25, "blocks": 2, "activation": "sign", "weights": "sign"},
                                {"width": 0.5, "blocks": 1, "channel_scale": "mean_abs", "bn_affine": False}])
def test_resnet20_predicts_exactly(kw):
    torch.manual_seed(0)
    shape = (3, 16, 16)
    plain, fused = check_both(trained(build_model("resnet20", **kw), shape), shape)
    types = [o.type for o in plain.ops]
    assert {"save", "load", "add", "bconv2d", "bconv2d_f", "avgpool2d", "conv2d"} <= set(types)
    assert types.count("add") == 3 * kw["blocks"]
    types = [o.type for o in fused.ops]  # each block's tail, shortcut and next sign in one op; the stem in one
    assert types.count("bconv2d_res") == 3 * kw["blocks"] and types[0] == "conv2d_sign"
    assert not {"add", "bconv2d_f", "sign2d", "conv2d", "affine", "load"} & set(types)


@pytest.mark.parametrize("kw", [{"width": 1 / 16, "convs": 1}, {"width": 1 / 16, "convs": 2, "shortcut": "zero_pad"},
                                {"width": 1 / 8, "convs": 1, "activation": "stochastic", "channel_scale": None}])
def test_bireal_resnet18_predicts_exactly(kw):
    torch.manual_seed(0)
    shape = (3, 32, 32)
    model = trained(build_model("bireal_resnet18", **kw), shape)
    with torch.no_grad():  # trained shifts are small: make them clearly non-zero to test RSign's folding
        for m in model.modules():
            if hasattr(m, "bias") and type(m).__name__ == "ChannelShift":
                m.bias.copy_(torch.randn(m.bias.shape) * 0.3)
    plain, fused = check_both(model, shape)
    types = [o.type for o in plain.ops]
    assert types.count("sign2d") == 4 * kw["convs"] and types.count("add") == 4 * kw["convs"]
    assert ("zero_pad_shortcut" in types) == (kw.get("shortcut") == "zero_pad")
    types = [o.type for o in fused.ops]
    assert types.count("bconv2d_res") == 4 * kw["convs"] and types[0] == "conv2d_sign"
    assert not {"add", "zero_pad_shortcut"} & set(types)


def test_bireal_model_arguments_are_validated():
    for bad, match in [({"width": 0}, "width"), ({"convs": 0}, "convs"), ({"shortcut": "conv"}, "shortcut"),
                       ({"activation": "gelu"}, "activation")]:
        with pytest.raises(ValueError, match=match):
            build_model("bireal_resnet18", **bad)
