"""ONNX export of the mode network: standard ops, same predictions as PyTorch on real MNIST."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from stbin.data import load_mnist
from stbin.deploy import to_onnx
from stbin.deploy.onnx import ExplicitBatchNorm, mode_network
from stbin.nn import BinaryConv2d, BinaryLinear, StochasticSign, binarize, eval_mode


@pytest.fixture(scope="module")
def mnist_test() -> torch.Tensor:
    x, _ = load_mnist("test")
    return ((x[:1000].float() / 255.0 - 0.1307) / 0.3081).unsqueeze(1)


def _float_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, padding_mode="reflect", bias=False), nn.BatchNorm2d(16), nn.Hardtanh(),
        nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, groups=2, stride=2), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(),
        nn.Linear(16 * 3 * 3, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


def _trained_like(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """Batch-norm statistics from data (so that the units are not all on one side)."""
    net.train()
    with torch.no_grad():
        net(x[:500])
    return net.eval()


def _ort(path, x: torch.Tensor) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize("activation, opts, channel_scale", [
    ("stochastic", {}, None), ("sign", {}, "mean_abs"), ("heaviside", {}, "learned"),
    ("quant_relu", {"bits": 2}, "learned")])
def test_onnx_matches_pytorch_mode_on_mnist(tmp_path, mnist_test, activation, opts, channel_scale):
    torch.manual_seed(0)
    net = binarize(_float_cnn(), mnist_test[:2], activation=activation, activation_options=opts,
                   channel_scale=channel_scale, weights="bernoulli", weight_noise_scale=0.5)
    net = _trained_like(net, mnist_test)
    path = to_onnx(net, mnist_test[:4], tmp_path / "m.onnx")
    got = _ort(path, mnist_test)
    with torch.no_grad(), eval_mode(net, "mode"):
        ref = net(mnist_test).numpy()
    assert np.array_equal(got.argmax(-1), ref.argmax(-1))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    proto = onnx.load(str(path))
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    ops = {n.op_type for n in proto.graph.node}
    assert all(onnx.defs.has(op, "") for op in ops), ops  # standard ONNX operators only
    # batch norms as explicit Sub/Mul/Add: onnxruntime folds BatchNormalization into the Conv/MatMul before it
    assert "BatchNormalization" not in ops and {"Sub", "Mul", "Add", "Conv"} <= ops
    assert "Where" in ops if activation != "quant_relu" else "Floor" in ops


def test_binary_weights_are_plus_minus_one_constants_and_sign_keeps_zero_positive():
    layer = BinaryLinear(4, 3, weights="sign", input_quantizer=StochasticSign())
    plain = mode_network(nn.Sequential(layer))
    lin = plain[0][1]
    assert type(lin) is nn.Linear and set(lin.weight.unique().tolist()) <= {-1.0, 1.0}
    x = torch.tensor([[0.0, -0.0, -1.0, 2.0]])
    with torch.no_grad():
        torch.testing.assert_close(plain(x), layer.eval()(x))


def test_batch_dimension_is_dynamic_and_conv_module_alone(tmp_path):
    conv = BinaryConv2d(1, 2, 3, padding=1).eval()
    path = to_onnx(conv, torch.randn(1, 1, 5, 5), tmp_path / "c.onnx")
    x = torch.randn(7, 1, 5, 5)
    with torch.no_grad():
        np.testing.assert_allclose(_ort(path, x), conv(x).numpy(), rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_refused(tmp_path, monkeypatch):
    net = nn.Sequential(BinaryLinear(3, 2))
    with pytest.raises(ValueError, match="floating-point tensor"):
        to_onnx(net, torch.zeros(1, 3, dtype=torch.long), tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="is a directory"):
        to_onnx(net, torch.zeros(1, 3), tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ValueError, match=r"onnx is needed for ONNX export .*pip install 'stbin\[onnx\]'"):
        to_onnx(net, torch.zeros(1, 3), tmp_path / "a.onnx")
    assert not (tmp_path / "a.onnx").exists()


def _checkpoint(tmp_path):
    from stbin.models import build_model
    from stbin.training import save_checkpoint

    kwargs = {"activation": "stochastic", "weights": "bernoulli", "width": 0.5}
    torch.manual_seed(0)
    model = build_model("lenet5", **kwargs)
    x, _ = load_mnist("test")
    _trained_like(model, ((x[:500].float() / 255.0 - 0.1307) / 0.3081).unsqueeze(1))
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"model": {"name": "lenet5", "kwargs": {**kwargs, "in_channels": 1, "image_size": 28}},
                           "model_state": model.state_dict()})
    return path


def test_cli_export_onnx_verifies_on_mnist(tmp_path):
    ckpt = _checkpoint(tmp_path)
    out = tmp_path / "model.onnx"
    r = subprocess.run([sys.executable, "-m", "stbin.cli.main", "export", str(ckpt), str(out), "--format", "onnx",
                        "--verify"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "10000/10000 onnxruntime predictions identical" in r.stdout and out.is_file()

    assert np.array_equal(onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim[1].dim_value, 1)


def test_cli_export_onnx_user_errors(tmp_path, capsys):
    from stbin.cli.main import main

    ckpt = _checkpoint(tmp_path)
    assert main(["export", str(ckpt), str(tmp_path), "--format", "onnx"]) == 2
    assert "is a directory; give a file name such as model.onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["export", str(ckpt), str(tmp_path / "m.onnx"), "--format", "onx"])
    assert e.value.code == 2 and "'stbn', 'onnx'" in capsys.readouterr().err
    from stbin.training import load_checkpoint, save_checkpoint
    c = load_checkpoint(ckpt)
    c["model"]["kwargs"] = {k: v for k, v in c["model"]["kwargs"].items() if k not in ("image_size",)}
    save_checkpoint(tmp_path / "noshape.pt", {k: v for k, v in c.items() if k not in ("format", "version")})
    assert main(["export", str(tmp_path / "noshape.pt"), str(tmp_path / "m.onnx"), "--format", "onnx"]) == 2
    assert "--input-shape is needed" in capsys.readouterr().err


def test_cli_export_onnx_verify_without_onnxruntime_is_refused_before_work(tmp_path, capsys, monkeypatch):
    from stbin.cli.main import main

    ckpt = _checkpoint(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), str(out), "--format", "onnx", "--verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnxruntime is needed for --verify with --format onnx" in err[0]
    assert "pip install 'stbin[onnx]'" in err[0] and not out.exists()


def test_integer_sums_at_a_zero_batch_norm_mean_keep_the_sign_of_pytorch(tmp_path):
    """Found by the CLI test below: onnxruntime folded an exported ``BatchNormalization`` into the
    ``MatMul`` before it, so the exact integer sums of a binary layer became inexact; a sum equal to the
    channel's running mean (0 here) gave PyTorch exactly 0 (sign +1) and onnxruntime a residue of either
    sign (2709 of 6771 such units flipped, default session options)."""
    torch.manual_seed(0)
    lin = nn.Linear(200, 60, bias=False)
    lin.weight.data = torch.randint(0, 2, (60, 200)).float() * 2 - 1
    bn = nn.BatchNorm1d(60).eval()
    bn.running_var = torch.rand(60) * 20 + 0.5  # running mean 0, weight 1, bias 0
    net = nn.Sequential(lin, bn, StochasticSign()).eval()
    x = torch.randint(0, 2, (2000, 200)).float() * 2 - 1
    assert int((lin(x) == 0).sum()) > 1000  # many sums exactly at the mean
    got = _ort(to_onnx(net, x[:4], tmp_path / "m.onnx"), x)
    with torch.no_grad(), eval_mode(net, "mode"):
        ref = net(x).numpy()
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("bn", [nn.BatchNorm1d(3), nn.BatchNorm2d(3), nn.BatchNorm2d(3, affine=False)])
def test_explicit_batch_norm_is_the_batch_norm(bn):
    bn.running_mean = torch.randn(3)
    bn.running_var = torch.rand(3) + 0.2
    if bn.affine:
        bn.weight.data, bn.bias.data = torch.randn(3), torch.randn(3)
    bn.eval()
    x = torch.randn(5, 3, 4, 4) if isinstance(bn, nn.BatchNorm2d) else torch.randn(5, 3)
    plain = mode_network(nn.Sequential(bn))
    assert isinstance(plain[0], ExplicitBatchNorm)
    torch.testing.assert_close(plain(x), bn(x).detach(), rtol=1e-6, atol=1e-6)
