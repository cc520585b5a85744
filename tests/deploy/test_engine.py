"""Compiled networks predict exactly as PyTorch evaluated in mode (hidden units included)."""

import numpy as np
import pytest
import torch
from torch import nn

from stbin.deploy import compile_model, from_bytes, to_bytes
from stbin.deploy.packing import unpack_bits
from stbin.models import build_model
from stbin.nn import BinaryConv2d, BinaryLinear, Sign, StochasticSign, eval_mode


def randomise_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.weight.copy_(torch.randn(c, generator=g))
                m.weight[:1] = 0.0
                m.bias.copy_(torch.randn(c, generator=g))
                m.running_mean.copy_(torch.randn(c, generator=g) * 3)
                m.running_var.copy_(torch.rand(c, generator=g) * 3 + 0.1)
            if isinstance(m, (BinaryLinear, BinaryConv2d)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g).round())  # integer biases: ties on the boundary
    return model.eval()


def torch_units(model, x):
    """Outputs of every sign unit and the final output, in mode."""
    units = []
    with torch.no_grad(), eval_mode(model, "mode"):
        h = x
        for m in model:
            h = m(h)
            if isinstance(m, (StochasticSign, Sign)):
                units.append(h)
    return units, h


def engine_units(net, x):
    units, h = [], x.numpy()
    for op in net.ops:
        h = net._op(op, h)
        if op.type in ("sign", "bdense", "sign2d", "bconv2d", "maxpool2d") and op.type != "maxpool2d":
            units.append(h)
    return units, h


@pytest.mark.parametrize("kw", [dict(in_features=20, hidden=(70, 130, 33), num_classes=5),
                                dict(in_features=64, hidden=(64, 64), num_classes=3),
                                dict(in_features=5, hidden=(1,), num_classes=2)])
def test_sbn_mlp_identical_units_and_predictions(kw):
    torch.manual_seed(0)
    model = randomise_bn(build_model("sbn_mlp", **kw))
    x = torch.randn(300, kw["in_features"]) * 2
    t_units, t_out = torch_units(model, x)
    net = from_bytes(to_bytes(compile_model(model)))
    e_units, e_out = engine_units(net, x)
    assert len(t_units) == len(e_units) == len(kw["hidden"])
    for tu, eu in zip(t_units, e_units):
        np.testing.assert_array_equal(unpack_bits(eu, tu.shape[1]), tu.numpy())
    np.testing.assert_array_equal(e_out.argmax(1), t_out.argmax(1).numpy())
    np.testing.assert_allclose(e_out, t_out.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(net.predict(x, batch_size=64), e_out, rtol=0, atol=1e-5)


def conv_net():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), StochasticSign(),
        BinaryConv2d(16, 70, 3, padding=1, stride=2), nn.BatchNorm2d(70), Sign(), nn.MaxPool2d(2),
        BinaryConv2d(70, 32, 3, channel_scale="mean_abs"), nn.BatchNorm2d(32), Sign(),
        nn.Flatten(), BinaryLinear(288, 40, channel_scale="learned"), nn.BatchNorm1d(40), Sign(),
        nn.Dropout(0.1), nn.Linear(40, 10))


def test_conv_net_identical_predictions():
    torch.manual_seed(1)
    model = randomise_bn(conv_net(), 1)
    x = torch.randn(64, 1, 22, 22)
    with torch.no_grad(), eval_mode(model, "mode"):
        ref = model(x).numpy()
    net = from_bytes(to_bytes(compile_model(model, (1, 22, 22))))
    assert [op.type for op in net.ops] == ["conv2d_sign", "bconv2d", "maxpool2d", "bconv2d", "flatten",
                                           "bdense", "bits_float", "linear"]  # the first conv and its sign fused
    out = net(x)
    np.testing.assert_array_equal(out.argmax(1), ref.argmax(1))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)


def test_binary_layers_without_sign_and_float_consumers():
    torch.manual_seed(2)
    model = randomise_bn(nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), Sign(),
        BinaryConv2d(8, 8, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(8), Sign(),
        nn.Flatten(), nn.Linear(8 * 10 * 10, 30), nn.BatchNorm1d(30), Sign(),
        BinaryLinear(30, 12), nn.BatchNorm1d(12), BinaryLinear(12, 4, input_quantizer=Sign())), 2)
    x = torch.randn(50, 1, 12, 12)
    with torch.no_grad(), eval_mode(model, "mode"):
        ref = model(x).numpy()
    net = compile_model(model, (1, 12, 12))
    assert "bdense_f" in [op.type for op in net.ops] and "affine" in [op.type for op in net.ops]
    np.testing.assert_allclose(net(x), ref, rtol=1e-4, atol=1e-4)


