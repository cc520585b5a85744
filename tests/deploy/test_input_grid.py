"""A binary-weight first layer on inputs declared on an 8-bit grid runs bit-serially (exact integer dot
products) and predicts as PyTorch in mode on a trained network; inputs off the grid and bad declarations
are refused with one-line errors."""

import numpy as np
import pytest
import torch

from stbin.deploy import compile_model, from_bytes, to_bytes
from stbin.deploy.input_grid import TOLERANCE, input_grid_for
from stbin.deploy.ops import RunContext
from stbin.deploy.packing import unpack_bits
from stbin.deploy.plan import build_plan
from stbin.models import build_model

from .test_engine import torch_units

MEAN, STD = 0.1307, 0.3081


def images(n, k, seed):
    q = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, size=(n, k)).astype(np.uint8))
    return q, (q.float() / 255 - MEAN) / STD  # float32 normalisation, as a data pipeline does it


@pytest.fixture(scope="module")
def trained():
    """A binary-first MLP (bit-packed first-layer weights with a learned scale) trained briefly on 8-bit inputs."""
    torch.manual_seed(0)
    model = build_model("mlp", in_features=100, hidden=(96, 64), num_classes=4, activation="sign",
                        weights="sign", binary_first=True)
    q, x = images(512, 100, 0)
    y = (q.float() @ torch.randn(100, 4)).argmax(1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(40):
        i = torch.arange(step * 64, step * 64 + 64) % 512
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
    return model.eval()


def test_trained_network_predicts_as_pytorch_and_reads_packed_weights(trained):
    net = compile_model(trained, (100,), meta={"input_grid": input_grid_for(MEAN, STD)})
    assert [o.type for o in net.ops][:2] == ["blinear", "sign"]
    _, x = images(300, 100, 1)
    units, ref = torch_units(trained, x)
    for batch in (x[:1], x[:5], x):  # compiled plan (small batches) and op by op
        for _ in range(3):
            out = net(batch.numpy())
        np.testing.assert_array_equal(out.argmax(1), ref[: len(batch)].argmax(1).numpy())
        np.testing.assert_allclose(out, ref[: len(batch)].numpy(), rtol=0, atol=1e-4)
    step = build_plan(net.ops, net)[0]
    bits = step(x.numpy(), RunContext(net))  # the first hidden layer, bit-serial
    np.testing.assert_array_equal(unpack_bits(bits, 96), units[0].numpy())
    assert "bit-serial" in {k[0] for k in net._torch_cache}
    plain = compile_model(trained, (100,))  # without the declaration: the float32 layer, same predictions
    np.testing.assert_array_equal(plain(x.numpy()), net(x.numpy()))


def test_inputs_off_the_grid_are_refused(trained):
    net = compile_model(trained, (100,), meta={"input_grid": input_grid_for(MEAN, STD)})
    _, x = images(2, 100, 2)
    x = x.numpy()
    for _ in range(3):
        net(x)  # compiles the plan of this shape
    scale = input_grid_for(MEAN, STD)["scale"]
    for bad in (x[0, 5] + 3 * TOLERANCE * scale, x[0, 5] + 0.5 * scale, (256 - MEAN * 255) * scale, np.nan):
        y = x.copy()
        y[1, 7] = bad
        with pytest.raises(ValueError, match=r"not on the network's declared 8-bit input grid") as e:
            net(y)
        assert "\n" not in str(e.value)
    y = x.copy()
    y[1, 7] += 0.5 * TOLERANCE * scale  # within float rounding of the grid: accepted
    np.testing.assert_array_equal(net(y), net(x))


@pytest.mark.parametrize("grid, match", [
    ({"scale": 0.0, "offset": 0.0}, "scale must be > 0"),
    ({"scale": 0.1}, "exactly 'scale' and 'offset'"),
    ({"scale": 0.1, "offset": float("inf")}, "offset must be a finite number"),
    ({"scale": "0.1", "offset": 0.0}, "scale must be a finite number"),
    ([0.1, 0.0], "must be an object"),
])
def test_bad_declarations_are_refused_at_compile_and_load(trained, grid, match):
    with pytest.raises(ValueError, match=match):
        compile_model(trained, (100,), meta={"input_grid": grid})
    net = compile_model(trained, (100,), meta={"input_grid": input_grid_for(MEAN, STD)})
    assert from_bytes(to_bytes(net)).meta["input_grid"] == input_grid_for(MEAN, STD)
    net.meta["input_grid"] = grid
    with pytest.raises(ValueError, match=match):  # a crafted file: DeployFormatError is a ValueError
        from_bytes(to_bytes(net))


def test_parallel_and_serial_loops_agree_and_both_refuse_off_grid_values():
    from stbin.deploy import _dense_loops as D
    from stbin.deploy import dense_kernels
    from stbin.deploy.packing import pack_sign

    rng = np.random.default_rng(0)
    n, k, m = 37, 130, 70
    scale, offset = 0.0127, -0.42
    X = (offset + scale * rng.integers(0, 256, (n, k))).astype(np.float32)
    w = np.where(rng.standard_normal((m, k)) >= 0, 1, -1)
    Wt, neg = np.ascontiguousarray(pack_sign(w).T), (w < 0).sum(1).astype(np.int64)
    coef = np.stack([np.full(m, scale), offset * (k - 2 * neg)])
    S, T = rng.choice(np.array([-1, 1], np.float32), m), rng.standard_normal(m).astype(np.float32)
    grid = np.array([scale, offset, TOLERANCE * scale])

    def run(fn, x):
        out = np.empty((n, 2), np.uint64)
        fn(x, grid, Wt, neg, coef, S, T, np.empty((n, k), np.uint8), np.empty((8 * n, 3), np.uint64),
           np.empty((8 * n, m), np.uint64), np.empty((n, m), np.int64), out)
        return out
    ref = np.where(S * (X.astype(np.float64) @ w.T) >= T, 1, -1)  # float64 sums of the grid values
    for fn in (D.bitserial_sign, D.bitserial_sign_serial):
        np.testing.assert_array_equal(unpack_bits(run(fn, X), m), ref)
        bad = X.copy()
        bad[n - 1, k - 1] = 9.0
        with pytest.raises(ValueError, match="declared 8-bit input grid"):
            run(fn, bad)
    with pytest.raises(ValueError, match=r"bitserial_sign: Wt has shape \(2, 70\), expected \(3, 70\)"):
        dense_kernels.bitserial_sign(X, grid, Wt[:2].copy(), neg, coef, S, T, np.empty((n, 2), np.uint64))
    with pytest.raises(ValueError, match=r"bitserial_sign: grid must be"):
        dense_kernels.bitserial_sign(X, np.array([0.0, 0, 0]), Wt, neg, coef, S, T, np.empty((n, 2), np.uint64))
