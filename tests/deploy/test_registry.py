"""Adding a deploy op from a test file alone: an op type and a converter, used end to end
(compile -> save -> load -> run), with its shape inference guarding the loaded file."""

import numpy as np
import pytest
import torch
from torch import nn

from stbin.deploy import (CONVERTERS, OPS, DeployFormatError, OpType, TensorSpec, compile_model, load, register_converter,
                          register_op, save)
from stbin.deploy.ops.base import need_kind, vec


class ClampSigned(nn.Module):
    """The toy module: per-channel clamp ``y = min(max(x, -c), c)``."""

    def __init__(self, c):
        super().__init__()
        self.register_buffer("c", torch.as_tensor(c, dtype=torch.float32))

    def forward(self, x):
        return torch.minimum(torch.maximum(x, -self.c), self.c)


@pytest.fixture
def toy_op():
    @register_op
    class ToyClamp(OpType):
        name = "toy_clamp"
        arrays = {"c": (np.float32, 1, True)}

        def infer(self, op, x, state):
            need_kind(x, "float", 1)
            vec(op, "c", x.shape[0])
            return x

        def run(self, op, x, ctx):
            c = op.arrays["c"]
            return np.minimum(np.maximum(x, -c), c)

    @register_converter(ClampSigned)
    def convert(compiler, mods, i):
        compiler.to_float()
        compiler.emit("toy_clamp", c=mods[i].c.numpy())
        return i + 1

    yield
    OPS._items.pop("toy_clamp")
    CONVERTERS.unregister(ClampSigned)


def test_toy_op_end_to_end(toy_op, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), ClampSigned(torch.rand(7)), nn.Linear(7, 3)).eval()
    path = save(compile_model(model), tmp_path / "toy.stbn")
    net = load(path)
    assert [o.type for o in net.ops] == ["linear", "toy_clamp", "linear"]
    x = torch.randn(50, 5)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(net(x), ref, rtol=0, atol=1e-5)
    # its shape inference guards loaded files like the built-in ops'
    net.ops[1].arrays["c"] = np.ones(6, np.float32)
    save(net, tmp_path / "bad.stbn")
    with pytest.raises(DeployFormatError, match=r"op 1 \(toy_clamp\): array 'c' has shape \(6,\), expected \(7,\)"):
        load(tmp_path / "bad.stbn")


def test_unknown_ops_and_modules_are_refused():
    assert "toy_clamp" not in OPS
    with pytest.raises(ValueError, match="cannot export module ClampSigned"):
        compile_model(nn.Sequential(nn.Linear(2, 2), ClampSigned(1.0), nn.Linear(2, 1)))


def test_every_registered_op_infers_and_runs_through_the_registry():
    """Each built-in op type has a check, shape inference and a run of its own (no central if-chain)."""
    for name in OPS:
        t = OPS.get(name)
        assert t.name == name
        assert type(t).infer is not OpType.infer and type(t).run is not OpType.run, name
    assert TensorSpec.bits((70,)).words == 2 and TensorSpec.bits((2, 3, 70)).array_shape() == (2, 3, 2)


def test_a_newly_registered_sign_activation_exports_without_a_converter_of_its_own():
    """The sign converter is found by the module's declared precision (stbin.nn's registry), not by a list
    of classes: a sign activation registered from this file alone exports, with thresholds folded from it."""
    from stbin.nn import BINARY_MODULES, BinaryLinear, BinaryModule, Precision, register_binary_module

    @register_binary_module("toy_shifted_sign", "activation")
    class ToyShiftedSign(BinaryModule):
        """sign(x - 0.25) with sign(0) = +1."""

        @staticmethod
        def precision_for(**options):
            return Precision(output_bits=1, output_signed=True)

        def forward(self, x):
            return torch.where(x - 0.25 >= 0, 1.0, -1.0)

    try:
        assert CONVERTERS.find(ToyShiftedSign()) is not None
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(10, 70), nn.BatchNorm1d(70), ToyShiftedSign(), BinaryLinear(70, 20),
                              nn.BatchNorm1d(20), ToyShiftedSign(), nn.Linear(20, 3)).eval()
        for bn in (model[1], model[4]):
            bn.running_mean.uniform_(-1, 1)
        net = compile_model(model)
        assert [o.type for o in net.ops] == ["linear", "sign", "bdense", "bits_float", "linear"]
        x = torch.randn(200, 10)
        with torch.no_grad():
            ref = model(x).numpy()
        np.testing.assert_array_equal(net(x.numpy()).argmax(1), ref.argmax(1))
        np.testing.assert_allclose(net(x.numpy()), ref, rtol=0, atol=1e-5)
    finally:
        BINARY_MODULES._items.pop("toy_shifted_sign")
    assert CONVERTERS.find(nn.ReLU()) is None