def test_binary_weights_on_real_input_use_the_float_path():
    torch.manual_seed(3)
    model = nn.Sequential(BinaryLinear(10, 6, channel_scale="mean_abs"), nn.BatchNorm1d(6), Sign(), nn.Linear(6, 2))
    model = randomise_bn(model, 3)
    x = torch.randn(100, 10)
    with torch.no_grad(), eval_mode(model, "mode"):
        ref = model(x).numpy()
    net = from_bytes(to_bytes(compile_model(model)))
    assert net.ops[0].type == "blinear" and net.ops[0].arrays["weight"].dtype == np.uint64
    np.testing.assert_allclose(net(x), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("model, match", [
    (nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)), "cannot export module ReLU"),
    (nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), Sign()), "must end in a real-valued layer"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, groups=1), nn.BatchNorm2d(2), Sign(), BinaryConv2d(2, 2, 1, groups=2),
                   nn.Flatten(), nn.Linear(2, 1)), "groups=2"),
])
def test_unsupported_models_are_refused(model, match):
    with pytest.raises(ValueError, match=match):
        compile_model(model, (1, 5, 5))


def test_conv_needs_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        compile_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 1)))


@pytest.mark.parametrize("name, kw, shape", [
    ("lenet5", {}, (1, 28, 28)),
    ("lenet5", {"activation": "sign", "weights": "sign", "channel_scale": "learned"}, (1, 28, 28)),
    ("binarynet_vgg", {"width": 0.125}, (3, 32, 32)),
    ("sbn_conv", {"width": 0.125, "channel_scale": "mean_abs"}, (3, 32, 32)),
    ("vgg11", {"width": 0.0625, "activation": "sign"}, (3, 32, 32)),
    ("mlp", {}, (1, 28, 28)),
    ("mlp", {"activation": "stochastic", "weights": "bernoulli", "weight_noise_scale": 0.1, "binary_first": True},
     (1, 28, 28)),
])
def test_registered_models_identical_predictions(name, kw, shape):
    """Max pooling before BN + sign (LeNet, VGG) is moved after the folded threshold exactly."""
    torch.manual_seed(0)
    model = randomise_bn(build_model(name, **kw))
    x = torch.randn(60, *shape)
    with torch.no_grad(), eval_mode(model, "mode"):
        ref = model(x).numpy()
    net = from_bytes(to_bytes(compile_model(model, shape)))
    out = net(x)
    np.testing.assert_array_equal(out.argmax(1), ref.argmax(1))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)


def test_models_with_real_activations_are_refused():
    with pytest.raises(ValueError, match="MaxPool2d on real values"):
        compile_model(build_model("lenet5", activation="relu"), (1, 28, 28))
    with pytest.raises(ValueError, match="cannot export module ReLU"):
        compile_model(build_model("resnet20", activation="relu"), (3, 32, 32))
    with pytest.raises(ValueError, match="cannot export module ReLU"):
        compile_model(nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1)))


def test_wrong_input_shape_is_a_clear_error():
    torch.manual_seed(0)
    net = compile_model(build_model("sbn_mlp", in_features=12, hidden=(8,), num_classes=2).eval())
    assert net(np.zeros((3, 3, 4), np.float32)).shape == (3, 2)  # any (N, ...) with 12 values per sample
    with pytest.raises(ValueError, match=r"expects inputs of shape \(N, 12\), got \(3, 13\)"):
        net(np.zeros((3, 13), np.float32))
    with pytest.raises(ValueError, match="expects inputs"):
        net(np.zeros(12, np.float32))


@pytest.mark.parametrize("backend", ["auto", "torch", "numpy"])
def test_float_backends_agree_and_torch_is_bitwise(backend):
    torch.manual_seed(4)
    model = randomise_bn(build_model("sbn_mlp", in_features=30, hidden=(40, 40), num_classes=4))
    x = torch.randn(200, 30)
    with torch.no_grad(), eval_mode(model, "mode"):
        ref = model(x).numpy()
    net = compile_model(model)
    net.float_backend = backend
    out = net(x)
    np.testing.assert_array_equal(out.argmax(1), ref.argmax(1))
    if backend == "torch":  # PyTorch's own kernels on the same batch: the logits are bit for bit PyTorch's
        np.testing.assert_array_equal(out, ref)
    else:
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="float_backend"):
        net.float_backend = "cuda"


def test_export_is_the_mode_network_whatever_eval_mode_says():
    torch.manual_seed(5)
    model = randomise_bn(build_model("sbn_mlp", in_features=16, hidden=(40, 40), num_classes=3))
    x = torch.randn(100, 16)
    with torch.no_grad(), eval_mode(model, "mode"):
        ref = model(x).numpy()
    from stbin.nn import set_eval_mode

    set_eval_mode(model, "sample")
    net = compile_model(model)
    np.testing.assert_array_equal(net(x).argmax(1), ref.argmax(1))
    np.testing.assert_allclose(net(x), ref, rtol=0, atol=1e-4)
    assert all(m.eval_mode == "sample" for m in model.modules() if isinstance(m, StochasticSign))
